"""`python -m bench --smoke`: every benchmark path runs end to end with tiny rounds.

Figures from a smoke run are noise, so nothing here looks at a ratio or a
time: only that each suite ran, produced its figures, and that every
figure with a target carries a verdict.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

EXPECTED = [
    "unwrap rsa:2048 local", "unwrap rsa:2048 provider", "unwrap rsa:4096 local", "unwrap rsa:4096 provider",
    "unwrap ec:secp256r1 local", "unwrap ec:secp256r1 provider",
    "FFI unwrap file-kek", "C ABI round trip", "isolated unwrap file-kek",
    "provider rsa:2048 cold", "provider ec:secp256r1 cold", "provider cache hit ratio",
    "2 threads bench-rsa (OpenSSL in plugin)", "2 threads pkcs11 (SoftHSM2)",
    "HTTP Rewrap rsa:2048, 2 workers", "HTTP Rewrap CPU per request", "load generator CPU (wrk)",
    "Go RSA-2048 OAEP-SHA1 decrypt per core", "Go ECDH P-256 per core",
    "cold key, 16 clients: manager calls per expiry", "cold key, 16 clients: p99 across an expiry",
    "hot key, 16 clients: p99 across TTL ends",
    "HTTP Rewrap rsa:2048 per core vs Go raw decrypt",
    "HTTP Rewrap ec:secp256r1 (ec-wrapped), 2 workers", "HTTP Rewrap ec:secp256r1 (ec-wrapped) CPU beyond the crypto",
    "HTTP Rewrap NanoTDF P-256, 2 workers", "HTTP Rewrap NanoTDF P-256 CPU beyond the crypto",
    "HTTP bulk Rewrap, 10 objects per request", "HTTP bulk Rewrap, 100 objects per request",
]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--out", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc, json.loads(out.read_text()) if out.exists() else None


@pytest.mark.timeout(900)
def test_smoke_run_completes_every_suite(smoke):
    proc, results = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert results is not None and results["machine"]["smoke"] is True
    assert results["machine"]["broken"] == []
    names = [f["name"] for f in results["figures"]]
    for name in EXPECTED:
        assert name in names, f"missing figure {name!r} in {names}"
    assert any(n.startswith("memory: RSS growth") for n in names)


def test_every_target_has_a_verdict_and_the_table_shows_it(smoke):
    proc, results = smoke
    for f in results["figures"]:
        if f["target"]:
            assert f["verdict"] in ("PASS", "FAIL") and f["value"] is not None, f
        else:
            assert f["verdict"] == "-", f
        if f["verdict"] != "-":
            assert any(f["name"] in line and f["verdict"] in line for line in proc.stdout.splitlines()), f["name"]


def test_unknown_suite_is_a_one_line_error():
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert "unknown suite(s): nope" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(300)
def test_app_call_tool_runs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    proc = subprocess.run([sys.executable, "-m", "bench.app_call", "--calls", "100"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "app call with crypto" in proc.stdout and "app call without crypto" in proc.stdout


@pytest.mark.parametrize("value", ["0", "5000", "many"])
def test_http_connections_out_of_range_is_refused_before_any_work(value):
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "http", "--http-connections", value],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--http-connections" in proc.stderr and "Traceback" not in proc.stderr


def test_go_peer_is_measured_when_a_current_go_is_there(smoke):
    from bench.env import BenchSetupError
    from bench.peer import go_binary

    try:
        go_binary()
    except BenchSetupError:
        pytest.skip("no Go >= 1.20 here (the bench extra installs one: make bench)")
    _, results = smoke
    got = {f["name"]: f for f in results["figures"]}
    for name in ("Go RSA-2048 OAEP-SHA1 decrypt per core", "Go ECDH P-256 per core",
                 "HTTP Rewrap rsa:2048 per core vs Go raw decrypt"):
        assert got[name]["value"] is not None and got[name]["value"] > 0, got[name]
