"""`platform doctor` through the real console script: a sound setup passes (exit 0), and each
newcomer mistake it exists for -- a second KAS, a missing plugin, a provider config stored in
plaintext, a taken port -- fails it (exit 1) with the fix on the same line, no secret printed."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cbuild import build_shared
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = Path(sys.executable).parent / "platform"
KEK = secrets.token_hex(32)


class Setup:
    """A working platform in a temporary directory: root key file, database, one KAS, one pinned plugin."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.plugin = build_shared(ROOT / "examples" / "c" / "example_manager.c", tmp / "example-c-manager.so",
                                   libs=("crypto",))
        self.root_key = tmp / "root.key"
        self.root_key.write_text(secrets.token_hex(32))
        self.root_key.chmod(0o600)
        (tmp / "admin.token").write_text(secrets.token_hex(16))
        self.port = free_port()
        digest = subprocess.run([str(PLATFORM), "plugins", "inspect", str(self.plugin), "--json"],
                                capture_output=True, text=True, check=True, timeout=60).stdout
        self.pinned = f"{self.plugin}#sha256={json.loads(digest)['sha256']}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
        self.env.update(PLATFORM_ADMIN_TOKEN_FILE=str(tmp / "admin.token"), HOME=str(tmp))
        self.plugins = [self.pinned]
        self.run("db", "upgrade", check=True)
        self.run("policy", "kas-registry", "create", "--uri", "http://127.0.0.1/kas", "--name", "kas1", check=True)
        config = tmp / "kek.json"
        config.write_text(json.dumps({"keks": {"kek-1": KEK}, "default_key_id": "kek-1"}))
        self.run("policy", "keymanagement", "provider", "create", "--name", "kek", "--manager", "example-c",
                 "--config", f"@{config}", check=True)

    def run(self, *args: str, root_key: bool = True, check: bool = False) -> subprocess.CompletedProcess:
        cmd = [str(PLATFORM), "--db", f"sqlite:///{self.tmp / 'p.db'}"]
        if root_key:
            cmd += ["--root-key-file", str(self.root_key)]
        for p in self.plugins:
            cmd += ["--key-manager-plugin", p]
        proc = subprocess.run([*cmd, *args], capture_output=True, text=True, env=self.env, cwd=self.tmp, timeout=120)
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    def doctor(self, *extra: str, root_key: bool = True) -> tuple[int, dict, str]:
        proc = self.run("doctor", "--port", str(self.port), *extra, "--json", root_key=root_key)
        assert KEK not in proc.stdout + proc.stderr and self.root_key.read_text() not in proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        text = self.run("doctor", "--port", str(self.port), "--skip-probes", *extra, root_key=root_key)
        assert text.returncode == proc.returncode, (text.stdout, proc.stdout)
        return proc.returncode, json.loads(proc.stdout), text.stdout


def failures(doc: dict) -> dict[str, dict]:
    return {c["name"]: c for c in doc["checks"] if c["status"] == "fail"}


@pytest.fixture
def setup(tmp_path):
    return Setup(tmp_path)


def test_a_sound_setup_passes(setup):
    code, doc, text = setup.doctor()
    assert code == 0 and doc["ok"], doc
    assert failures(doc) == {}
    names = {c["name"]: c["status"] for c in doc["checks"]}
    assert names["root key"] == names["database"] == names["KAS identity"] == names["port"] == "ok"
    assert names[f"plugin {setup.plugin}"] == "ok"                   # loads and is pinned
    assert names["provider config 'kek' (example-c)"] == "ok"        # encrypted and probed
    assert text.splitlines()[-1] == "no problems found"


def test_a_second_kas_fails_with_the_fix(setup):
    setup.run("policy", "kas-registry", "create", "--uri", "http://127.0.0.2/kas", "--name", "kas2", check=True)
    code, doc, text = setup.doctor()
    assert code == 1 and not doc["ok"]
    check = failures(doc)["KAS identity"]
    assert "2 KAS are registered" in check["detail"] and "PLATFORM_KAS" in check["fix"]
    assert "--kas" not in check["detail"] + check["fix"]
    setup.env["PLATFORM_KAS"] = "kas2"
    code, doc, _ = setup.doctor()
    assert code == 0, failures(doc)


def test_a_missing_plugin_fails_and_its_configs_are_flagged(setup):
    setup.plugins = [str(setup.tmp / "nowhere-manager.so")]
    code, doc, text = setup.doctor()
    assert code == 1
    bad = failures(doc)
    assert bad[f"plugin {setup.tmp / 'nowhere-manager.so'}"]["detail"] == "no such file"
    assert "make plugins" in bad[f"plugin {setup.tmp / 'nowhere-manager.so'}"]["fix"]
    unpinned = [c for c in doc["checks"] if c["name"] == "provider config 'kek' (example-c)"]
    assert unpinned and "no loaded plugin registers manager 'example-c'" in unpinned[0]["detail"]
    assert any(line.startswith("FAIL  plugin ") and "-> fix:" in line for line in text.splitlines())


def test_an_unpinned_plugin_is_a_warning_naming_its_digest(setup):
    setup.plugins = [str(setup.plugin)]
    code, doc, _ = setup.doctor()
    assert code == 0
    (check,) = [c for c in doc["checks"] if c["name"] == f"plugin {setup.plugin}"]
    assert check["status"] == "warn" and check["fix"].endswith(setup.pinned)


def test_a_plaintext_provider_config_fails(setup):
    config = setup.tmp / "kek2.json"
    config.write_text(json.dumps({"keks": {"kek-2": KEK}, "default_key_id": "kek-2"}))
    create = ["policy", "keymanagement", "provider", "create", "--name", "plain", "--manager", "example-c",
              "--config", f"@{config}"]
    refused = setup.run(*create, root_key=False)
    assert refused.returncode == 1 and "keks" in refused.stderr and KEK not in refused.stderr
    made = setup.run("--allow-plaintext-secrets", *create, root_key=False)  # the operator insists
    assert made.returncode == 0, made.stderr
    code, doc, _ = setup.doctor()
    assert code == 1
    check = failures(doc)["provider config 'plain' (example-c)"]
    assert "unencrypted" in check["detail"] and "provider update" in check["fix"]
    assert "provider config 'kek' (example-c)" not in failures(doc)


def test_a_taken_port_fails(setup):
    with socket.socket() as s:
        s.bind(("127.0.0.1", setup.port))
        s.listen()
        code, doc, _ = setup.doctor()
    assert code == 1
    check = failures(doc)["port"]
    assert "already in use" in check["detail"] and "--port" in check["fix"]


def test_a_root_key_others_can_read_fails(setup):
    setup.root_key.chmod(0o644)
    code, doc, _ = setup.doctor()
    assert code == 1 and failures(doc)["root key"]["fix"] == f"chmod 600 {setup.root_key}"
