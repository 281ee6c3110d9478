"""`make bench`: every figure a ratio against a baseline measured in the same run.

    python -m bench                 # the full run (a few minutes on 2 cores)
    python -m bench --smoke         # tiny rounds: checks that every path works
    python -m bench --only unwrap,ffi --out /tmp/r.json
    python -m bench --only http --http-connections 8

Prints one table (PASS/FAIL against each target) and writes bench/results.json.
Exit status: 0 when every suite ran (whatever the verdicts; --strict makes a
FAIL exit 1), 2 when a suite could not run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

from bench import results
from bench.env import BenchEnv, BenchSetupError
from bench.timing import FULL, SMOKE

SUITES = ("unwrap", "peer", "ffi", "isolation", "cold", "threads", "memory", "http", "scale")
DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def _suite(name: str):
    import importlib

    return importlib.import_module(f"bench.{name}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny round counts (CI): every path runs, figures are noise")
    ap.add_argument("--only", default=",".join(SUITES), help=f"comma-separated suites ({', '.join(SUITES)})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON (default bench/results.json)")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--http-connections", type=int, metavar="N",
                    help="keep-alive connections for the http suite (default 16; see bench/http.py)")
    args = ap.parse_args(argv)
    if args.http_connections is not None:
        if not 1 <= args.http_connections <= 1024:
            ap.error("--http-connections must be between 1 and 1024")
        from bench import http

        http.CONNECTIONS = args.http_connections
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        ap.error(f"unknown suite(s): {', '.join(unknown)}; choose from {', '.join(SUITES)}")
    budget = SMOKE if args.smoke else FULL

    started = time.perf_counter()
    figures: list[results.Figure] = []
    broken: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kas-bench-") as tmp:
        try:
            env = BenchEnv.create(Path(tmp))
        except BenchSetupError as e:
            print(f"bench: {e}", file=sys.stderr)
            return 2
        try:
            for name in SUITES:
                if name not in chosen:
                    continue
                t0 = time.perf_counter()
                print(f"bench: {name} ...", file=sys.stderr, flush=True)
                try:
                    got = _suite(name).run(env, budget)
                except BenchSetupError as e:
                    broken.append(f"{name}: {e}")
                    print(f"bench: {name}: {e}", file=sys.stderr)
                    continue
                except Exception as e:  # a broken path is reported, the other suites still run
                    broken.append(f"{name}: {type(e).__name__}: {e}")
                    traceback.print_exc()
                    continue
                figures.extend(got)
                print(f"bench: {name} done in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        finally:
            env.close()

    info = results.machine() | {"smoke": budget.smoke, "rounds": budget.rounds,
                                "seconds": round(time.perf_counter() - started, 1)}
    print(results.table(figures))
    print(f"\n{info['cpus']} CPUs, load average {info['load_avg_1m']} at the end, "
          f"{info['seconds']}s{' (smoke: figures are noise)' if budget.smoke else ''}")
    for b in broken:
        print(f"BROKEN {b}")
    results.write_json(args.out, figures, info | {"broken": broken})
    if broken:
        return 2
    if args.strict and any(f.passed is False for f in figures):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
