"""Process-wide wiring: settings -> root key, plugins/registry, store, key service.

Everything is built lazily on first use so that `platform plugins list` does
not open a database and `platform policy ...` does not load plugins it does
not need. CLI commands and the server both go through one `Platform`.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

DEFAULT_STATE_DIR = ".platform"


@dataclass(frozen=True)
class Settings:
    plugin_paths: tuple[str, ...] = ()
    db_url: str | None = None          # None -> sqlite under state_dir
    root_key_file: str | None = None   # else PLATFORM_ROOT_KEY
    verbosity: int = 0
    state_dir: str = field(default_factory=lambda: os.environ.get("PLATFORM_STATE_DIR", DEFAULT_STATE_DIR))

    @property
    def effective_db_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{os.path.join(self.state_dir, 'platform.db')}"


class Platform:
    """Lazily-built components of one platform process."""

    def __init__(self, settings: Settings):
        self.settings = settings

    @functools.cached_property
    def root_key(self):
        """The root KEK (host.rootkey.RootKey) or None when none is configured."""
        from host.rootkey import load_root_key

        return load_root_key(self.settings.root_key_file)

    @functools.cached_property
    def plugins(self):
        """Plugins loaded from settings.plugin_paths, `[isolated:]PATH[#sha256=HEX]` each
        (host.loader.LoadedPlugin list)."""
        from host.plugin_specs import load_plugin_specs

        return load_plugin_specs(self.settings.plugin_paths)

    @functools.cached_property
    def registry(self):
        from host.registry import ManagerRegistry

        return ManagerRegistry.with_builtins(self.plugins, root_key=self.root_key)

    @functools.cached_property
    def store(self):
        from host.store import Store

        return Store.open(self.settings.effective_db_url, root_key=self.root_key)

    @functools.cached_property
    def keys(self):
        from host.service import KeyService
        from host.service.bulkhead import limit_from_env

        return KeyService(self.store, self.registry, root_key=self.root_key,
                          max_calls_per_manager=limit_from_env(os.environ))

    def close(self) -> None:
        for name in ("keys", "registry", "store"):
            obj = self.__dict__.get(name)
            if obj is not None and hasattr(obj, "close"):
                obj.close()
