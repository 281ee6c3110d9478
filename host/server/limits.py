"""What the server gives one client, in time and connections: every limit in one place.

    PLATFORM_HTTP_HEADER_TIMEOUT_MS   5000   to receive a request's headers; also how long an idle
                                             keep-alive connection (or one that sends nothing) is kept
    PLATFORM_HTTP_BODY_TIMEOUT_MS    10000   to receive a request's whole body once its headers are in
    PLATFORM_HTTP_BODY_MIN_PIECE       512   bytes a streamed body must average per piece once past its
                                             first BODY_PIECE_GRACE pieces (refused as resource_exhausted)
    PLATFORM_HTTP_MAX_CONNECTIONS     2048   open connections per worker process; more wait in the
                                             listen backlog until one closes
    PLATFORM_RPC_TIMEOUT_MS          10000   the deadline of an RPC whose client sends no Connect-Timeout-Ms
    PLATFORM_RPC_MAX_TIMEOUT_MS      60000   the longest deadline a client may ask for (larger ones are cut)
    PLATFORM_REWRAP_THREADS             64   worker threads for Rewraps that need I/O (cold keys, remote
                                             keys, decision hooks); other RPCs have their own threads

Why these shapes: a half-open connection costs the attacker one socket and us one slot, so a
slot must come back quickly (header timeout) and there must be many of them (connections);
a KMS that never answers must cost a Rewrap its deadline, not the server's threads (deadline,
and the per-manager bulkhead in host.service.bulkhead). Each piece of a streamed (chunked) body
costs the server about 90 µs of CPU however small it is (granian wakes the event loop once per
piece), so a body cut into 1-byte chunks would buy a client a core for the whole body timeout:
the piece rule bounds that cost to about one piece per BODY_MIN_PIECE bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from host.errors import InvalidArgument


# A streamed body's first pieces are free of the piece rule: a client's first write is often
# small (a prefix, a flush), and a short body may be cut anyhow.
BODY_PIECE_GRACE = 64


@dataclass(frozen=True)
class ServerLimits:
    header_timeout_ms: int = 5000
    body_timeout_ms: int = 10000
    body_min_piece: int = 512
    max_connections: int = 2048
    rpc_timeout_ms: int = 10000
    rpc_max_timeout_ms: int = 60000
    rewrap_threads: int = 64

    @classmethod
    def from_env(cls, env) -> "ServerLimits":
        values = {}
        for f in fields(cls):
            name = ENV_NAMES[f.name]
            raw = (env.get(name) or "").strip()
            if not raw:
                continue
            low, high = _RANGES[f.name]
            if not raw.isdigit() or not low <= int(raw) <= high:
                raise InvalidArgument(f"{name} must be an integer from {low} to {high}, got {raw[:20]!r}")
            values[f.name] = int(raw)
        limits = cls(**values)
        if limits.rpc_timeout_ms > limits.rpc_max_timeout_ms:
            raise InvalidArgument(f"{ENV_NAMES['rpc_timeout_ms']} must not exceed {ENV_NAMES['rpc_max_timeout_ms']}")
        return limits

    @property
    def body_timeout(self) -> float:
        return self.body_timeout_ms / 1000.0

    def deadline_seconds(self, client_timeout_ms: int | None) -> float:
        """The RPC's time budget: the client's Connect-Timeout-Ms, at most the cap, else the default."""
        if client_timeout_ms is None:
            return self.rpc_timeout_ms / 1000.0
        return min(client_timeout_ms, self.rpc_max_timeout_ms) / 1000.0


ENV_NAMES = {
    "header_timeout_ms": "PLATFORM_HTTP_HEADER_TIMEOUT_MS",
    "body_timeout_ms": "PLATFORM_HTTP_BODY_TIMEOUT_MS",
    "body_min_piece": "PLATFORM_HTTP_BODY_MIN_PIECE",
    "max_connections": "PLATFORM_HTTP_MAX_CONNECTIONS",
    "rpc_timeout_ms": "PLATFORM_RPC_TIMEOUT_MS",
    "rpc_max_timeout_ms": "PLATFORM_RPC_MAX_TIMEOUT_MS",
    "rewrap_threads": "PLATFORM_REWRAP_THREADS",
}
_RANGES = {
    "header_timeout_ms": (100, 600_000),
    "body_timeout_ms": (100, 600_000),
    "body_min_piece": (1, 65536),
    "max_connections": (16, 1_000_000),
    "rpc_timeout_ms": (1, 3_600_000),
    "rpc_max_timeout_ms": (1, 3_600_000),
    "rewrap_threads": (1, 1024),
}
