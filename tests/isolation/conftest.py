"""Fixtures for isolated plugins: the wild test plugin, built here with gcc."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cbuild import build_shared
from tests.make import make_or_fail

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def stop_child(plugin) -> None:
    """Stop an isolated plugin's supervised child process now, not at interpreter exit.

    Private seam, on purpose: LoadedPlugin has no public close, and the supervisor lives in its
    _keepalive list (host.isolation.load_isolated puts it first). A public LoadedPlugin.close()
    in the loader would replace this one line.
    """
    plugin._keepalive[0].close()


@pytest.fixture(scope="session", autouse=True)
def runner_built():
    """build/km-plugin-host, (re)built through make."""
    make_or_fail("build/km-plugin-host")


@pytest.fixture(scope="session")
def wild_plugin(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wild") / "wild-manager.so"
    return build_shared(HERE / "wild_plugin.c", out)
