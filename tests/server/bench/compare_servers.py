"""Compare ASGI servers (granian, uvicorn) for `platform serve` with wrk on PublicKey and GetKey.

    .venv/bin/python -m tests.server.bench.compare_servers [--seconds 10] [--connections 32] [--rounds 2]

Each round starts one server of each kind on the same SQLite file (one worker),
runs wrk against both paths, and stops it; rounds alternate the order so
that noise from a shared machine hits both alike. Prints requests/s, p50, p99.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import host.server.protos  # noqa: F401
from host.server.protos import objects_pb2
from tests.server.conftest import start_server
from tests.server.test_api import create_kas, create_local_key

LUA = Path(__file__).with_name("post_json.lua")


def wrk(url: str, path: str, body: str, token: str, seconds: int, connections: int) -> dict:
    env = {**os.environ, "WRK_PATH": path, "WRK_BODY": body, "WRK_TOKEN": token}
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(LUA), url],
                         env=env, capture_output=True, text=True, check=True).stdout
    m = re.search(r"RESULT (.*)", out)
    return {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="asgi-bench-"))
    db = f"sqlite:///{tmp / 'state' / 'platform.db'}"
    root = os.urandom(32).hex()
    results: dict = {}
    key_id = None
    for r in range(args.rounds):
        order = ["granian", "uvicorn"] if r % 2 == 0 else ["uvicorn", "granian"]
        for impl in order:
            s = start_server(tmp / f"{impl}{r}", db, root_key_hex=root, server_impl=impl)
            try:
                if key_id is None:
                    c = s.clients(proto_json=True)
                    kas = create_kas(c, s)
                    key_id = create_local_key(c, s, kas.id, alg=objects_pb2.ALGORITHM_EC_P256).key.id
                for name, path, body in (
                        ("PublicKey", "/kas.AccessService/PublicKey", json.dumps({"algorithm": "ec:secp256r1"})),
                        ("GetKey", "/policy.kasregistry.KeyAccessServerRegistryService/GetKey",
                         json.dumps({"id": key_id}))):
                    res = wrk(s.url, path, body, s.admin_token, args.seconds, args.connections)
                    results.setdefault((impl, name), []).append(res)
                    print(f"round {r} {impl:8s} {name:10s} {res['rps']:8.1f} req/s  p50 {res['p50_ms']:6.1f} ms  "
                          f"p99 {res['p99_ms']:6.1f} ms  errors {int(res['errors'])}", flush=True)
            finally:
                s.stop()
    print("\nmean req/s over rounds:")
    for name in ("PublicKey", "GetKey"):
        g = sum(x["rps"] for x in results[("granian", name)]) / args.rounds
        u = sum(x["rps"] for x in results[("uvicorn", name)]) / args.rounds
        print(f"  {name:10s} granian {g:8.1f}  uvicorn {u:8.1f}  granian/uvicorn {g / u:.2f}")


if __name__ == "__main__":
    main()
