"""A/B of two source trees over HTTP: server CPU per Rewrap, two live servers, interleaved rounds.

    git archive HEAD | (mkdir -p /tmp/kas-a && tar -x -C /tmp/kas-a)   # the code before
    .venv/bin/python -m bench.http_ab /tmp/kas-a [--cases ec,nano,rsa] [--rounds 8] [--seconds 3]

A = `platform serve --workers 2` run from the given tree, B = this tree; both on one
SQLite file, driven by bench/http.py's wrk requests. In each round every case runs on
both servers back to back, which one goes first alternating, so a burst of load lands
on both sides of a pair. Prints per case the median server CPU per request of each side
and the median of the per-round differences B - A. Not a suite of `make bench`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
from pathlib import Path

from bench import http


class _TreeServer(http._Server):
    """http._Server, run from another source tree."""

    def __init__(self, tree: Path, workdir: Path, db: str, root_key_hex: str):
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(tree)
        old_root = http.ROOT
        http.ROOT = tree
        try:
            super().__init__(workdir, db, root_key_hex)
        finally:
            http.ROOT = old_root
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.http_ab", description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path, help="the source tree of server A (the code before)")
    ap.add_argument("--cases", default="ec,nano")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=3)
    args = ap.parse_args(argv)
    cases_wanted = args.cases.split(",")
    with tempfile.TemporaryDirectory(prefix="kas-http-ab-") as tmp:
        workdir = Path(tmp)
        root = secrets.token_hex(32)
        db, kas_pems = http._prepare_db(workdir, root)
        cases, _ = http._requests(kas_pems)
        files = {}
        for name in cases_wanted:
            files[name] = workdir / f"rewrap-{name}.bin"
            files[name].write_bytes(cases[name][0])
        (workdir / "a").mkdir()
        (workdir / "b").mkdir()
        servers = {"A": _TreeServer(args.base.resolve(), workdir / "a", db, root),
                   "B": _TreeServer(http.ROOT, workdir / "b", db, root)}
        try:
            for s in servers.values():
                s.wait_ready(lambda url: __import__("httpx").get(f"{url}/readyz", timeout=2))
            pids = {k: http._process_tree(s.proc.pid) for k, s in servers.items()}

            def run(side, name, seconds):
                s = servers[side]
                got = http._wrk(s.url, files[name], s.client_token, seconds, pids[side], permits=cases[name][1])
                if got["errors"] or got["bad"]:
                    raise SystemExit(f"{side} {name}: {got['errors']:.0f} errors, {got['bad']:.0f} bad responses")
                return got

            for name in cases_wanted:
                for side in servers:
                    run(side, name, 1)  # warm
            cpu = {(side, name): [] for side in servers for name in cases_wanted}
            for r in range(args.rounds):
                for name in cases_wanted:
                    for side in (("A", "B") if r % 2 == 0 else ("B", "A")):
                        cpu[side, name].append(run(side, name, args.seconds)["server_cpu_per_request"] * 1e3)
            for name in cases_wanted:
                a, b = cpu["A", name], cpu["B", name]
                diffs = [y - x for x, y in zip(a, b)]
                print(f"{name:5s} A {statistics.median(a):.3f} ms  B {statistics.median(b):.3f} ms  "
                      f"B-A median {statistics.median(diffs) * 1e3:+.0f} us  (rounds B-A, us: "
                      f"{' '.join(f'{d * 1e3:+.0f}' for d in diffs)})")
        finally:
            for s in servers.values():
                s.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
