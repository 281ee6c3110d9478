"""Fixtures for TDF interop: `platform serve` subprocesses and the otdf-python SDK as the client.

A `KasPlatform` is one real server process (tests/server's start_server) on
its own SQLite database with one KAS registered, plus an operator handle that
makes a key active through the key service in a child process
(tests/tdf/admin.py). The SDK, unmodified, asks PublicKey for the active key
of an algorithm, so "the key held by manager M" means: make M's key the
active one, then encrypt.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.server.conftest import ROOT, Server, start_server
from tests.plugins.conftest import moto_server  # noqa: F401  (moto's KMS for the aws-kms group)
from tests.make import make_or_fail

PLUGINS = ROOT / "build" / "plugins"


@dataclass
class KasPlatform:
    server: Server
    db: str
    root_key_file: Path
    plugins: tuple[str, ...]
    env: dict = field(default_factory=dict)
    providers: dict = field(default_factory=dict)    # name -> provider config id

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def kas_url(self) -> str:
        return f"{self.server.url}/kas"

    def admin(self, ops: list[dict]) -> list:
        request = {"db": self.db, "root_key_file": str(self.root_key_file), "plugins": list(self.plugins),
                   "env": self.env, "ops": ops}
        proc = subprocess.run([sys.executable, "-m", "tests.tdf.admin"], cwd=ROOT, input=json.dumps(request),
                              capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            raise AssertionError(f"admin step failed: {proc.stdout.strip()} {proc.stderr.strip()[-3000:]}")
        return json.loads(proc.stdout)["results"]

    def provider(self, name: str, manager: str, config: dict) -> str:
        (pc_id,) = self.admin([{"op": "provider", "name": name, "manager": manager, "config": config}])
        self.providers[name] = pc_id
        return pc_id

    def activate(self, algorithm: str, mode: str, provider: str | None = None, wrapping_key_id: str = "",
                 key_id: str | None = None) -> dict:
        """Make a new key (held by `provider`'s manager, or local) the active key of `algorithm`."""
        key_id = key_id or f"{mode}-{algorithm.replace(':', '-')}-{uuid.uuid4().hex[:8]}"
        (result,) = self.admin([{"op": "activate", "algorithm": algorithm, "mode": mode, "key_id": key_id,
                                 "provider": self.providers.get(provider, provider) if provider else None,
                                 "wrapping_key_id": wrapping_key_id}])
        self.wait_until_served(algorithm, key_id)
        return result

    def wait_until_served(self, algorithm: str, key_id: str) -> None:
        """Until PublicKey answers `key_id` for `algorithm`: the server caches the active key for
        PUBLIC_KEY_TTL seconds, and the activation came from another process. Bounded."""
        import time

        import httpx

        from host.service.keys import PUBLIC_KEY_TTL

        deadline = time.monotonic() + 10 * PUBLIC_KEY_TTL
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.url}/kas/v2/kas_public_key", params={"algorithm": algorithm},
                          headers=self.server.client(), timeout=30)
            if r.status_code != 200 or r.json().get("kid") == key_id:
                return  # served now (or an algorithm PublicKey does not serve: nothing to wait for)
            time.sleep(0.1)
        raise AssertionError(f"PublicKey still answers another key than {key_id!r} for {algorithm}")

    def stop(self) -> None:
        self.server.stop()


def start_kas_platform(tmp: Path, plugins=(), env: dict | None = None) -> KasPlatform:
    tmp.mkdir(parents=True, exist_ok=True)
    import secrets

    root_hex = secrets.token_hex(32)
    root_key_file = tmp / "root.key"
    root_key_file.write_text(root_hex + "\n")
    root_key_file.chmod(0o600)
    db = f"sqlite:///{tmp / 'state' / 'platform.db'}"
    plugins = tuple(str(p) for p in plugins)
    server = start_server(tmp, db, root_key_hex=root_hex, env_extra=env, plugins=plugins)
    kp = KasPlatform(server, db, root_key_file, plugins, dict(env or {}))
    kp.admin([{"op": "kas", "uri": kp.kas_url, "name": "kas-under-test"}])
    return kp


# ---- the SDK, unmodified -------------------------------------------------------
def sdk_for(kp: KasPlatform, token: str | None = None):
    from otdf_python.sdk_builder import SDKBuilder

    return (SDKBuilder().set_platform_endpoint(kp.url).use_insecure_plaintext_connection(True)
            .bearer_token(token or kp.server.client_token).build())


def encrypt_tdf(sdk, data: bytes, kas_info=None) -> bytes:
    config = sdk.new_tdf_config()
    if kas_info is not None:
        config.kas_info_list = [kas_info]
    out = io.BytesIO()
    sdk.create_tdf(io.BytesIO(data), config, out)
    return out.getvalue()


def decrypt_tdf(sdk, tdf: bytes) -> bytes:
    return sdk.load_tdf(tdf).payload


def encrypt_nano(sdk, kp: KasPlatform, data: bytes) -> bytes:
    from otdf_python.config import KASInfo, NanoTDFConfig

    out = io.BytesIO()
    sdk.create_nano_tdf(io.BytesIO(data), out, NanoTDFConfig(kas_info_list=[KASInfo(url=kp.kas_url)]))
    return out.getvalue()


def decrypt_nano(sdk, kp: KasPlatform, nano: bytes) -> bytes:
    from otdf_python.config import KASInfo, NanoTDFConfig

    out = io.BytesIO()
    sdk.read_nano_tdf(io.BytesIO(nano), out, NanoTDFConfig(kas_info_list=[KASInfo(url=kp.kas_url)]))
    return out.getvalue()


def roundtrip(kp: KasPlatform, algorithm: str, data: bytes) -> bytes:
    """Encrypt with the KAS's active key of `algorithm` and decrypt through Rewrap."""
    sdk = sdk_for(kp)
    try:
        if algorithm.startswith("rsa:"):
            return decrypt_tdf(sdk, encrypt_tdf(sdk, data))
        return decrypt_nano(sdk, kp, encrypt_nano(sdk, kp, data))
    finally:
        sdk.close()


def plugin(name: str) -> Path:
    """build/plugins/<name>-manager.so, built through make if missing or stale."""
    target = f"build/plugins/{name}-manager.so"
    make_or_fail(target)
    return ROOT / target


@pytest.fixture(scope="module")
def basic_kas(tmp_path_factory):
    """A platform with only the built-in basic manager; an RSA and an EC key active."""
    kp = start_kas_platform(tmp_path_factory.mktemp("tdf-basic"))
    kp.activate("rsa:2048", "local", key_id="r1")
    kp.activate("ec:secp256r1", "local", key_id="e1")
    yield kp
    kp.stop()
