"""Prometheus metrics for the whole host, and the hooks other layers call.

The registry and key service report manager calls and cache events here;
the server reports RPCs. Calling a hook costs a dict lookup and a counter
increment, so layers call them unconditionally (with or without a server).
RPCs that finish on an event loop are counted once per pass of the loop,
together (as the access lines are, host.server.logs): the same counts, in
the metrics before the loop takes its next events, and before any /metrics
rendering in this process.

Multiple worker processes: when PROMETHEUS_MULTIPROC_DIR is set (the
`platform serve --workers N` command sets it), prometheus_client writes
per-process files there and /metrics aggregates them; otherwise the metrics
are those of the one process answering.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST

from host.loop_batch import LoopBatch

# Latency buckets from 0.5 ms to 10 s: manager calls to a local key are well
# under a millisecond, remote KMS calls tens to hundreds of milliseconds.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RPC_REQUESTS = Counter(
    "platform_rpc_requests_total", "RPCs handled, by procedure and Connect code", ["method", "code"])
RPC_LATENCY = Histogram(
    "platform_rpc_duration_seconds", "RPC latency, by procedure", ["method"], buckets=_BUCKETS)
MANAGER_CALLS = Counter(
    "platform_manager_calls_total", "Key-manager calls, by manager, operation and status",
    ["manager", "op", "status"])
MANAGER_LATENCY = Histogram(
    "platform_manager_call_duration_seconds", "Key-manager call latency, by manager and operation",
    ["manager", "op"], buckets=_BUCKETS)
WORKER_STARTS = Counter(
    "platform_worker_starts_total", "Server worker processes started (beyond --workers: respawns of dead ones)")
CACHE_EVENTS = Counter(
    "platform_cache_events_total", "Cache lookups, by cache and result (hit/miss)", ["cache", "result"])


# (method, code) -> the bound counter and histogram children: labels() costs a lock and
# tuple work per call, and the label sets are bounded (known procedures or a fixed label,
# Connect codes).
_rpc_children: dict[tuple[str, str], tuple] = {}


def observe_rpc(method: str, code: str, seconds: float) -> None:
    """One RPC finished: `method` is "/pkg.Service/Method" (or a fixed label), `code` "ok" or a Connect code."""
    _rpcs.add(((method, code), seconds))


def _count_rpcs(rpcs: list) -> None:
    for labels, seconds in rpcs:
        children = _rpc_children.get(labels)
        if children is None:
            children = _rpc_children.setdefault(labels, (RPC_REQUESTS.labels(*labels), RPC_LATENCY.labels(labels[0])))
        children[0].inc()
        children[1].observe(seconds)


# RPCs are counted once per loop pass; flush_rpcs() counts the queued ones now.
_rpcs = LoopBatch(_count_rpcs)
flush_rpcs = _rpcs.flush


def observe_manager_call(manager: str, op: str, status: str, seconds: float) -> None:
    """One key-manager call finished.

    manager: the manager name ("aws-kms", "opentdf.io/basic"); op: "wrap" |
    "unwrap" | "public_key" | "probe" | "create"; status: "ok" or the error's
    Connect code (host.errors.PlatformError.code).
    """
    MANAGER_CALLS.labels(manager, op, status).inc()
    MANAGER_LATENCY.labels(manager, op).observe(seconds)


def cache_event(cache: str, hit: bool) -> None:
    """One lookup in a named cache ("key", "manager", "private_key")."""
    CACHE_EVENTS.labels(cache, "hit" if hit else "miss").inc()


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics and its content type."""
    flush_rpcs()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
