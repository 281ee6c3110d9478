"""`platform policy keymanagement provider|provider-config`, `policy kas-registry`, `db`.

Most cases use click's CliRunner in-process; the end-to-end cycle and the
error-format cases run the real console script (.venv/bin/platform).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from host.cli import main
from host.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PlatformError
from host.rootkey import RootKey
from host.store import schema
from host.store import Store
from tests.store.conftest import ROOT_KEY_HEX, SEED_AWS, SEED_AZURE, SEED_CONFIGS, SEED_VAULT

PLATFORM = Path(sys.executable).parent / "platform"
PROVIDER = ["policy", "keymanagement", "provider"]
BASIC = "opentdf.io/basic"


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch):
    """Invoke `platform --db <db_url> ...` in-process; returns click's Result."""
    monkeypatch.delenv("PLATFORM_ROOT_KEY", raising=False)
    # the seed configs hold secrets; without a root key they are refused unless allowed (host.plaintext)
    monkeypatch.setenv("PLATFORM_ALLOW_PLAINTEXT_SECRETS", "true")
    monkeypatch.delenv("PLATFORM_KEY_MANAGER_PLUGINS", raising=False)
    monkeypatch.setenv("PLATFORM_STATE_DIR", str(tmp_path / "state"))
    runner = CliRunner()

    def invoke(*args, input=None, env=None):
        return runner.invoke(main, ["--db", db_url, *args], input=input, env=env)

    invoke.db_url = db_url
    return invoke


def ok_json(result):
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def fails_with(result, cls, pattern):
    assert result.exit_code == 1
    assert isinstance(result.exception, cls), (result.output, result.exception)
    assert pattern in result.exception.message, result.exception.message


def test_create_json_shape(cli):
    doc = ok_json(cli(*PROVIDER, "create", "-n", "aws-prod", "-m", "aws-kms", "-c", SEED_AWS.decode(),
                      "-l", "env=prod", "--label", "team=kas", "--json"))
    assert set(doc) == {"id", "name", "manager", "config_json", "metadata"}  # otdfctl's fields (no revision)
    assert (doc["name"], doc["manager"]) == ("aws-prod", "aws-kms")
    # secret values are redacted in CLI output unless --show-config asks for them (host.plaintext)
    assert json.loads(base64.b64decode(doc["config_json"])) == {**json.loads(SEED_AWS), "secret_access_key": "<redacted>"}
    listed = ok_json(cli(*PROVIDER, "list", "--json"))
    assert [json.loads(base64.b64decode(c["config_json"]))["secret_access_key"] for c in listed["provider_configs"]] \
        == ["<redacted>"]
    shown = ok_json(cli(*PROVIDER, "get", "--id", doc["id"], "--json", "--show-config"))
    assert base64.b64decode(shown["config_json"]) == SEED_AWS
    assert doc["metadata"]["labels"] == {"env": "prod", "team": "kas"}
    # otdfctl's --json is Go's encoding/json of the proto struct: a Timestamp is {seconds, nanos}
    assert set(doc["metadata"]["created_at"]) <= {"seconds", "nanos"} and doc["metadata"]["created_at"]["seconds"] > 0
    got = ok_json(cli(*PROVIDER, "get", "-i", doc["id"], "--json"))
    assert got == doc
    assert ok_json(cli(*PROVIDER, "get", "--name", "aws-prod", "--manager", "aws-kms", "--json")) == doc


def test_seed_spelling(cli):
    """otdfctl policy keymanagement provider-config create --name N --config-json '{...}' (manager = name)."""
    result = cli("policy", "keymanagement", "provider-config", "create", "--name", "aws-kms-production",
                 "--config-json", SEED_AWS.decode(), "--json")
    doc = ok_json(result)
    assert doc["manager"] == "aws-kms-production"
    assert "warning: no loaded plugin or built-in registers manager 'aws-kms-production'" in result.stderr
    listed = ok_json(cli("policy", "keymanagement", "provider-config", "list", "--json"))
    assert [c["id"] for c in listed["provider_configs"]] == [doc["id"]]


def test_registered_manager_does_not_warn(cli):
    result = cli(*PROVIDER, "create", "-n", "local", "-m", BASIC, "-c", "{}")
    assert result.exit_code == 0 and "registers manager" not in result.stderr


