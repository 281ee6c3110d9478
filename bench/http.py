"""HTTP: TDF Rewrap over loopback keep-alive vs the in-process rate, both on 2 processes.

Subject:  `platform serve --workers 2` (granian) on its own SQLite file with
          one local-mode RSA-2048 KAS key; wrk (one thread, bench/rewrap.lua)
          replays one pre-signed Rewrap request (one key access object, an
          RSA-2048 client key, a request token signed by the client key) over
          keep-alive connections, in the Connect proto codec as the SDK's
          Connect client sends it. Every response is checked for a permit.
Baseline: 2 processes doing what the request needs cryptographically, in a
          loop: KeyService.rewrap = unwrap (RSA-2048 OAEP) + rewrap to the
          client key (RSA-OAEP encrypt).
Rounds alternate the two; the figure is the median of per-round ratios.
The server pays on top: HTTP, Connect/JSON, auth, the request token's
RS256 signature check, the policy binding HMAC, logging.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.env import ROOT, BenchSetupError
from bench.results import Figure
from bench.timing import Budget

TARGET = 0.5
WORKERS = 2
# Concurrency: the smallest at which the rate stops growing here. At 8 connections (4 per
# worker) a worker's loop often runs dry between requests and pays a sleep and a wake-up per
# request (~0.04 ms of CPU, kernel and GIL hand-offs, in granian and the loop, not in the
# platform's code); 16, 32 and 64 give the same CPU per request (docs/performance.md).
CONNECTIONS = 16
LUA = Path(__file__).with_name("rewrap.lua")
KID = "http-rsa"
_RESULT = re.compile(r"RESULT (.*)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_db(workdir: Path, root_key_hex: str) -> tuple[str, str]:
    """A database of its own: one KAS, one local RSA-2048 key. -> (db url, public key PEM)."""
    from host.app import Platform, Settings

    db = f"sqlite:///{workdir / 'http.db'}"
    os.environ["PLATFORM_ROOT_KEY"] = root_key_hex
    p = Platform(Settings(db_url=db, state_dir=str(workdir)))
    try:
        p.store.kas.create("http://127.0.0.1/kas", "kas-http")
        key = p.keys.create_key(None, KID, "rsa:2048", "local")
        return db, key.public_key_pem
    finally:
        p.close()


def _request(kas_public_pem: str):
    """(kas.RewrapRequest bytes, wrapped DEK, client public PEM): what an SDK sends for one TDF."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from host import crypto

    dek = os.urandom(32)
    wrapped = crypto.rsa_wrap(crypto.load_public_pem(kas_public_pem, "rsa:2048"), dek)
    policy_b64 = base64.b64encode(json.dumps({"uuid": "bench", "body": {}}).encode()).decode()
    binding = base64.b64encode(hmac.new(dek, policy_b64.encode(), hashlib.sha256).hexdigest().encode()).decode()
    client = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    client_pem = crypto.public_pem(client)
    kao = {"type": "wrapped", "protocol": "kas", "kid": KID, "url": "http://127.0.0.1/kas",
           "wrappedKey": base64.b64encode(wrapped).decode(), "policyBinding": {"alg": "HS256", "hash": binding}}
    body = {"clientPublicKey": client_pem,
            "requests": [{"policy": {"id": "policy", "body": policy_b64},
                          "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": kao}]}]}
    now = int(time.time())
    token = jwt.encode({"requestBody": json.dumps(body), "iat": now, "exp": now + 3600}, client, algorithm="RS256")
    from host.server.protos import kas_pb2

    return kas_pb2.RewrapRequest(signed_request_token=token).SerializeToString(), wrapped, client_pem


class _Server:
    """`platform serve --workers 2`, or with floor=True the bare ASGI app (bench/asgi_floor.py)."""

    def __init__(self, workdir: Path, db: str, root_key_hex: str, floor: bool = False):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client_token = secrets.token_urlsafe(24)
        self.floor = floor
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PLATFORM_", "PROMETHEUS_"))}
        env.update({"PLATFORM_STATE_DIR": str(workdir / "serve-state"), "PLATFORM_DB_URL": db,
                    "PLATFORM_ROOT_KEY": root_key_hex, "PLATFORM_CLIENT_TOKENS": self.client_token,
                    "PLATFORM_ADMIN_TOKENS": secrets.token_urlsafe(24)})
        self.log_path = workdir / ("floor.log" if floor else "serve.log")
        self._log = open(self.log_path, "wb")
        if floor:
            cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                   "--port", str(self.port), "--workers", str(WORKERS), "--factory", "bench.asgi_floor:app_factory"]
        else:
            cmd = [sys.executable, "-c", "from host.cli import run; run()", "serve", "--port", str(self.port),
                   "--workers", str(WORKERS)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, probe, limit: float = 60.0) -> None:
        """Until probe(url) returns an httpx response with status 200."""
        import httpx

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchSetupError(f"{'floor app' if self.floor else 'platform serve'} exited with "
                                      f"{self.proc.returncode}: {self._tail()}")
            try:
                if probe(self.url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise BenchSetupError(f"the server did not become ready in {limit:.0f}s: {self._tail()}")

    def _tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-500:].replace("\n", " | ")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return pids


