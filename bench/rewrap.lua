-- wrk script for `make bench`: one pre-signed TDF Rewrap request (a Connect
-- unary call, kas.RewrapRequest serialized once by bench/http.py), replayed
-- over keep-alive connections. A response counts as good only when it is a
-- 200 whose body carries WRK_PERMITS permitted results (default 1).
--   WRK_BODY_FILE=req.bin WRK_CONTENT_TYPE=application/proto WRK_TOKEN=<client bearer token> \
--     wrk -t1 -c16 -d5s -s bench/rewrap.lua http://127.0.0.1:PORT
local f = assert(io.open(os.getenv("WRK_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.path = "/kas.AccessService/Rewrap"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/proto"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_TOKEN")

-- Each wrk thread runs its own Lua state: `bad` is per thread, summed in done().
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
end

-- WRK_PERMITS: how many permitted results a good response carries (bulk requests: one per object)
local permits = tonumber(os.getenv("WRK_PERMITS") or "1")
bad = 0
response = function(status, headers, body)
  if status ~= 200 then
    bad = bad + 1
    return
  end
  local n, pos = 0, 1
  while n < permits do
    local at = string.find(body, "permit", pos, true)
    if not at then break end
    n, pos = n + 1, at + 6
  end
  if n < permits then
    bad = bad + 1
  end
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  local bad = 0
  for _, t in ipairs(threads) do
    bad = bad + t:get("bad")
  end
  io.write(string.format("RESULT requests=%d seconds=%.3f p50_ms=%.3f p99_ms=%.3f errors=%d bad=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, errors, bad))
end
