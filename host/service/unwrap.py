"""The hot path: a wrapped DEK -> its KAS key -> the key's manager -> the DEK.

    unwrap(kid, wrapped, ephemeral)
      key lookup (cached; a background watch asks the store once per
                  `revision_check_seconds` which provider configs changed, and
                  drops the lookups and private keys cached under an old revision,
                  so edits made by other processes take effect within that period)
      local      : basic manager (root key) unwraps the private key  [cached]
      provider   : manager.unwrap(ctx key_id, wrapped private key)   [cached, TTL]
      (a missed private key is loaded once however many callers miss it at the same time,
       and a provider key used in the last REFRESH_AHEAD of its TTL is reloaded in the
       background, so steady traffic never waits for the manager)
      remote     : manager.unwrap(ctx key_id, wrapped DEK) -> DEK    [never cached]
                   (EC: manager returns the ECDH secret for the ephemeral key;
                    KEM: the KEM secret(s) for the ciphertext, host.kem opens the DEK)
      public_key : refused, this KAS has no private key for it
"""

from __future__ import annotations

import base64
import os
import threading
import time
import weakref

from cryptography.hazmat.primitives.asymmetric import ec

from host import crypto, errors
from host.managers.base import CallContext
from host.metrics import observe_manager_call
from host.service.bulkhead import DEFAULT_LIMIT as DEFAULT_MANAGER_CALLS
from host.service.bulkhead import Bulkhead
from host.service.cache import BoundedCache
from host.service.health import ManagerHealth
from host.service.revisions import RevisionWatch

DEFAULT_PRIVATE_KEY_TTL = 30.0
DEFAULT_REVISION_CHECK_SECONDS = 2.0
# The key caches hold every key in use up to a memory budget, so a working set of many keys is not
# a cliff. ~8 KiB per key for the lookup record and the parsed private key together (RSA-4096 and
# its wrapped PEM the largest; measured by bench/scale.py): the default holds 131,072 keys.
CACHE_BUDGET_ENV = "PLATFORM_KEY_CACHE_MB"
DEFAULT_CACHE_BUDGET_MB = 1024
BYTES_PER_CACHED_KEY = 8 * 1024
KAS_REF_TTL = 30.0
# Refresh-ahead: a provider key used in the last 20% of its TTL is reloaded by a background
# thread. The exposure bound stays the TTL after the manager last said yes: a refresh that
# fails leaves the old entry to expire on time, and is retried at most once per second.
REFRESH_AHEAD = 0.2
REFRESH_RETRY_SECONDS = 1.0
REFRESH_THREADS = 4          # refreshes in flight per process; beyond, a key loads at expiry
REFRESH_TIMEOUT = 10.0       # a background load's deadline (an RPC's default deadline)
LOAD_WAIT_SECONDS = 10.0     # how long a caller with no deadline waits for another's load
READY_MARGIN = 0.05          # a private key expiring sooner than this is not "ready" (see unwraps_now)


class _NeedsIO:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEEDS_IO"


NEEDS_IO = _NeedsIO()
"""What a `now=True` call answers instead of doing I/O (a store query, a manager call): for
callers that run warm work inline on an event loop and move the rest to a thread."""