def _cpu_seconds(pids: list[int]) -> float:
    """user+system CPU of these processes (all their threads), from /proc."""
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def _wrk(url: str, body_file: Path, token: str, seconds: int, server_pids: list[int] | None = None,
         content_type: str = "application/proto") -> dict:
    env = {**os.environ, "WRK_BODY_FILE": str(body_file), "WRK_CONTENT_TYPE": content_type, "WRK_TOKEN": token}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = _cpu_seconds(server_pids or [])
    proc = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "-s", str(LUA), url],
                          env=env, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = _cpu_seconds(server_pids or []) - server_before
    m = _RESULT.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise BenchSetupError(f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    out = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    out["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out["rps"] = out["requests"] / out["seconds"]
    out["server_cpu_per_request"] = server_cpu / max(out["requests"], 1)
    return out


# ---- the in-process baseline: WORKERS processes, driven round by round ---------------
def _inproc_worker(conn, db: str, root_key_hex: str, wrapped: bytes, client_pem: str) -> None:
    os.environ["PLATFORM_ROOT_KEY"] = root_key_hex
    from host.app import Platform, Settings

    p = Platform(Settings(db_url=db, state_dir=os.path.dirname(db.removeprefix("sqlite:///"))))
    keys = p.keys
    keys.rewrap(KID, wrapped, client_pem)  # warm: key lookup, private key cached
    conn.send("ready")
    while True:
        seconds = conn.recv()
        if seconds is None:
            break
        n = 0
        t_end = time.perf_counter() + seconds
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() < t_end:
            keys.rewrap(KID, wrapped, client_pem)
            n += 1
        conn.send((n / (time.perf_counter() - t0), (time.process_time() - c0) / n))
    p.close()


class _InProcess:
    def __init__(self, db: str, root_key_hex: str, wrapped: bytes, client_pem: str):
        ctx = multiprocessing.get_context("spawn")  # no fork after plugins and SoftHSM are loaded
        self.conns, self.procs = [], []
        for _ in range(WORKERS):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_inproc_worker, args=(child, db, root_key_hex, wrapped, client_pem),
                               daemon=True)
            proc.start()
            self.conns.append(parent)
            self.procs.append(proc)
        for c in self.conns:
            if not c.poll(120) or c.recv() != "ready":
                raise BenchSetupError("in-process rewrap workers did not start")

    def rate(self, seconds: float) -> tuple[float, float]:
        """(operations per second of all workers, CPU seconds per operation)."""
        for c in self.conns:
            c.send(seconds)
        got = [c.recv() for c in self.conns]
        return sum(r for r, _ in got), statistics.mean(cpu for _, cpu in got)

    def stop(self) -> None:
        for c in self.conns:
            try:
                c.send(None)
            except OSError:
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


def _post(url: str, path: str, body: bytes, content_type: str, token: str):
    import httpx

    return httpx.post(f"{url}{path}", content=body, timeout=30,
                      headers={"content-type": content_type, "authorization": f"Bearer {token}"})


def run(env, budget: Budget) -> list[Figure]:
    if shutil.which("wrk") is None:
        raise BenchSetupError("wrk is not installed (make sysdeps)")
    workdir = env.workdir / "http"
    workdir.mkdir(exist_ok=True)
    db, kas_pem = _prepare_db(workdir, env.root_key_hex)
    body, wrapped, client_pem = _request(kas_pem)
    body_file = workdir / "rewrap-request.bin"
    body_file.write_bytes(body)
    floor_body = json.dumps({"kid": KID, "wrapped": wrapped.hex(), "client_public_key": client_pem}).encode()
    floor_file = workdir / "floor-request.json"
    floor_file.write_bytes(floor_body)
    server = _Server(workdir, db, env.root_key_hex)
    floor = _Server(workdir, db, env.root_key_hex, floor=True)
    inproc = None
    try:
        server.wait_ready(lambda url: __import__("httpx").get(f"{url}/readyz", timeout=2))
        floor.wait_ready(lambda url: _post(url, "/", floor_body, "application/json", "bench"))
        check = _post(server.url, "/kas.AccessService/Rewrap", body, "application/proto", server.client_token)
        if check.status_code != 200 or b"permit" not in check.content:
            raise BenchSetupError(f"the Rewrap request was refused: {check.status_code} {check.text[:300]}")
        inproc = _InProcess(db, env.root_key_hex, wrapped, client_pem)
        pids, floor_pids = _process_tree(server.proc.pid), _process_tree(floor.proc.pid)

        def platform_run(seconds):
            return _wrk(server.url, body_file, server.client_token, seconds, pids)

        def floor_run(seconds):
            return _wrk(floor.url, floor_file, "bench", seconds, floor_pids, content_type="application/json")

        platform_run(1), floor_run(1)  # warm every worker's caches
        rounds = []
        steps = [("http", platform_run), ("base", inproc.rate), ("floor", floor_run)]
        for r in range(budget.http_rounds):
            got = {}
            for name, step in steps[r % 3:] + steps[:r % 3]:  # rotate the order round by round
                got[name] = step(budget.http_seconds)
            for name in ("http", "floor"):
                if got[name]["errors"] or got[name]["bad"]:
                    raise BenchSetupError(f"wrk ({name}) saw {got[name]['errors']:.0f} errors and "
                                          f"{got[name]['bad']:.0f} non-permit responses of {got[name]['requests']:.0f}")
            rounds.append(got)
    finally:
        if inproc is not None:
            inproc.stop()
        server.stop()
        floor.stop()

    def med(fn):
        return statistics.median(fn(g) for g in rounds)

    ratio = med(lambda g: g["http"]["rps"] / g["base"][0])
    floor_ratio = med(lambda g: g["floor"]["rps"] / g["base"][0])
    rps, floor_rps, base = med(lambda g: g["http"]["rps"]), med(lambda g: g["floor"]["rps"]), med(lambda g: g["base"][0])
    server_cpu = med(lambda g: g["http"]["server_cpu_per_request"])
    floor_cpu = med(lambda g: g["floor"]["server_cpu_per_request"])
    inproc_cpu = med(lambda g: g["base"][1])
    p50, p99 = med(lambda g: g["http"]["p50_ms"]), med(lambda g: g["http"]["p99_ms"])
    wrk_cpu = med(lambda g: g["http"]["cpu_seconds"] / g["http"]["seconds"])
    return [
        Figure.ratio(f"HTTP Rewrap rsa:2048, {WORKERS} workers", ratio, "x in-process", TARGET,
                     note=f"{rps:,.0f} req/s over {CONNECTIONS} keep-alive connections vs in-process unwrap+rewrap "
                          f"{base:,.0f}/s on {WORKERS} processes",
                     http_per_s=round(rps, 1), inprocess_per_s=round(base, 1),
                     ratio_rounds=[round(g["http"]["rps"] / g["base"][0], 4) for g in rounds]),
        Figure("HTTP Rewrap CPU per request", server_cpu * 1e3, "ms",
               note=f"all server processes' CPU / requests; in-process unwrap+rewrap {inproc_cpu * 1e3:.3f} ms per "
                    f"operation (x{inproc_cpu / server_cpu:.3f}: the rate ratio an idle machine would give)",
               detail={"server_cpu_ms_per_request": round(server_cpu * 1e3, 4),
                       "inprocess_cpu_ms_per_op": round(inproc_cpu * 1e3, 4),
                       "cpu_efficiency": round(inproc_cpu / server_cpu, 4)}),
        Figure("HTTP floor: bare ASGI app, same server", floor_ratio, "x in-process",
               note=f"bench/asgi_floor.py on granian, {WORKERS} workers: {floor_rps:,.0f} req/s, "
                    f"{floor_cpu * 1e3:.3f} ms CPU per request (no Connect, auth, token, binding, logs)",
               detail={"floor_per_s": round(floor_rps, 1), "floor_cpu_ms_per_request": round(floor_cpu * 1e3, 4)}),
        Figure("HTTP Rewrap latency p50", p50, "ms", note=f"p99 {p99:.2f} ms at {CONNECTIONS} connections",
               detail={"p50_ms": p50, "p99_ms": p99}),
        Figure("HTTP Rewrap latency p99", p99, "ms"),
        Figure("load generator CPU (wrk)", wrk_cpu * 100, "% of a core",
               note=f"wrk -t1 -c{CONNECTIONS} with bench/rewrap.lua: {wrk_cpu * 100:.1f}% of one core "
                    f"while the server ran {rps:,.0f} req/s",
               detail={"cpu_core_fraction": round(wrk_cpu, 4)}),
    ]
