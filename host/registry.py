"""Manager name -> factory, and provider config -> live manager.

A live manager exists per (config id, revision): built on first use and
reused; when a config's revision changes, the next use builds a new manager
and the old one is retired (closed once it has been out of use for a grace
period, so in-flight calls on other threads finish first).
"""

from __future__ import annotations

import logging
import threading
import time

from host import errors
from host.managers.base import KeyManager, ManagerFactory
from host.managers.basic import BASIC_MANAGER, BasicManager, basic_factory

log = logging.getLogger("host.registry")

RETIRE_GRACE_SECONDS = 60.0


class ManagerRegistry:
    def __init__(self, root_key=None):
        self._root_key = root_key
        self._factories: dict[str, ManagerFactory] = {}
        self._live: dict[str, tuple[int, KeyManager]] = {}
        self._retired: list[tuple[float, KeyManager]] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()
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
    def manager_for(self, config) -> KeyManager:
        """The live manager for a provider config (id, manager, config_json, revision)."""
        entry = self._live.get(config.id)
        if entry is not None and entry[0] == config.revision:
            return entry[1]
        with self._lock:
            entry = self._live.get(config.id)
            if entry is not None and entry[0] == config.revision:
                return entry[1]
            factory = self._factories.get(config.manager)
            if factory is None or config.manager == BASIC_MANAGER:
                if config.manager not in self._warned and config.manager != BASIC_MANAGER:
                    self._warned.add(config.manager)
                    log.warning("provider config %s names manager %r, which no loaded plugin registers; "
                                "using the default %s manager", config.name, config.manager, BASIC_MANAGER)
                manager: KeyManager = BasicManager(self._root_key, missing_manager=(
                    None if config.manager == BASIC_MANAGER else config.manager))
            else:
                manager = factory.create(config.config_json)
            if entry is not None:
                self._retired.append((time.monotonic(), entry[1]))
            self._live[config.id] = (config.revision, manager)
            self._close_retired(time.monotonic() - RETIRE_GRACE_SECONDS)
            return manager

    def live_count(self) -> int:
        return len(self._live)

    def _close_retired(self, before: float) -> None:
        keep = []
        for retired_at, manager in self._retired:
            if retired_at <= before:
                _close_quietly(manager)
            else:
                keep.append((retired_at, manager))
        self._retired = keep

    def close(self) -> None:
        with self._lock:
            for _, manager in self._live.values():
                _close_quietly(manager)
            self._live.clear()
            self._close_retired(float("inf"))


def _close_quietly(manager: KeyManager) -> None:
    try:
        manager.close()
    except Exception as e:  # closing must not take the host down
        log.warning("closing manager %r failed: %s", manager, type(e).__name__)