def test_table_output_hides_config_values(cli):
    cli(*PROVIDER, "create", "-n", "v", "-m", "vault", "-c", SEED_VAULT.decode())
    result = cli(*PROVIDER, "get", "-n", "v", "-m", "vault")
    assert result.exit_code == 0
    assert "hvs.CAESIJlWh" not in result.stdout and "vault_token" in result.stdout
    shown = cli(*PROVIDER, "get", "-n", "v", "-m", "vault", "--show-config")
    assert "hvs.CAESIJlWh" in shown.stdout


def test_list_pagination(cli):
    for i in range(3):
        cli(*PROVIDER, "create", "-n", f"p{i}", "-m", "m", "-c", "{}")
    doc = ok_json(cli(*PROVIDER, "list", "--limit", "1", "--offset", "1", "--json"))
    assert [c["name"] for c in doc["provider_configs"]] == ["p1"]
    assert doc["pagination"] == {"current_offset": 1, "next_offset": 2, "total": 3}
    last = ok_json(cli(*PROVIDER, "list", "--limit", "2", "--offset", "2", "--json"))
    assert last["pagination"] == {"current_offset": 2, "total": 3}  # next_offset 0: omitted (omitempty)
    table = cli(*PROVIDER, "list", "--offset", "1")
    assert "Total: 3" in table.stdout and "Current Offset: 1" in table.stdout
    assert "p2" not in table.stdout and "p0" in table.stdout  # newest first


def _revision(db_url, config_id) -> int:
    """The revision is the store's (the API, and so the CLI, do not carry it)."""
    store = Store.open(db_url)
    try:
        return store.providers.get(id=config_id).revision
    finally:
        store.close()


