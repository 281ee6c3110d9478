"""Manager name -> factory, and provider config -> live manager.

A live manager exists per (config id, revision): built on first use and
reused; when a config's revision changes, the next use builds a new manager
and the old one is retired. Lifetimes go by lease, not by timer: every call
through a live manager holds a lease on it for the call's duration, and a
retired manager is destroyed when its last lease returns (at once when it
has none), so no call ever reaches a destroyed plugin handle and none is
kept alive longer than its calls. New managers are built outside the global
lock (a slow create, e.g. an HSM login, holds up only lookups of its config).
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager

from host import errors
from host.managers.base import KeyManager, ManagerFactory
from host.managers.basic import BASIC_MANAGER, BasicManager, basic_factory

log = logging.getLogger("host.registry")

_SUCCESSOR_TRIES = 8  # a retired manager's call moves to its successor; bounded against a revision storm


class LiveManager:
    """The registry's handle on one live manager: a KeyManager whose every call holds a lease.

    A call that finds this manager already destroyed (its config moved on
    between the lookup and the call) runs on the config's current manager,
    which is what a fresh lookup would have returned.
    """

    __slots__ = ("manager", "revision", "_registry", "_config_id", "_lock", "_leases", "_retired",
                 "_destroyed", "__weakref__")

    def __init__(self, registry: "ManagerRegistry", config_id: str, revision: int, manager: KeyManager):
        self.manager = manager
        self.revision = revision
        self._registry = registry
        self._config_id = config_id
        self._lock = threading.Lock()
        self._leases = 0
        self._retired = False
        self._destroyed = False

    def __repr__(self) -> str:
        return f"LiveManager({self.manager!r}, revision={self.revision})"

    @property
    def host_authored_errors(self) -> bool:
        """Whether the manager words its errors itself, with no backend text (host.managers.basic)."""
        return bool(getattr(self.manager, "host_authored_errors", False))

    # ---- leases --------------------------------------------------------------
    def _acquire(self) -> "LiveManager":
        live = self
        for _ in range(_SUCCESSOR_TRIES):
            with live._lock:
                if not live._destroyed:
                    live._leases += 1
                    return live
            successor = self._registry._current(self._config_id)
            if successor is None or successor is live:
                break
            live = successor
        raise errors.Unavailable("the key manager for this provider config was shut down")

    def _release(self) -> None:
        with self._lock:
            self._leases -= 1
            if self._leases or not self._retired or self._destroyed:
                return
            self._destroyed = True
        self._registry._destroy(self)  # outside the lock: destroy may take a while

    def _retire(self) -> None:
        with self._lock:
            self._retired = True
            if self._leases or self._destroyed:
                return  # the last lease to return destroys it
            self._destroyed = True
        self._registry._destroy(self)

    @contextmanager
    def lease(self):
        """The underlying manager, kept alive (not destroyed) until the block ends."""
        live = self._acquire()
        try:
            yield live.manager
        finally:
            live._release()

    # ---- KeyManager ------------------------------------------------------------
    def wrap(self, key_id: str, plain: bytes, ctx=None) -> bytes:
        live = self._acquire()
        try:
            return live.manager.wrap(key_id, plain, ctx)
        finally:
            live._release()

    def unwrap(self, key_id: str, wrapped: bytes, ctx=None) -> bytes:
        # The hot path (remote mode): the lease taken and returned inline, one lock each way.
        lock = self._lock
        with lock:
            if self._destroyed:
                leased = False
            else:
                leased = True
                self._leases += 1
        if not leased:
            live = self._acquire()
            try:
                return live.manager.unwrap(key_id, wrapped, ctx)
            finally:
                live._release()
        try:
            return self.manager.unwrap(key_id, wrapped, ctx)
        finally:
            with lock:
                self._leases -= 1
                last = not self._leases and self._retired and not self._destroyed
                if last:
                    self._destroyed = True
            if last:
                self._registry._destroy(self)

    def public_key(self, key_id: str, ctx=None) -> str:
        live = self._acquire()
        try:
            return live.manager.public_key(key_id, ctx)
        finally:
            live._release()

    def probe(self, ctx=None) -> None:
        live = self._acquire()
        try:
            return live.manager.probe(ctx)
        finally:
            live._release()

    def close(self) -> None:
        """The registry owns live managers: callers never destroy them."""


class ManagerRegistry:
    def __init__(self, root_key=None):
        self._root_key = root_key
        self._factories: dict[str, ManagerFactory] = {}
        self._live: dict[str, LiveManager] = {}
        self._building: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self.destroyed = 0  # managers this registry has destroyed (each exactly once)
        self.basic = BasicManager(root_key)

    @classmethod
    def with_builtins(cls, plugins=(), root_key=None) -> "ManagerRegistry":
        reg = cls(root_key)
        reg.register(basic_factory(root_key))
        for plugin in plugins:
            for factory in plugin.factories:
                reg.register(factory)
        return reg

    # ---- factories ---------------------------------------------------------
    def register(self, factory: ManagerFactory) -> None:
        existing = self._factories.get(factory.name)
        if existing is not None:
            raise errors.PluginLoadError(
                f"{factory.source}: manager {factory.name!r} is already registered by {existing.source}")
        self._factories[factory.name] = factory

    def factory(self, name: str) -> ManagerFactory | None:
        return self._factories.get(name)

    def factories(self) -> list[ManagerFactory]:
        return sorted(self._factories.values(), key=lambda f: f.name)

    def names(self) -> list[str]:
        return sorted(self._factories)

    def build(self, manager_name: str, config: bytes) -> KeyManager:
        """A fresh manager (the caller closes it), e.g. to validate a config."""
        factory = self._factories.get(manager_name)
        if factory is None:
            raise errors.FailedPrecondition(
                f"no key manager named {manager_name!r} is registered; load its plugin with "
                f"--key-manager-plugin=<path> (loaded: {', '.join(self.names())})")
        return factory.create(config)

    # ---- live managers -----------------------------------------------------
    def manager_for(self, config) -> LiveManager:
        """The live manager for a provider config (id, manager, config_json, revision).

        Revisions only grow: a caller holding an older read of the config gets
        the newer manager rather than rebuilding the old one.
        """
        live = self._live.get(config.id)
        if live is not None and live.revision >= config.revision:
            return live
        with self._lock:
            build_lock = self._building.setdefault(config.id, threading.Lock())
        with build_lock:  # one build per config at a time; other configs and lookups go on
            live = self._live.get(config.id)
            if live is not None and live.revision >= config.revision:
                return live
            new = LiveManager(self, config.id, config.revision, self._create(config))
            with self._lock:
                old = self._live.get(config.id)
                self._live[config.id] = new
        if old is not None:
            old._retire()
        return new

    def lease(self, config):
        """`with registry.lease(config) as manager:` for several calls on one manager."""
        return self.manager_for(config).lease()

    def _create(self, config) -> KeyManager:
        factory = self._factories.get(config.manager)
        if factory is not None and config.manager != BASIC_MANAGER:
            return factory.create(config.config_json)
        if config.manager not in self._warned and config.manager != BASIC_MANAGER:
            self._warned.add(config.manager)
            log.warning("provider config %s names manager %r, which no loaded plugin registers; "
                        "using the default %s manager", config.name, config.manager, BASIC_MANAGER)
        return BasicManager(self._root_key, missing_manager=(
            None if config.manager == BASIC_MANAGER else config.manager))

    def _current(self, config_id: str) -> LiveManager | None:
        return self._live.get(config_id)

    def _destroy(self, live: LiveManager) -> None:
        try:
            live.manager.close()
        except Exception as e:  # closing must not take the host down
            log.warning("closing manager %r failed: %s", live.manager, type(e).__name__)
        with self._lock:
            self.destroyed += 1

    def live_count(self) -> int:
        return len(self._live)

    def revisions(self) -> list[int]:
        return sorted(live.revision for live in self._live.values())

    def close(self) -> None:
        """Shutdown: every live manager is retired; idle ones are destroyed now, the
        others when the call holding their last lease returns."""
        with self._lock:
            retiring = list(self._live.values())
            self._live.clear()
        for live in retiring:
            live._retire()
