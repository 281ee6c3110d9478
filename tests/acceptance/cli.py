"""Drive the real `platform` console script (.venv/bin/platform) in subprocesses.

Each `PlatformCli` is one operator's shell: its own SQLite file, its own
root key and the plugin(s) it passes with --key-manager-plugin; everything
else in the environment is scrubbed of PLATFORM_*, AWS_*, AZURE_* and
VAULT_* so that nothing from the developer's machine leaks into a flow.
Every command's stdout and stderr are kept (`transcript`) so a test can scan
a whole flow for secrets.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization

REPO = Path(__file__).resolve().parents[2]
PLATFORM = REPO / ".venv" / "bin" / "platform"
PLUGIN_DIR = REPO / "build" / "plugins"

_SCRUBBED_PREFIXES = ("PLATFORM_", "AWS_", "AZURE_", "VAULT_", "SOFTHSM2_")


def require_built(*targets: str) -> None:
    """Fail clearly when a build output is missing. Tests never run make themselves (they would
    write into build/ while others use it): `make test` builds everything before pytest starts."""
    import pytest

    missing = [t for t in targets if not (REPO / t).is_file()]
    if missing:
        pytest.fail(f"missing build output(s) {', '.join(missing)}: run `make plugins` first (`make test` does)")


@dataclass
class PlatformCli:
    workdir: Path
    plugins: tuple[Path, ...]
    extra_env: dict[str, str] = field(default_factory=dict)
    root_key: str = field(default_factory=lambda: secrets.token_hex(32), repr=False)
    transcript: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.db_url = f"sqlite:///{self.workdir / 'platform.db'}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
        env.update(PLATFORM_ROOT_KEY=self.root_key, PLATFORM_DB_URL=self.db_url, **self.extra_env)
        return env

    def run(self, *args, ok: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        argv = [str(PLATFORM)]
        for plugin in self.plugins:
            argv += ["--key-manager-plugin", str(plugin)]
        argv += [str(a) for a in args]
        proc = subprocess.run(argv, env=self.env, cwd=self.workdir, capture_output=True, text=True,
                              input=stdin, timeout=240)
        self.transcript += [proc.stdout, proc.stderr]
        if ok:
            assert proc.returncode == 0, f"platform {' '.join(map(str, args))} -> {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    # ---- steps every flow takes ---------------------------------------------------

    def register_kas(self, name: str = "kas1", uri: str = "https://kas.example.com") -> None:
        self.run("policy", "kas-registry", "create", "--uri", uri, "--name", name)

    def create_provider(self, name: str, manager: str, config: dict, *, validate: bool = True) -> str:
        """Stores a provider config (from a 0600 file, as an operator would) and returns its id.

        Reads the id off the table form: --json would print config_json
        (base64 of the secrets) and the flows scan every output for them.
        """
        path = self.workdir / f"{name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f)
        args = ["policy", "keymanagement", "provider", "create", "--name", name, "--manager", manager,
                "--config", f"@{path}"]
        proc = self.run(*args, *(["--validate"] if validate else []))
        if validate:
            assert f"ok: config validated with manager '{manager}'" in proc.stderr, proc.stderr
        match = re.search(r"^Id:\s+(\S+)$", proc.stdout, re.M)
        assert match, proc.stdout
        return match.group(1)

    def validate(self, provider_id: str) -> subprocess.CompletedProcess:
        return self.run("policy", "keymanagement", "provider", "validate", "--id", provider_id, ok=False)

    def create_key(self, key_id: str, algorithm: str, mode: str, provider_id: str, *extra) -> dict:
        """otdfctl's flags, plus ours where a flow leaves a choice to the provider config: its
        default key (no --wrapping-key-id) and, for remote keys, the public key from the manager."""
        out = self.run("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", key_id,
                       "--algorithm", algorithm, "--mode", mode, "--provider-config-id", provider_id,
                       *self.defaults(mode, extra), *extra, "--json").stdout
        doc = json.loads(out)["key"]
        from host.server.convert import ALGORITHMS, KEY_MODES

        # --json is otdfctl's (Go's encoding/json of the proto struct): enums are numbers
        assert (doc["key_id"], KEY_MODES[doc["key_mode"]], ALGORITHMS[doc["key_algorithm"]]) == \
            (key_id, mode, algorithm)
        return doc

    @staticmethod
    def defaults(mode: str, extra=()) -> list[str]:
        flags = [] if "--wrapping-key-id" in extra else ["--default-wrapping-key"]
        if mode == "remote" and not {"--public-key-pem", "-e"} & set(extra):
            flags.append("--fetch-public-key")
        return flags

    def get_key(self, key_id: str) -> dict:
        return json.loads(self.run("policy", "kas-registry", "key", "get", "--key", key_id, "--kas", "kas1",
                                   "--json").stdout)["key"]

    def public_key_pem(self, key_id: str) -> str:
        return self.run("kas", "public-key", "--kid", key_id).stdout

    def round_trip(self, key_id: str, name: str | None = None) -> bytes:
        """`kas wrap` a random 32-byte DEK to the key, `kas unwrap` it; returns the DEK."""
        name = name or key_id
        dek = secrets.token_bytes(32)
        dek_file, wrapped_file, out_file = (self.workdir / f"{name}.{ext}" for ext in ("dek", "wrapped.json", "out"))
        dek_file.write_bytes(dek)
        self.run("kas", "wrap", "--kid", key_id, "--in", dek_file, "--out", wrapped_file)
        wrapped = json.loads(wrapped_file.read_text())
        assert wrapped["kid"] == key_id and base64.b64decode(wrapped["wrapped_key"]) != dek
        self.run("kas", "unwrap", "--in", wrapped_file, "--out", out_file)
        assert out_file.read_bytes() == dek, "the DEK did not come back byte-identical"
        return dek

    def output(self) -> str:
        return "\n".join(self.transcript)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a failed command prints (exit 1, no traceback)."""
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def stored_public_key(key_doc: dict):
    """The public key as the store holds it (public_key_ctx.pem is base64 of the PEM)."""
    return serialization.load_pem_public_key(base64.b64decode(key_doc["public_key_ctx"]["pem"]))


def wrapped_private_key(key_doc: dict) -> bytes:
    return base64.b64decode(key_doc["private_key_ctx"]["wrapped_key"])


def same_public_key(a, b) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_bytes(*fmt) == b.public_bytes(*fmt)


def private_pem_matches(pem: bytes, key_doc: dict) -> None:
    """`pem` is a PEM private key whose public half is the key's public key."""
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----"), pem[:40]
    private = serialization.load_pem_private_key(pem, password=None)
    assert same_public_key(private.public_key(), stored_public_key(key_doc))