def cache_capacity(budget_mb: float | None = None) -> int:
    """How many keys the lookup and private-key caches each hold for a budget (MiB; None: from
    PLATFORM_KEY_CACHE_MB, else the default)."""
    if budget_mb is None:
        raw = os.environ.get(CACHE_BUDGET_ENV, "").strip()
        try:
            budget_mb = float(raw) if raw else DEFAULT_CACHE_BUDGET_MB
        except ValueError:
            raise errors.InvalidArgument(f"{CACHE_BUDGET_ENV} must be a number of MiB, got {raw!r}") from None
        if budget_mb <= 0:
            raise errors.InvalidArgument(f"{CACHE_BUDGET_ENV} must be positive, got {raw!r}")
    return max(1, int(budget_mb * 2**20) // BYTES_PER_CACHED_KEY)


class UnwrapPath:
    def __init__(self, store, registry, *, private_key_ttl: float = DEFAULT_PRIVATE_KEY_TTL,
                 max_private_keys: int | None = None, max_keys: int | None = None,
                 cache_budget_mb: float | None = None,
                 revision_check_seconds: float = DEFAULT_REVISION_CHECK_SECONDS,
                 max_calls_per_manager: int = DEFAULT_MANAGER_CALLS):
        self._store = store
        self._registry = registry
        capacity = cache_capacity(cache_budget_mb)
        # Random eviction past the budget: traffic cycling over more keys degrades gradually.
        # kid -> {kas_id: KasKey, and None: the KasKey when the store said it is the only one with
        # that kid}: one entry a kid, whether it is asked for with its KAS, without, or both
        self.keys = BoundedCache("keys", max_keys or capacity, evict="random")
        # KasKey.id -> _Cached; local keys without TTL, provider keys with one
        self.private_keys = BoundedCache("private_keys", max_private_keys or capacity, ttl=None, evict="random")
        self.private_key_ttl = private_key_ttl
        self._loads: dict[tuple, _Load] = {}   # (KasKey.id, tag) -> the load in flight (single flight)
        self._loads_lock = threading.Lock()
        self._refresh_slots = threading.BoundedSemaphore(REFRESH_THREADS)
        self.refreshes = self.refresh_failures = 0
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (w := ref()) is not None and w._forked())
        self._kas_ids = BoundedCache("kas_refs", 1024, ttl=KAS_REF_TTL)  # KAS id, uri or name -> id
        self.revisions = RevisionWatch(store.providers, revision_check_seconds, self._drop_changed)
        self.manager_calls: dict[tuple[str, str, str], list] = {}
        self.bulkhead = Bulkhead(max_calls_per_manager)  # per provider config: one slow KMS stalls only its keys
        self.health = ManagerHealth()                    # per provider config: what its calls say (/readyz)
        self._calls_lock = threading.Lock()

    def _forked(self) -> None:
        # Loads and refreshes in flight belong to threads the fork did not copy.
        self._loads = {}
        self._loads_lock = threading.Lock()
        self._refresh_slots = threading.BoundedSemaphore(REFRESH_THREADS)

    @property
    def revision_check_seconds(self) -> float:
        """How often the store is asked which provider configs changed (0: on every lookup)."""
        return self.revisions.period

    @revision_check_seconds.setter
    def revision_check_seconds(self, seconds: float) -> None:
        self.revisions.period = seconds

    # ---- lookup --------------------------------------------------------------
    def key(self, kid: str, kas_id: str | None = None):
        if self.revisions.period <= 0:
            self.revisions.check()
        by_kas = self.keys.get(kid)
        key = None if by_kas is None else by_kas.get(kas_id)
        if key is None:
            key = self._load_key(kid, kas_id, by_kas)
        return key

    def _load_key(self, kid: str, kas_id: str | None, by_kas: dict | None):
        self.revisions.start()  # first miss of this process: the watch runs from now on
        key = self._store.keys.get_by_kid(kid, kas_id)
        # copied, not changed in place: a lookup racing this one reads the old dict or the new
        by_kas = {**(by_kas or {}), kas_id: key, key.kas_id: key}
        self.keys.put(kid, by_kas)
        return key

    def kas_id(self, ref: str) -> str:
        """The id of the KAS named by id, uri or name (cached: asked on every facade unwrap)."""
        kas_id = self._kas_ids.get(ref)
        if kas_id is None:
            kas_id = self._store.kas.get(ref).id
            self._kas_ids.put(ref, kas_id)
        return kas_id

    def _drop_changed(self, revisions: dict[str, int]) -> None:
        """Called by the watch: forget lookups and private keys cached under another revision."""
        def stale(tag) -> bool:
            return tag is not None and revisions.get(tag[0], tag[1]) != tag[1]

        self.keys.pop_where(lambda _kid, by_kas: any(
            key.provider_config is not None and stale((key.provider_config.id, key.provider_config.revision))
            for key in by_kas.values()))
        self.private_keys.pop_where(lambda _k, entry: stale(entry.tag))

    def cached_key(self, kid: str, kas_id: str | None = None):
        """The key for `kid` when the lookup cache holds it, else None (finding it needs the store).

        A look at the cache, not a lookup (no hit/miss counted). A revision check falling due
        is no reason to refuse: the watch runs on its own thread, and a change it sees drops
        the cached lookup, so this answers None from then on. Inline checks (period 0) query
        on every lookup: nothing is cached then."""
        if self.revisions.period <= 0:
            return None
        by_kas = self.keys.peek(kid)
        return None if by_kas is None else by_kas.get(kas_id)

    def unwraps_now(self, key, margin: float = READY_MARGIN) -> bool:
        """Whether unwrapping with `key` needs no I/O now and for `margin` more seconds: local or
        provider mode, private key cached under the key's config revision and not expiring within
        `margin` (which covers the time until the caller's unwrap, well under a millisecond)."""
        if key.mode != "local" and key.mode != "provider":
            return False
        pc = key.provider_config
        entry = self.private_keys.peek(key.id, margin)
        return entry is not None and entry.tag == (None if pc is None else (pc.id, pc.revision))

    def ready(self, kid: str, kas_id: str | None = None, margin: float = READY_MARGIN):
        """The key for `kid` when unwrapping with it needs no I/O now and for `margin` more
        seconds (cached_key and unwraps_now), else None."""
        key = self.cached_key(kid, kas_id)
        return key if key is not None and self.unwraps_now(key, margin) else None

    def forget(self, kid: str | None = None) -> None:
        """Drop cached lookups (after this process rotates or edits keys)."""
        self.keys.clear()

    # ---- routing -------------------------------------------------------------
    def manager_for(self, key):
        if key.mode == "local":
            return self._registry.basic
        if key.provider_config is None:
            raise errors.Internal(f"key {key.key_id!r} is in {key.mode} mode but has no provider config")
        return self._registry.manager_for(key.provider_config)

    def _call(self, manager_name: str, op: str, slot: str | None, fn, *args):
        """One manager call, counted; `slot` (the provider config id) bounds the calls in flight
        into that manager (None: the built-in basic manager, local CPU work)."""
        started = time.perf_counter()
        status = "ok"
        if slot is not None:
            try:
                self.bulkhead.enter(slot, manager_name)
            except errors.Unavailable:
                observe_manager_call(manager_name, op, "unavailable", 0.0)
                raise
        try:
            return fn(*args)
        except errors.PlatformError as e:
            status = e.code
            if slot is not None and not isinstance(e, errors.CryptoError) and not _host_authored(fn):
                e.source = manager_name  # the server shows clients the code only (PlatformError.source)
            raise
        except Exception:
            status = "internal"
            raise
        finally:
            if slot is not None:
                self.bulkhead.leave(slot)
                self.health.record(slot, manager_name, status)
            elapsed = time.perf_counter() - started
            k = (manager_name, op, status)
            rec = self.manager_calls.get(k)
            if rec is None:
                with self._calls_lock:
                    rec = self.manager_calls.setdefault(k, [0, 0.0])
            rec[0] += 1
            rec[1] += elapsed
            observe_manager_call(manager_name, op, status, elapsed)

    def private_key(self, key, ctx: CallContext | None = None):
        pc = key.provider_config
        tag = None if pc is None else (pc.id, pc.revision)
        cached = self.private_keys.get(key.id)
        if cached is not None and cached.tag == tag:
            if cached.refresh_at and time.monotonic() >= cached.refresh_at:
                self._refresh_ahead(key, cached)
            return cached.private
        return self._load_once(key, tag, ctx)

    def _load_once(self, key, tag, ctx: CallContext | None):
        """Single flight: while one caller loads a private key (one manager call), the others
        that miss it wait for that load's result instead of calling the manager too."""
        flight = (key.id, tag)
        with self._loads_lock:
            load = self._loads.get(flight)
            if load is None:
                load = self._loads[flight] = _Load()
                leader = True
            else:
                leader = False
        if leader:
            return self._run_load(load, flight, key, tag, ctx)
        if ctx is None or ctx.deadline is None:
            wait = LOAD_WAIT_SECONDS
        else:
            wait = ctx.deadline - time.monotonic()
        if not load.done.wait(max(0.0, wait)):
            raise errors.DeadlineExceeded(f"the private key of {key.key_id!r} is still being loaded by its "
                                          f"key manager (waited {max(0.0, wait):.3f}s)")
        if load.error is not None:
            raise load.error  # the manager's one answer, shared by everyone who waited for it
        return load.private

    def _run_load(self, load: "_Load", flight: tuple, key, tag, ctx: CallContext | None):
        try:
            load.private = self._load(key, tag, ctx)
            return load.private
        except BaseException as e:
            load.error = e
            raise
        finally:
            with self._loads_lock:
                self._loads.pop(flight, None)
            load.done.set()

    def _refresh_ahead(self, key, cached: "_Cached") -> None:
        """Reload a hot provider key in the background before its entry expires."""
        flight = (key.id, cached.tag)
        with self._loads_lock:
            now = time.monotonic()
            if now < cached.refresh_at or flight in self._loads:
                return  # another caller got here first
            cached.refresh_at = now + REFRESH_RETRY_SECONDS  # retried once a second if this one fails
            if not self._refresh_slots.acquire(blocking=False):
                return  # enough refreshes in flight: this key loads on demand at expiry
            load = self._loads[flight] = _Load()
        threading.Thread(target=self._refresh, args=(load, flight, key, cached.tag), name="key-refresh",
                         daemon=True).start()

    def _refresh(self, load: "_Load", flight: tuple, key, tag) -> None:
        try:
            self._run_load(load, flight, key, tag, CallContext.with_timeout(REFRESH_TIMEOUT))
            self.refreshes += 1
        except Exception:  # counted by _call (metrics, manager health); the old entry expires on time
            self.refresh_failures += 1
        finally:
            self._refresh_slots.release()

    def _load(self, key, tag, ctx: CallContext | None):
        """Ask the key's manager for its private key and cache it (local: for good; provider: TTL)."""
        ctx_json = key.private_key_ctx or {}
        wrapped_b64 = ctx_json.get("wrapped_key")
        if not wrapped_b64:
            raise errors.Internal(f"key {key.key_id!r} has no wrapped private key")
        wrapped = base64.b64decode(wrapped_b64)
        manager = self.manager_for(key)
        if key.mode == "local":
            name, slot = "opentdf.io/basic", None
        else:
            name, slot = key.provider_config.manager, key.provider_config.id
        pem = self._call(name, "unwrap", slot, manager.unwrap, ctx_json.get("key_id", ""), wrapped, ctx)
        private = crypto.load_private_pem(pem, key.algorithm, what=f"unwrapped private key of {key.key_id!r}",
                                          authenticated=True)
        if key.mode == "local":
            self.private_keys.put(key.id, _Cached(tag, private, 0.0))
        elif self.private_key_ttl > 0:  # provider mode: bounded exposure, re-asks the manager after the TTL
            ttl = self.private_key_ttl
            refresh_at = time.monotonic() + ttl * (1 - REFRESH_AHEAD)
            self.private_keys.put(key.id, _Cached(tag, private, refresh_at), ttl=ttl)
        return private

    # ---- the operation ------------------------------------------------------
    def unwrap(self, kid: str, wrapped: bytes, ephemeral_public_key: bytes | str | None = None,
               kas_id: str | None = None, ctx: CallContext | None = None) -> bytes:
        key = self.key(kid, kas_id)
        return self.unwrap_with(key, wrapped, ephemeral_public_key, ctx)

    def unwrap_with(self, key, wrapped: bytes, ephemeral_public_key=None, ctx: CallContext | None = None,
                    *, now: bool = False):
        """The DEK; with `now`, NEEDS_IO instead when the unwrap would need I/O (unwraps_now)."""
        if now and not self.unwraps_now(key):
            return NEEDS_IO
        if key.algorithm.startswith("ec:"):
            if not ephemeral_public_key:
                raise errors.InvalidArgument(f"key {key.key_id!r} is an EC key: the ephemeral public key is required")
            eph = crypto.load_ephemeral_public_key(ephemeral_public_key, key.algorithm)
            shared = self.shared_secret(key, eph, ctx)
            return crypto.aes_gcm_open(crypto.derive_wrap_key(shared), wrapped)
        mode = key.mode
        if mode == "local" or mode == "provider":
            kem = crypto.KEMS.get(key.algorithm)  # one dict probe on the RSA path
            if kem is not None:
                return crypto.kem.unwrap(self.private_key(key, ctx), kem, wrapped)
            return crypto.rsa_unwrap(self.private_key(key, ctx), wrapped)
        if mode == "remote":
            manager = self.manager_for(key)
            remote_id = (key.private_key_ctx or {}).get("key_id", "")
            kem = crypto.KEMS.get(key.algorithm)
            if kem is not None:  # keymanager.h KM_CAP_KEM: the plugin decapsulates, the DEK is opened here
                return crypto.kem.unwrap_remote(
                    lambda ct: self._call(key.provider_config.manager, "unwrap", key.provider_config.id,
                                          manager.unwrap, remote_id, ct, ctx), kem, wrapped, key.public_key_pem)
            return self._call(key.provider_config.manager, "unwrap", key.provider_config.id, manager.unwrap,
                              remote_id, wrapped, ctx)
        raise _public_key_only(key)

    def shared_secret(self, key, ephemeral_public_key, ctx: CallContext | None = None, *, now: bool = False):
        """ECDH between an EC KAS key and a client's ephemeral key, wherever the KAS key lives;
        with `now`, NEEDS_IO instead when that would need I/O (unwraps_now)."""
        if now and not self.unwraps_now(key):
            return NEEDS_IO
        mode = key.mode
        if mode == "local" or mode == "provider":
            return self.private_key(key, ctx).exchange(ec.ECDH(), ephemeral_public_key)
        if mode == "remote":  # ABI v1: the manager gets the ephemeral key (DER) and returns the secret
            manager = self.manager_for(key)
            remote_id = (key.private_key_ctx or {}).get("key_id", "")
            return self._call(key.provider_config.manager, "unwrap", key.provider_config.id, manager.unwrap,
                              remote_id, crypto.ephemeral_der(ephemeral_public_key), ctx)
        raise _public_key_only(key)

    def close(self) -> None:
        self.revisions.close()

    def stats(self) -> dict:
        return {
            "revision_checks": self.revisions.stats(),
            "key_cache": self.keys.stats(),
            "private_key_cache": {**self.private_keys.stats(), "ttl_seconds": self.private_key_ttl,
                                  "refreshes": self.refreshes, "refresh_failures": self.refresh_failures},
            "manager_calls": [
                {"manager": m, "op": op, "status": st, "count": c, "seconds": round(t, 6)}
                for (m, op, st), (c, t) in sorted(self.manager_calls.items())
            ],
        }


