"""The bench's world: a platform on a fresh SQLite file with real plugins.

    env = BenchEnv.create(workdir)       # root key, database, plugins loaded
    key, pem = env.key("rsa:2048", "local")
    env.close()

Plugins: file-kek and pkcs11 from build/plugins (make plugins), and the
bench plugin (bench/plugins/bench_plugin.c) compiled here with gcc. PKCS#11
runs on a SoftHSM2 token made from scratch under workdir (tests/softhsm.py).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
FILE_KEK = BUILD / "plugins" / "file-kek-manager.so"
PKCS11 = BUILD / "plugins" / "pkcs11-manager.so"
BENCH_PLUGIN_SRC = ROOT / "bench" / "plugins" / "bench_plugin.c"
BENCH_PLUGIN = BUILD / "bench" / "bench-manager.so"


class BenchSetupError(RuntimeError):
    """Something the bench needs is missing; the message says how to get it."""


def build_bench_plugin() -> Path:
    src_mtime = max(BENCH_PLUGIN_SRC.stat().st_mtime, (ROOT / "include" / "keymanager.h").stat().st_mtime)
    if BENCH_PLUGIN.exists() and BENCH_PLUGIN.stat().st_mtime >= src_mtime:
        return BENCH_PLUGIN
    BENCH_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["gcc", "-O2", "-std=c11", "-fPIC", "-fvisibility=hidden", "-shared", f"-I{ROOT / 'include'}",
           str(BENCH_PLUGIN_SRC), "-o", str(BENCH_PLUGIN), "-lcrypto"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchSetupError(f"building the bench plugin failed: {proc.stderr.strip()[-500:]}")
    return BENCH_PLUGIN


def softhsm_token(workdir: Path):
    """A SoftHSM2 token with an RSA-2048 key 'kas-rsa', or None when SoftHSM2 is missing.
    Sets SOFTHSM2_CONF for this process (SoftHSM reads it at C_Initialize)."""
    from tests.softhsm import SoftHSMUnavailable, create_token

    try:
        token = create_token(workdir / "softhsm", label="kas-bench", rsa=["kas-rsa"])
    except SoftHSMUnavailable:
        return None
    os.environ.update(token.env)
    return token


@dataclass
class BenchEnv:
    workdir: Path
    platform: object
    root_key_hex: str
    token: object | None
    configs: dict[str, str] = field(default_factory=dict)   # provider config name -> id
    file_kek_config: dict = field(default_factory=dict)

    @classmethod
    def create(cls, workdir: Path, with_pkcs11: bool = True) -> "BenchEnv":
        from host.app import Platform, Settings

        for path in (FILE_KEK, PKCS11):
            if not path.exists():
                raise BenchSetupError(f"{path.relative_to(ROOT)} is missing: run `make plugins`")
        workdir.mkdir(parents=True, exist_ok=True)
        root_key_hex = secrets.token_hex(32)
        os.environ["PLATFORM_ROOT_KEY"] = root_key_hex
        token = softhsm_token(workdir) if with_pkcs11 else None
        plugins = [FILE_KEK, build_bench_plugin()] + ([PKCS11] if token is not None else [])
        db = f"sqlite:///{workdir / 'bench.db'}"
        platform = Platform(Settings(db_url=db, plugin_paths=tuple(str(p) for p in plugins),
                                     state_dir=str(workdir)))
        platform.store.kas.create("https://kas.bench.example", "kas-bench")
        env = cls(workdir=workdir, platform=platform, root_key_hex=root_key_hex, token=token)
        env.file_kek_config = {"keks": {"a": secrets.token_hex(32)}, "default_key_id": "a"}
        env._config("fk", "file-kek", env.file_kek_config)
        env._config("echo", "bench-echo", {})
        env._config("rsa", "bench-rsa", {})
        if token is not None:
            env._config("hsm", "pkcs11", token.config("kas-rsa"))
        return env

    def _config(self, name: str, manager: str, config: dict) -> None:
        self.configs[name] = self.platform.store.providers.create(name, manager, json.dumps(config)).id

    @property
    def keys(self):
        return self.platform.keys

    def key(self, algorithm: str, mode: str, config: str | None = None, key_id: str | None = None):
        """Create a key; returns (KasKey, private key PEM or None for remote mode)."""
        from host import crypto

        kid = key_id or f"{mode}-{config or 'root'}-{algorithm}"
        if mode == "remote":
            return self.keys.create_key(None, kid, algorithm, mode, provider_config_id=self.configs[config]), None
        pem = crypto.private_pem(crypto.generate_private_key(algorithm))
        options = {"provider_config_id": self.configs[config]} if config else {}
        return self.keys.create_key(None, kid, algorithm, mode, private_key_pem=pem.decode(), **options), pem

    def manager(self, config: str):
        """The live manager (host.loader.PluginManager) of a provider config."""
        return self.platform.registry.manager_for(self.platform.store.providers.get(id=self.configs[config]))

    def close(self) -> None:
        self.platform.close()
