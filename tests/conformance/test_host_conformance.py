"""Every plugin built here passes the conformance checks through the Python host.

The C runner (test_c_runner.py) checks the same contract without Python;
each plugin's own tests go deeper (tests/pkcs11, tests/plugins, ...).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from host.loader import load_plugin
from tests.conformance.host_checks import check_manager

ROOT = Path(__file__).resolve().parents[2]


def _factory(path: Path):
    assert path.exists(), f"{path} is not built; run make plugins"
    (factory,) = load_plugin(str(path)).factories
    return factory


def _keks():
    return json.dumps({"keks": {"a": secrets.token_hex(32), "b": secrets.token_hex(32)},
                       "default_key_id": "a"}).encode()


@pytest.mark.parametrize("path", [
    ROOT / "build/plugins/file-kek-manager.so",
    ROOT / "build/examples/example-c-manager.so",
    ROOT / "build/examples/example-go-manager.so",
    ROOT / "build/examples/example-rust-manager.so",
], ids=lambda p: p.name)
def test_file_kek_style_plugins(path):
    done = check_manager(_factory(path), _keks(), key_id="b")
    assert done.keys() >= {"round_trip", "threads"}


@pytest.fixture(scope="module")
def remote_keystore(tmp_path_factory):
    out = tmp_path_factory.mktemp("rk") / "remote-keystore-manager.so"
    subprocess.run([sys.executable, str(ROOT / "plugins/_pyembed/build.py"),
                    str(ROOT / "tests/fixtures/remote_keystore/plugin.toml"), "--out", str(out),
                    "--tmpdir", str(out.parent / "tmp")], check=True, capture_output=True)
    return out


@pytest.mark.parametrize("alg,expect", [("rsa:2048", "remote_rsa"), ("ec:secp256r1", "remote_ec")])
def test_remote_keystore_plugin(remote_keystore, alg, expect):
    config = json.dumps({"keys": {"k": alg}}).encode()
    assert expect in check_manager(_factory(remote_keystore), config)
