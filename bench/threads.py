"""Threads: N threads unwrapping through a thread-safe C plugin vs one thread.

Each call is KeyService.unwrap of a remote-mode RSA-2048 key, so the
private-key operation runs inside the plugin while the host has released
the GIL (cffi does around every C call). Rounds alternate 1 and 2 threads;
the figure is the median of the per-round rate ratios.

- pkcs11 on SoftHSM2: SoftHSM2 serializes (and contends on) its own locks,
  shown C-only by build/pkcs11-bench-threads (plugin vs OpenSSL from plain
  C threads, no Python) -- so the target is held against
- bench-rsa: RSA-OAEP with OpenSSL inside the plugin (bench/plugins).
  Each round also runs the C tool on bench-rsa: plain C threads show what
  the cores give at that moment (on a machine shared with other work, two
  threads cannot scale past what the second core has left).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess

from bench.env import BENCH_PLUGIN, BUILD, PKCS11, ROOT
from bench.results import Figure
from bench.timing import Budget, threaded_rate
from host import crypto

THREADS = 2
TARGET = 1.7
C_TOOL = BUILD / "pkcs11-bench-threads"
_C_LINE = re.compile(r"threads=(\d+) plugin=([\d.]+)/s .*? openssl=([\d.]+)/s")


def _scaling(fn, budget: Budget, reference=None) -> dict:
    """Rounds alternating 1 and THREADS threads of fn(); `reference()` (the C
    tool, no Python) runs in each round too. Medians over rounds."""
    fn()
    ratios, ones, many, refs = [], [], [], []
    for r in range(max(2, budget.rounds - 2)):
        if r % 2 == 0:
            one = threaded_rate(fn, 1, budget.thread_seconds)
            n = threaded_rate(fn, THREADS, budget.thread_seconds)
        else:
            n = threaded_rate(fn, THREADS, budget.thread_seconds)
            one = threaded_rate(fn, 1, budget.thread_seconds)
        ratios.append(n / one)
        ones.append(one)
        many.append(n)
        rows = reference() if reference is not None else None
        if rows is not None:
            refs.append(rows)
    out = {"ratio": statistics.median(ratios), "one": statistics.median(ones), "many": statistics.median(many),
           "ratio_rounds": [round(x, 3) for x in ratios]}
    if refs:
        out["c_plugin_ratio"] = statistics.median(r[THREADS][0] / r[1][0] for r in refs)
        out["c_openssl_ratio"] = statistics.median(r[THREADS][1] / r[1][1] for r in refs)
    return out


def _service_fn(env, config: str):
    key, _ = env.key("rsa:2048", "remote", config, key_id=f"threads-{config}")
    dek = os.urandom(32)
    wrapped = crypto.rsa_wrap(crypto.load_public_pem(key.public_key_pem, key.algorithm), dek)
    service = env.keys
    kid = key.key_id
    assert service.unwrap(kid, wrapped) == dek
    return lambda: service.unwrap(kid, wrapped)


def _c_tool_available() -> bool:
    if not C_TOOL.exists():
        subprocess.run(["make", "-s", str(C_TOOL.relative_to(ROOT))], cwd=ROOT, capture_output=True)
    return C_TOOL.exists()


def _c_tool(plugin, config: dict, workdir, seconds: float):
    """build/pkcs11-bench-threads (plain C threads, no Python) on a plugin's
    first factory: {threads: (plugin/s, openssl/s)} or None."""
    path = workdir / f"c-tool-{plugin.stem}.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run([str(C_TOOL), str(plugin), str(path), f"{seconds:.2f}", str(THREADS)],
                          capture_output=True, text=True, timeout=120)
    rows = {int(m[1]): (float(m[2]), float(m[3])) for m in _C_LINE.finditer(proc.stdout)}
    return rows if proc.returncode == 0 and 1 in rows and THREADS in rows else None


def run(env, budget: Budget) -> list[Figure]:
    figures = []
    have_tool = _c_tool_available()
    c_seconds = max(0.1, budget.thread_seconds / 2)
    ref = (lambda: _c_tool(BENCH_PLUGIN, {}, env.workdir, c_seconds)) if have_tool else None
    got = _scaling(_service_fn(env, "rsa"), budget, ref)
    note = f"remote-mode RSA-2048 unwrap through the service: {got['many']:,.0f}/s vs {got['one']:,.0f}/s"
    if "c_plugin_ratio" in got:
        note += (f"; same rounds, plain C threads: plugin x{got['c_plugin_ratio']:.2f}, "
                 f"OpenSSL x{got['c_openssl_ratio']:.2f} (what the cores gave)")
    figures.append(Figure.ratio(
        f"{THREADS} threads bench-rsa (OpenSSL in plugin)", got["ratio"], "x 1 thread", TARGET, note=note,
        one_thread_per_s=round(got["one"], 1), threads_per_s=round(got["many"], 1), ratio_rounds=got["ratio_rounds"],
        c_plugin_ratio=got.get("c_plugin_ratio"), c_openssl_ratio=got.get("c_openssl_ratio")))

    if env.token is None:
        figures.append(Figure(f"{THREADS} threads pkcs11 (SoftHSM2)", None, "x 1 thread", note="SoftHSM2 not installed"))
        return figures
    ref = (lambda: _c_tool(PKCS11, env.token.config("kas-rsa"), env.workdir, c_seconds)) if have_tool else None
    got = _scaling(_service_fn(env, "hsm"), budget, ref)
    figures.append(Figure.ratio(
        f"{THREADS} threads pkcs11 (SoftHSM2)", got["ratio"], "x 1 thread", TARGET,
        note=f"remote-mode RSA-2048 unwrap through the service: {got['many']:,.0f}/s vs {got['one']:,.0f}/s",
        one_thread_per_s=round(got["one"], 1), threads_per_s=round(got["many"], 1), ratio_rounds=got["ratio_rounds"]))
    if "c_plugin_ratio" not in got:
        figures.append(Figure(f"{THREADS} threads pkcs11, C only", None, "x 1 thread",
                              note="build/pkcs11-bench-threads unavailable (make build/pkcs11-bench-threads)"))
    else:
        figures.append(Figure(
            f"{THREADS} threads pkcs11, C only", got["c_plugin_ratio"], "x 1 thread",
            note=f"build/pkcs11-bench-threads in the same rounds (plain C threads, no Python): SoftHSM2 "
                 f"x{got['c_plugin_ratio']:.2f}, OpenSSL x{got['c_openssl_ratio']:.2f}",
            detail={"c_plugin_ratio": got["c_plugin_ratio"], "c_openssl_ratio": got["c_openssl_ratio"]}))
    return figures
