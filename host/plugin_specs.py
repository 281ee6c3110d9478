"""Load the plugins named on the command line: `[isolated:]PATH[#sha256=HEX]`.

Each spec is checked (host.pinning), then loaded in-process (host.loader)
or in a supervised child (host.isolation). A file given twice or a manager
name offered by two files is an error naming both, as host.loader's.
"""

from __future__ import annotations

import os

from host import errors
from host.pinning import PluginSpec, verify


def load_one(text: str):
    spec = PluginSpec.parse(text)
    if spec.isolated:
        from host.isolation import load_isolated

        return load_isolated(spec)  # verifies the open file it hands the child, on every start
    from host.loader import load_plugin

    verify(spec)
    return load_plugin(spec.path)


def load_plugin_specs(specs) -> list:
    loaded = []
    seen_paths: dict[str, str] = {}
    owners: dict[str, str] = {}
    for text in specs:
        path = PluginSpec.parse(text).path
        real = os.path.realpath(path)
        if real in seen_paths:
            raise errors.PluginLoadError(f"{path}: given twice (also as {seen_paths[real]})")
        seen_paths[real] = path
        plugin = load_one(text)
        for f in plugin.factories:
            if f.name in owners:
                raise errors.PluginLoadError(f"{path}: manager {f.name!r} is already registered by {owners[f.name]}")
            owners[f.name] = path
        loaded.append(plugin)
    return loaded
