"""Isolated plugins: the same .so run by km-plugin-host in a supervised child.

    plugin = load_isolated(PluginSpec("build/plugins/file-kek-manager.so", isolated=True))

The result is a host.loader.LoadedPlugin whose factories build
IsolatedManagers: the registry and the key service cannot tell them apart
from in-process ones. See runner/ for the child and its protocol.
"""

from __future__ import annotations

import os

from host import errors
from host.isolation import runner
from host.isolation.manager import IsolatedManager, factories
from host.isolation.supervisor import Supervisor
from host.loader import LoadedPlugin
from host.pinning import PluginSpec

__all__ = ["IsolatedManager", "load_isolated"]


def load_isolated(spec: PluginSpec) -> LoadedPlugin:
    if not os.path.exists(spec.path):
        raise errors.PluginLoadError(f"{spec.path}: no such file")
    spec = PluginSpec(os.path.abspath(spec.path), True, spec.sha256)
    try:
        runner_path = runner.path()
    except errors.PluginLoadError as e:
        raise errors.PluginLoadError(f"{spec.path}: {e.message}") from None
    supervisor = Supervisor(spec, runner_path)
    child = supervisor.start()
    try:
        name, version, abi, made = factories(supervisor, child.hello)
    except BaseException:
        supervisor.close()
        raise
    return LoadedPlugin(path=spec.path, name=name, version=version, abi_version=abi, factories=made,
                        _keepalive=[supervisor])