def test_update(cli):
    doc = ok_json(cli(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", '{"a": 1}', "-l", "a=1", "--json"))
    renamed = ok_json(cli(*PROVIDER, "update", "--id", doc["id"], "--name", "p2", "--json"))
    assert renamed["name"] == "p2" and _revision(cli.db_url, doc["id"]) == 1
    bumped = ok_json(cli(*PROVIDER, "update", "-i", doc["id"], "--config-json", '{"a": 2}', "--json"))
    assert _revision(cli.db_url, doc["id"]) == 2 and base64.b64decode(bumped["config_json"]) == b'{"a": 2}'
    extended = ok_json(cli(*PROVIDER, "update", "-i", doc["id"], "-l", "b=2", "--extend-labels", "--json"))
    assert extended["metadata"]["labels"] == {"a": "1", "b": "2"}
    replaced = ok_json(cli(*PROVIDER, "update", "-i", doc["id"], "-l", "c=3", "--json"))
    assert replaced["metadata"]["labels"] == {"c": "3"}
    fails_with(cli(*PROVIDER, "update", "-i", doc["id"]), InvalidArgument, "At least one field")


def test_delete_asks_for_confirmation(cli):
    doc = ok_json(cli(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", "{}", "--json"))
    refused = cli(*PROVIDER, "delete", "--id", doc["id"], input="n\n")
    assert refused.exit_code == 1 and "Delete provider config 'p'" in refused.stderr
    assert cli(*PROVIDER, "get", "-i", doc["id"]).exit_code == 0
    accepted = cli(*PROVIDER, "delete", "--id", doc["id"], input="y\n")
    assert accepted.exit_code == 0 and f"deleted provider config {doc['id']}" in accepted.stdout
    doc = ok_json(cli(*PROVIDER, "create", "-n", "q", "-m", "m", "-c", "{}", "--json"))
    forced = cli(*PROVIDER, "delete", "--id", doc["id"], "--force", "--json")
    assert ok_json(forced) is None  # otdfctl's delete: ExitWithJSON(nil)


def test_delete_refused_while_referenced(cli):
    doc = ok_json(cli(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", "{}", "--json"))
    store = Store.open(cli.db_url)
    try:
        kas = store.kas.create("https://kas.example.com", "kas")
        store.keys.create(kas.id, "k1", "rsa:2048", "remote", private_key_ctx={"key_id": "x"},
                          provider_config_id=doc["id"])
    finally:
        store.close()
    fails_with(cli(*PROVIDER, "delete", "--id", doc["id"], "--force"), InvalidArgument, "used by keys")


@pytest.mark.parametrize("args, cls, pattern", [
    (["get", "--id", "not-a-uuid"], InvalidArgument, "id: must be a valid UUID [string.uuid]"),
    (["create", "-n", "p", "-m", "m", "-c", "nope"], InvalidArgument, "not valid JSON"),
    (["create", "-n", "p", "-m", "m", "-c", "[]"], InvalidArgument, "got a JSON array"),
    (["create", "-n", "p", "-m", "m", "-c", "{}", "-l", "novalue"], InvalidArgument, "KEY=VALUE"),
    (["create", "-n", "", "-m", "m", "-c", "{}"], InvalidArgument, "name: value is required [required]"),
    (["create", "-n", "p", "-m", "m", "-c", "@/nonexistent/cfg.json"], InvalidArgument, "cannot read config file"),
    (["update", "-i", "6b1f4c5e-0000-4000-8000-000000000000", "-n", "x"], PlatformError, "not found"),
    (["update", "-i", "6b1f4c5e-0000-4000-8000-000000000000", "--extend-labels"], InvalidArgument, "--extend-labels"),
])
def test_bad_input(cli, args, cls, pattern):
    fails_with(cli(*PROVIDER, *args), cls, pattern)


@pytest.mark.parametrize("args, pattern", [
    # otdfctl's (cobra's) words, refused before any call: --manager needs --name (--name alone works: the seed document)
    (["get", "--manager", "m"], "if any flags in the group [name manager] are set they must all be set; missing [name]"),
    (["create", "-n", "p", "-m", "m"], 'required flag(s) "config" not set'),
])
def test_usage_errors(cli, args, pattern):
    result = cli(*PROVIDER, *args)
    assert result.exit_code == 2 and pattern in result.output, result.output


def test_duplicate(cli):
    cli(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", "{}")
    fails_with(cli(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", "{}"), AlreadyExists, "already exists")


def test_config_from_file_and_stdin(cli, tmp_path):
    path = tmp_path / "cfg.json"
    path.write_bytes(SEED_AZURE)
    doc = ok_json(cli(*PROVIDER, "create", "-n", "az", "-m", "azure", "-c", f"@{path}", "--json", "--show-config"))
    assert base64.b64decode(doc["config_json"]) == SEED_AZURE
    doc = ok_json(cli(*PROVIDER, "create", "-n", "vt", "-m", "vault", "-c", "-", "--json", "--show-config",
                      input=SEED_VAULT))
    assert base64.b64decode(doc["config_json"]) == SEED_VAULT
    path.write_bytes(b'{"a": "\xff"}')
    fails_with(cli(*PROVIDER, "create", "-n", "bad", "-m", "m", "-c", f"@{path}"), InvalidArgument, "not valid UTF-8")
    path.write_bytes(b'{"p": "' + b"x" * (64 * 1024) + b'"}')
    fails_with(cli(*PROVIDER, "create", "-n", "big", "-m", "m", "-c", f"@{path}"), InvalidArgument, "too large")


def test_validate_with_basic_manager(cli):
    # The basic manager's probe needs a root key: without one it fails, and --validate refuses to store.
    result = cli(*PROVIDER, "create", "-n", "local", "-m", BASIC, "-c", "{}", "--validate")
    fails_with(result, InvalidArgument, "failed validation")
    assert ok_json(cli(*PROVIDER, "list", "--json"))["pagination"].get("total", 0) == 0  # 0: omitted
    env = {"PLATFORM_ROOT_KEY": ROOT_KEY_HEX}
    created = cli(*PROVIDER, "create", "-n", "local", "-m", BASIC, "-c", "{}", "--validate", "--json", env=env)
    assert "ok: config validated" in created.stderr and " ms" in created.stderr
    doc = ok_json(created)
    good = cli(*PROVIDER, "validate", "--id", doc["id"], env=env)
    assert good.exit_code == 0 and good.stdout.startswith("ok:") and " ms" in good.stdout
    as_json = ok_json(cli(*PROVIDER, "validate", "--name", "local", "--manager", BASIC, "--json", env=env))
    assert as_json["ok"] is True and as_json["latency_ms"] >= 0
    # Stored under the root key: a process without it cannot even read the config.
    fails_with(cli(*PROVIDER, "validate", "--id", doc["id"]), FailedPrecondition, "encrypted at rest")
    unknown = ok_json(cli(*PROVIDER, "create", "-n", "x", "-m", "no-such-manager", "-c", "{}", "--json"))
    missing = cli(*PROVIDER, "validate", "--id", unknown["id"], "--json")
    assert missing.exit_code == 1 and "no key manager named 'no-such-manager'" in json.loads(missing.stdout)["reason"]
    text_form = cli(*PROVIDER, "validate", "--id", unknown["id"])
    assert text_form.exit_code == 1 and "failed after" in text_form.stderr and "no-such-manager" in text_form.stderr


def test_kas_registry(cli):
    doc = ok_json(cli("policy", "kas-registry", "create", "--uri", "https://kas.example.com", "--name", "kas1",
                      "-l", "env=dev", "--json"))
    assert set(doc) == {"id", "uri", "name", "metadata"} and doc["metadata"]["labels"] == {"env": "dev"}
    for args in (["--id", doc["id"]], ["--uri", "https://kas.example.com"], ["--name", "kas1"], ["kas1"]):
        assert ok_json(cli("policy", "kas-registry", "get", *args, "--json")) == doc
    cli("policy", "kas-registry", "create", "--uri", "https://kas2.example.com", "--name", "kas2")
    listed = ok_json(cli("policy", "kas-registry", "list", "--json"))
    assert listed["pagination"]["total"] == 2 and [k["name"] for k in listed["key_access_servers"]] == ["kas2", "kas1"]  # newest first
    table = cli("policy", "kas-registry", "list")
    assert "Total: 2" in table.stdout and "https://kas2.example.com" in table.stdout
    fails_with(cli("policy", "kas-registry", "get"), InvalidArgument, "exactly one")
    fails_with(cli("policy", "kas-registry", "get", "--name", "https://kas.example.com"), InvalidArgument, "no KAS")
    fails_with(cli("policy", "kas-registry", "create", "--uri", "https://kas.example.com", "--name", "x"),
               AlreadyExists, "uri")
    fails_with(cli("policy", "kas-registry", "get", "nope"), PlatformError, "not found")


def test_db_commands(cli):
    current = cli("db", "current", "--json")
    assert ok_json(current)["state"] == "empty" and ok_json(current)["current"] is None
    up = cli("db", "upgrade")
    assert up.exit_code == 0 and f"upgraded from revision (empty) to {schema.HEAD}" in up.stdout
    assert ok_json(cli("db", "current", "--json"))["state"] == "up to date"
    again = cli("db", "upgrade")
    assert "up to date" in again.stdout


# ---- the real console script ------------------------------------------------

def run_platform(db_url, *args, tmp_path, env=None, input=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    full_env.update({"PLATFORM_STATE_DIR": str(tmp_path / "state")}, **(env or {}))
    return subprocess.run([str(PLATFORM), "--db", db_url, *args], capture_output=True, env=full_env,
                          cwd=tmp_path, input=input, timeout=120)


def one_line_error(proc, pattern: str) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 1, (proc.stdout, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and pattern in lines[0], err
    return lines[0]


def test_end_to_end_cycle_with_console_script(db_url, tmp_path):
    """create/get/list/update/delete through .venv/bin/platform --json, with a root key."""
    env = {"PLATFORM_ROOT_KEY": ROOT_KEY_HEX}

    def platform(*args):
        return run_platform(db_url, *args, tmp_path=tmp_path, env=env)

    ids = {}
    for manager, raw in SEED_CONFIGS.items():
        proc = platform(*PROVIDER, "create", "--name", f"{manager}-production", "--manager", manager,
                        "--config", raw.decode(), "--json", "--show-config")
        assert proc.returncode == 0, proc.stderr
        doc = json.loads(proc.stdout)
        assert base64.b64decode(doc["config_json"]) == raw
        ids[manager] = doc["id"]
    one_line_error(platform(*PROVIDER, "create", "-n", "vault-production", "-m", "vault", "-c", "{}"),
                   "already exists")
    page = json.loads(platform(*PROVIDER, "list", "--limit", "2", "--json").stdout)
    assert page["pagination"] == {"next_offset": 2, "total": 3}  # current_offset 0: omitted (omitempty)
    got = json.loads(platform(*PROVIDER, "get", "--id", ids["vault"], "--json", "--show-config").stdout)
    assert base64.b64decode(got["config_json"]) == SEED_VAULT
    updated = json.loads(platform(*PROVIDER, "update", "--id", ids["vault"], "--config-json",
                                  '{"vault_addr": "https://v2:8200", "vault_token": "hvs.NEW"}', "--json").stdout)
    assert base64.b64decode(updated["config_json"]).startswith(b'{"vault_addr": "https://v2:8200"')

    store = Store.open(db_url, root_key=RootKey.from_hex(ROOT_KEY_HEX, "test"))
    try:
        kas = store.kas.create("https://kas.example.com", "kas")
        store.keys.create(kas.id, "k1", "rsa:2048", "provider", public_key_pem="PEM",
                          private_key_ctx={"key_id": "arn", "wrapped_key": "AAAA"}, provider_config_id=ids["aws-kms"])
        with store.db.engine.connect() as conn:
            blobs = [bytes(r[0]) for r in conn.execute(text("SELECT config_json FROM provider_config"))]
    finally:
        store.close()
    assert len(blobs) == 3
    for secret in (b"AKIA", b"hvs.", b"client_secret", b"87654321-4321"):
        assert all(secret not in blob for blob in blobs)

    one_line_error(platform(*PROVIDER, "delete", "--id", ids["aws-kms"], "--force"), "used by keys")
    deleted = platform(*PROVIDER, "delete", "--id", ids["azure"], "--force", "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout) is None  # otdfctl: ExitWithJSON(nil)
    final = json.loads(platform(*PROVIDER, "list", "--json").stdout)
    assert final["pagination"]["total"] == 2


def test_console_script_bad_input_one_line(sqlite_db_url, tmp_path):
    def platform(*args, **kw):
        return run_platform(sqlite_db_url, *args, tmp_path=tmp_path, **kw)

    one_line_error(platform(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", "{not json"), "not valid JSON")
    one_line_error(platform(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", b'{"a": "\xff"}'), "not valid UTF-8")
    one_line_error(platform(*PROVIDER, "create", "-n", b"bad\xffname", "-m", "m", "-c", "{}"),
                   "name is not valid UTF-8")
    one_line_error(platform(*PROVIDER, "get", "--name", "p"), "not found")
    one_line_error(platform(*PROVIDER, "get", "--id", "6b1f4c5e-0000-4000-8000-000000000000"), "not found")
    # Without a root key a config with a secret is refused, naming the field, not its value ...
    refused = platform(*PROVIDER, "create", "-n", "p", "-m", "m", "-c", '{"token": "TOPSECRET"}')
    one_line_error(refused, "secrets (token) would be stored unencrypted")
    assert b"TOPSECRET" not in refused.stderr + refused.stdout
    # ... and, when the operator insists, stored with one warning on stderr.
    created = platform("--allow-plaintext-secrets", *PROVIDER, "create", "-n", "p", "-m", "m", "-c",
                       '{"token": "TOPSECRET"}')
    assert created.returncode == 0
    warnings = [line for line in created.stderr.decode().splitlines() if "no root key" in line]
    assert len(warnings) == 1 and b"TOPSECRET" not in created.stderr


def test_console_script_unusable_databases(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_line_error(run_platform(f"postgresql+psycopg://admin:hunter2-secret@127.0.0.1:{port}/policy",
                                       *PROVIDER, "list", tmp_path=tmp_path), f"127.0.0.1:{port}")
    assert "hunter2" not in line
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\x00garbage" * 100)
    one_line_error(run_platform(f"sqlite:///{junk}", *PROVIDER, "list", tmp_path=tmp_path),
                   "is not a SQLite database")
    one_line_error(run_platform("sqlite:////proc/nope/platform.db", *PROVIDER, "list", tmp_path=tmp_path),
                   "cannot create")
