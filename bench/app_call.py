"""Where a Rewrap's Python time goes: the whole app call in-process, no sockets.

    .venv/bin/python -m bench.app_call                  # CPU per call, with and without the crypto
    .venv/bin/python -m bench.app_call --profile        # cProfile of the call with the crypto stubbed out
    .venv/bin/python -m bench.app_call --case ec --profile   # another request of bench/http.py (crypto kept)

Not a suite of `make bench` (it has no baseline or target): a tool for the
HTTP row's "what dominates". It builds the app `platform serve` runs
(host.server.app.build_app) on its own SQLite file with one local RSA-2048
key, and calls its RSGI entry point with the request bench/http.py sends,
through a stand-in for granian's protocol object (body in, response out).
"Without crypto" replaces the RSA decrypt and encrypt by their results, so
what remains is everything the platform adds around them. Log lines go to
/dev/null (a real write per request, as on stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path


class _Headers(dict):
    """granian's RSGIHeaders, as far as the app reads them."""

    def get_all(self, key):
        return [self[key]] if key in self else []

    def items(self):
        return list(super().items())


class _Scope:
    proto, method, path, query_string = "http", "POST", "/kas.AccessService/Rewrap", ""

    def __init__(self, headers: dict):
        self.headers = _Headers(headers)


class _Protocol:
    def __init__(self, body: bytes):
        self.body, self.status, self.data = body, None, b""

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status, headers, data) -> None:
        self.status, self.data = status, data


def _build(workdir: Path, case: str = "rsa"):
    from bench import http
    from host.app import Platform, Settings
    from host.server import app as server_app
    from host.server import logs

    root = secrets.token_hex(32)
    db, kas_pems = http._prepare_db(workdir, root)
    cases, ops = http._requests(kas_pems)
    body = cases[case][0]
    token = secrets.token_urlsafe(24)
    os.environ.update({"PLATFORM_CLIENT_TOKENS": token, "PLATFORM_ROOT_KEY": root})
    logs.configure(0, stream=open(os.devnull, "w"))
    for handler in logging.getLogger("platform").handlers:
        handler.stream = open(os.devnull, "w")
    app = server_app.build_app(Platform(Settings(db_url=db, state_dir=str(workdir))))
    app.warm_up()
    scope = _Scope({"host": "127.0.0.1:8080", "content-type": "application/proto",
                    "authorization": f"Bearer {token}", "content-length": str(len(body))})
    return app, scope, _Protocol(body), ops["ec" if case in ("ec", "nano") else "rsa"]


def _stub_crypto(call_once) -> None:
    """RSA decrypt/encrypt replaced by their results, captured from one real call."""
    from host import crypto

    real_unwrap, seen = crypto.rsa_unwrap, {}

    def capture(key, wrapped):
        seen["dek"] = real_unwrap(key, wrapped)
        return seen["dek"]

    crypto.rsa_unwrap = capture
    call_once()
    crypto.rsa_unwrap = lambda key, wrapped: seen["dek"]
    crypto.rsa_wrap = lambda key, dek: bytes(256)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.app_call", description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000, help="calls per measurement (default 5000)")
    ap.add_argument("--profile", action="store_true", help="cProfile the call with the crypto stubbed out")
    ap.add_argument("--case", default="rsa", choices=("rsa", "ec", "nano", "bulk10", "bulk100"),
                    help="which request of bench/http.py (default rsa; only rsa stubs its crypto out)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kas-app-call-") as tmp:
        app, scope, protocol, (kid, wrapped, client_pem, eph) = _build(Path(tmp), args.case)
        loop = asyncio.new_event_loop()

        async def calls(n):
            for _ in range(n):
                await app.__rsgi__(scope, protocol)

        def per_call(n) -> float:
            t = time.thread_time()
            loop.run_until_complete(calls(n))
            if protocol.status != 200 or b"permit" not in protocol.data:
                raise SystemExit(f"the Rewrap failed: {protocol.status} {protocol.data[:200]!r}")
            return (time.thread_time() - t) / n

        per_call(200)  # warm: caches, the first-call imports
        keys = app.platform.keys
        t = time.thread_time()
        for _ in range(args.calls // 5):
            keys.rewrap(kid, wrapped, client_pem, eph)
        baseline = (time.thread_time() - t) / (args.calls // 5)
        with_crypto = statistics.median(per_call(args.calls // 5) for _ in range(5))
        if args.case != "rsa":
            print(f"app call ({args.case})  {with_crypto * 1e6:7.1f} us  (KeyService.rewrap of one object alone: "
                  f"{baseline * 1e6:.1f} us)")
            if not args.profile:
                return 0
        else:
            _stub_crypto(lambda: per_call(1))
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.enable()
            loop.run_until_complete(calls(args.calls))
            profiler.disable()
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(40)
            return 0
        without = statistics.median(per_call(args.calls) for _ in range(5))
        print(f"app call with crypto     {with_crypto * 1e6:7.1f} us  (KeyService.rewrap alone: {baseline * 1e6:.1f} us)")
        print(f"app call without crypto  {without * 1e6:7.1f} us  (what the platform adds around the RSA operations)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
