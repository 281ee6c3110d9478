"""--config platform.yaml: flag > env > file > default, schema errors with key paths, no secrets shown."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PLATFORM = Path(sys.executable).parent / "platform"
EXAMPLE = REPO / "docs" / "platform.example.yaml"


def _platform(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    return subprocess.run([str(PLATFORM), *args], cwd=tmp_path, env={**base, **env}, capture_output=True,
                          text=True, timeout=60)


def _show(tmp_path: Path, *args: str, **env: str) -> dict[str, dict]:
    proc = _platform(tmp_path, *args, "config", "show", "--json", **env)
    assert proc.returncode == 0, proc.stderr
    return {r["setting"]: r for r in json.loads(proc.stdout)["settings"]}


def test_precedence_flag_over_env_over_file_over_default(tmp_path):
    (tmp_path / "p.yaml").write_text("database: {url: 'sqlite:////tmp/file.db'}\nserver: {port: 9191}\n"
                                     "kas: {identity: kas-from-file}\n")
    from_file = _show(tmp_path, "--config", "p.yaml")
    assert from_file["database.url"] == {"setting": "database.url", "value": "sqlite:////tmp/file.db",
                                         "source": "file"}
    assert from_file["server.port"]["value"] == 9191 and from_file["kas.identity"]["source"] == "file"
    assert from_file["auth.oidc.issuer"]["source"] == "default"

    from_env = _show(tmp_path, PLATFORM_CONFIG="p.yaml", PLATFORM_DB_URL="sqlite:////tmp/env.db",
                     PLATFORM_KAS="kas-from-env")
    assert (from_env["database.url"]["value"], from_env["database.url"]["source"]) == ("sqlite:////tmp/env.db", "env")
    assert (from_env["kas.identity"]["value"], from_env["kas.identity"]["source"]) == ("kas-from-env", "env")

    from_flag = _show(tmp_path, "--config", "p.yaml", "--db", "sqlite:////tmp/flag.db",
                      PLATFORM_DB_URL="sqlite:////tmp/env.db")
    assert (from_flag["database.url"]["value"], from_flag["database.url"]["source"]) == ("sqlite:////tmp/flag.db",
                                                                                         "flag")
    proc = _platform(tmp_path, "--config", "p.yaml", "serve", "--help")
    assert "default: 9191" in proc.stdout


def test_the_file_configures_the_platform(tmp_path):
    """Not only shown: the database and root key named by the file are the ones used."""
    key = tmp_path / "root.key"
    key.write_text(secrets.token_hex(32))
    key.chmod(0o600)
    (tmp_path / "p.yaml").write_text(f"database: {{url: 'sqlite:///{tmp_path}/from-file.db'}}\n"
                                     f"root_key: {{file: '{key}'}}\n")
    proc = _platform(tmp_path, "--config", "p.yaml", "db", "upgrade")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "from-file.db").is_file()


@pytest.mark.parametrize("body, expected", [
    ("server: {port: 'x'}\n", "p.yaml: server.port: 'x' is not of type 'integer'"),
    ("server: {port: 70000}\n", "p.yaml: server.port: 70000 is greater than the maximum of 65535"),
    ("plugins: [{isolated: true}]\n", "p.yaml: plugins.0: 'path' is a required property"),
    ("serve: {port: 1}\n", "p.yaml: (top level): Additional properties are not allowed ('serve' was unexpected)"),
    ("database: [\n", "config file p.yaml: line 2: not valid YAML"),
])
def test_mistakes_name_the_key_path(tmp_path, body, expected):
    (tmp_path / "p.yaml").write_text(body)
    proc = _platform(tmp_path, "--config", "p.yaml", "config", "show")
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr


def test_root_key_in_the_file_needs_consent_and_is_never_shown(tmp_path):
    key = secrets.token_hex(32)
    (tmp_path / "p.yaml").write_text(f"root_key: {{value: '{key}'}}\n")
    proc = _platform(tmp_path, "--config", "p.yaml", "config", "show")
    assert proc.returncode == 2 and "root_key.allow_in_file: true" in proc.stderr and key not in proc.stderr

    (tmp_path / "p.yaml").write_text(f"root_key: {{value: '{key[:-1]}'}}\n")  # malformed: no echo of it either
    proc = _platform(tmp_path, "--config", "p.yaml", "config", "show")
    assert proc.returncode == 2 and "root_key.value: 64 hex characters" in proc.stderr and key[:-1] not in proc.stderr

    (tmp_path / "p.yaml").write_text(f"root_key: {{value: '{key}', allow_in_file: true}}\n"
                                     "database: {url: 'postgresql+psycopg://u:hunter2-pw@db/x'}\n")
    proc = _platform(tmp_path, "--config", "p.yaml", "config", "show")
    assert proc.returncode == 0, proc.stderr
    assert key not in proc.stdout and "hunter2-pw" not in proc.stdout
    assert "(set, from the config file)" in proc.stdout


def test_root_key_from_a_named_environment_variable(tmp_path):
    (tmp_path / "p.yaml").write_text("root_key: {env: MY_ROOT_KEY}\n")
    key = secrets.token_hex(32)
    proc = _platform(tmp_path, "--config", "p.yaml", "config", "show", MY_ROOT_KEY=key)
    assert proc.returncode == 0 and "environment variable MY_ROOT_KEY" in proc.stdout and key not in proc.stdout


def test_plugins_from_the_file_and_the_shipped_example_is_valid(tmp_path):
    (tmp_path / "p.yaml").write_text("plugins:\n  - {path: /x/a-manager.so, isolated: true, sha256: '" + "AB" * 32
                                     + "'}\n  - {path: /x/b-manager.so}\n")
    rows = _show(tmp_path, "--config", "p.yaml")
    assert rows["plugins"]["value"] == [f"isolated:/x/a-manager.so#sha256={'ab' * 32}", "/x/b-manager.so"]
    assert rows["plugins"]["source"] == "file"
    assert _show(tmp_path, "--config", str(EXAMPLE))["server.workers"]["value"] == 2
