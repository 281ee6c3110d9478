"""The FFI crossing: file-kek's AES-256-GCM unwrap through the C ABI vs the
same AES-GCM in-process, and the cost of one C ABI round trip.

Baseline: AESGCM(kek).decrypt(nonce, body, key_id) -- the very blob the
plugin opens, with the same key and AAD (file-kek's wrapped format), a new
AESGCM object per call as the plugin sets up a cipher context per call.
Round trip: PluginManager.unwrap on bench-echo (the plugin copies 32 bytes
back): status mapping, buffers in and out, free -- everything but the work.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.results import Figure
from bench.timing import Budget, paired, per_call_seconds


def run(env, budget: Budget) -> list[Figure]:
    manager = env.manager("fk")
    key_id = env.file_kek_config["default_key_id"]
    kek = bytes.fromhex(env.file_kek_config["keks"][key_id])
    aad = key_id.encode()
    dek = os.urandom(32)
    blob = manager.wrap(key_id, dek)
    nonce, body = blob[:12], blob[12:]

    def subject():
        return manager.unwrap(key_id, blob)

    def baseline():
        return AESGCM(kek).decrypt(nonce, body, aad)

    assert subject() == dek and baseline() == dek
    result = paired(baseline, subject, budget)
    per_call_ffi = 1e6 / result.subject_rate
    per_call_inproc = 1e6 / result.baseline_rate

    echo = env.manager("echo")
    echo_us = per_call_seconds(lambda: echo.unwrap("", dek), budget) * 1e6
    return [
        Figure.ratio("FFI unwrap file-kek", result.ratio, "x in-process", 0.5,
                     note=f"plugin {per_call_ffi:.2f}us vs in-process AESGCM {per_call_inproc:.2f}us per call "
                          f"(CPU); wall-clock ratio {result.wall_ratio:.3f}; target: within 2x",
                     **result.detail()),
        Figure("C ABI round trip", echo_us, "us/call (CPU)",
               note=f"PluginManager.unwrap on bench-echo (32 bytes, no work); "
                    f"file-kek minus in-process: {per_call_ffi - per_call_inproc:.2f}us",
               detail={"echo_us": round(echo_us, 3), "ffi_minus_inproc_us": round(per_call_ffi - per_call_inproc, 3)}),
    ]