class _Cached:
    """A cached private key: the (config id, revision) it was unwrapped under (None: local
    mode; another revision makes it a miss) and when to start refreshing it (0: never)."""

    __slots__ = ("tag", "private", "refresh_at")

    def __init__(self, tag, private, refresh_at: float):
        self.tag, self.private, self.refresh_at = tag, private, refresh_at


class _Load:
    """One private-key load in flight: its result or error, and an event for those waiting."""

    __slots__ = ("done", "private", "error")

    def __init__(self):
        self.done = threading.Event()
        self.private = None
        self.error: BaseException | None = None


def _host_authored(fn) -> bool:
    """True when the manager behind bound method `fn` words its errors itself, with no backend
    text (host.managers.basic; the registry's LiveManager says so for the manager it holds)."""
    return bool(getattr(getattr(fn, "__self__", None), "host_authored_errors", False))


def _public_key_only(key) -> errors.FailedPrecondition:
    return errors.FailedPrecondition(
        f"key {key.key_id!r} is a public_key-mode key: this platform holds no private key for it and cannot unwrap")


def rewrap_to_client(dek: bytes, client_public_key_pem: bytes | str) -> dict:
    """Encrypt a DEK to a client's public key: RSA-OAEP, or for an EC client key
    an ephemeral ECDH session key (HKDF + AES-GCM) as DESIGN.md specifies."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    data = client_public_key_pem.encode() if isinstance(client_public_key_pem, str) else client_public_key_pem
    try:
        pub = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise errors.InvalidArgument("client public key does not parse as a PEM public key") from None
    if isinstance(pub, rsa.RSAPublicKey):
        if pub.key_size < 2048:
            raise errors.InvalidArgument("client RSA public key must be at least 2048 bits")
        return {"algorithm": f"rsa:{pub.key_size}", "rewrapped_key": base64.b64encode(crypto.seal_dek(pub, dek)).decode()}
    if isinstance(pub, ec.EllipticCurvePublicKey):
        session = ec.generate_private_key(pub.curve)
        return {"algorithm": f"ec:{pub.curve.name}",
                "rewrapped_key": base64.b64encode(crypto.seal_dek(pub, dek, session)).decode(),
                "session_public_key": crypto.public_pem(session)}
    raise errors.InvalidArgument("client public key must be RSA or EC")
