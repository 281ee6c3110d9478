"""Pinned plugin files (issue 14 item 3): PATH#sha256=HEX, the writable-file
guard, `platform plugins inspect` printing the digest, and re-verification
when an isolated child restarts."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from host import errors
# Private on purpose: the CLI's split of the plugin-path variable has no public entry short of
# starting the CLI with real plugins; its tricky case (`isolated:` is not a path) is pinned here.
from host.cli import _split_env_paths
from host.managers.base import CallContext
from host.pinning import ALLOW_WRITABLE_ENV, PluginSpec
from host.plugin_specs import load_one, load_plugin_specs
from tests.isolation.conftest import stop_child


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def plugin_copy(wild_plugin, tmp_path):
    """A private copy (pins are tested by changing it)."""
    d = tmp_path / "plugins"
    d.mkdir(mode=0o755)
    out = d / "wild-manager.so"
    shutil.copyfile(wild_plugin, out)
    out.chmod(0o755)
    return out


def test_spec_parsing():
    assert PluginSpec.parse("a.so") == PluginSpec("a.so")
    assert PluginSpec.parse("isolated:/x/a.so#sha256=" + "AB" * 32) == PluginSpec("/x/a.so", True, "ab" * 32)
    with pytest.raises(errors.PluginLoadError, match="64 hex digits"):
        PluginSpec.parse("a.so#sha256=1234")
    assert _split_env_paths("isolated:/a.so:/b.so::isolated:/c.so#sha256=00") == [
        "isolated:/a.so", "/b.so", "isolated:/c.so#sha256=00"]


@pytest.mark.parametrize("prefix", ["", "isolated:"])
def test_a_matching_pin_loads_and_a_different_one_is_refused_naming_both(plugin_copy, prefix):
    good = sha256(plugin_copy)
    plugin = load_one(f"{prefix}{plugin_copy}#sha256={good}")
    assert plugin.name == "wild"
    if prefix:
        stop_child(plugin)
    wrong = "0" * 64
    with pytest.raises(errors.PluginLoadError) as e:
        load_one(f"{prefix}{plugin_copy}#sha256={wrong}")
    assert good in e.value.message and wrong in e.value.message and str(plugin_copy) in e.value.message


@pytest.mark.parametrize("target", ["file", "directory"])
def test_group_or_world_writable_plugins_are_refused_unless_allowed(plugin_copy, target, monkeypatch):
    (plugin_copy if target == "file" else plugin_copy.parent).chmod(0o775 if target == "directory" else 0o757)
    monkeypatch.delenv(ALLOW_WRITABLE_ENV, raising=False)
    for prefix in ("", "isolated:"):
        with pytest.raises(errors.PluginLoadError, match=f"writable.*{ALLOW_WRITABLE_ENV}"):
            load_plugin_specs([f"{prefix}{plugin_copy}"])
    monkeypatch.setenv(ALLOW_WRITABLE_ENV, "1")
    plugin = load_one(f"isolated:{plugin_copy}")
    assert plugin.name == "wild"
    stop_child(plugin)


def test_a_restarted_child_re_verifies_the_pin(plugin_copy):
    plugin = load_one(f"isolated:{plugin_copy}#sha256={sha256(plugin_copy)}")
    manager = plugin.factories[0].create(b"{}")
    try:
        assert manager.unwrap("", b"x", CallContext.with_timeout(10)) == b"x"
        with open(plugin_copy, "ab") as f:  # the file changes under the running platform
            f.write(b"\0")
        with pytest.raises(errors.Unavailable):
            manager.unwrap("segv", b"x", CallContext.with_timeout(10))
        with pytest.raises(errors.Unavailable, match="pin requires"):
            manager.unwrap("", b"x", CallContext.with_timeout(10))
    finally:
        manager.close()
        stop_child(plugin)


def test_inspect_prints_the_digest_to_pin(plugin_copy):
    digest = sha256(plugin_copy)
    cmd = [sys.executable, "-c", "from host.cli import run; run()", "plugins", "inspect"]
    text = subprocess.run(cmd + [str(plugin_copy)], capture_output=True, text=True, check=True).stdout
    assert f"#sha256={digest}" in text
    doc = json.loads(subprocess.run(cmd + [str(plugin_copy), "--json"], capture_output=True, text=True,
                                    check=True).stdout)
    assert doc["sha256"] == digest


def test_a_plugin_file_removed_under_a_running_platform_answers_unavailable(plugin_copy):
    plugin = load_one(f"isolated:{plugin_copy}")
    manager = plugin.factories[0].create(b"{}")
    try:
        plugin_copy.unlink()
        with pytest.raises(errors.Unavailable):
            manager.unwrap("abort", b"x", CallContext.with_timeout(10))
        with pytest.raises(errors.Unavailable, match="cannot open"):
            manager.unwrap("", b"x", CallContext.with_timeout(10))
    finally:
        manager.close()
        stop_child(plugin)
