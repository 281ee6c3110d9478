"""Fixtures for key-service tests: real plugins, real databases."""

from __future__ import annotations

import functools
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from host.app import Platform, Settings
from tests.dbfixtures import db_url, pg_db_url, pg_server, sqlite_db_url  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
FILE_KEK = ROOT / "build" / "plugins" / "file-kek-manager.so"


@pytest.fixture(scope="session")
def remote_keystore_plugin(tmp_path_factory) -> Path:
    """The remote-mode test plugin (tests/fixtures/remote_keystore), built with the pyembed adapter."""
    out = tmp_path_factory.mktemp("rk") / "remote-keystore-manager.so"
    subprocess.run([sys.executable, str(ROOT / "plugins/_pyembed/build.py"),
                    str(ROOT / "tests/fixtures/remote_keystore/plugin.toml"), "--out", str(out),
                    "--tmpdir", str(out.parent / "tmp")], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def file_kek_plugin() -> Path:
    assert FILE_KEK.exists(), "run `make plugins` first (make test does)"
    return FILE_KEK


@pytest.fixture
def root_key_hex(monkeypatch) -> str:
    value = secrets.token_hex(32)
    monkeypatch.setenv("PLATFORM_ROOT_KEY", value)
    return value


class _PlatformWithServiceOptions(Platform):
    """A Platform whose key service is built with the given KeyService options (cache sizes, TTLs)."""

    def __init__(self, settings: Settings, service_options: dict):
        super().__init__(settings)
        self.service_options = service_options

    @functools.cached_property
    def keys(self):
        from host.service import KeyService

        return KeyService(self.store, self.registry, root_key=self.root_key, **self.service_options)


def make_platform(db: str, plugins=(), **service_options) -> Platform:
    settings = Settings(db_url=db, plugin_paths=tuple(str(x) for x in plugins))
    return _PlatformWithServiceOptions(settings, service_options) if service_options else Platform(settings)


@pytest.fixture
def platform(sqlite_db_url, root_key_hex, file_kek_plugin, remote_keystore_plugin):
    p = make_platform(sqlite_db_url, [file_kek_plugin, remote_keystore_plugin])
    p.store.kas.create("https://kas.example.com", "kas1")
    yield p
    p.close()


def file_kek_config(*ids: str, default: str | None = None) -> dict:
    keks = {i: secrets.token_hex(32) for i in ids}
    return {"keks": keks, "default_key_id": default or ids[0]}


@pytest.fixture
def file_kek_config_id(platform) -> str:
    return platform.store.providers.create("fk", "file-kek", json.dumps(file_kek_config("a", "b"))).id


@pytest.fixture
def remote_config_id(platform) -> str:
    keys = {f"k-{alg}": alg for alg in ("rsa:2048", "rsa:4096", "ec:secp256r1", "ec:secp384r1", "ec:secp521r1")}
    return platform.store.providers.create("rk", "remote-keystore", json.dumps({"keys": keys})).id


@pytest.fixture
def env_without_root_key():
    env = dict(os.environ)
    env.pop("PLATFORM_ROOT_KEY", None)
    return env
