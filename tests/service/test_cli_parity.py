"""The admin CLI with otdfctl's flags (issue 15, CLI 1 and 3), in direct database mode.

Named after the otdfctl e2e cases (kas-keys.bats, key-base.bats, kas-registry.bats,
provider-config.bats) each covers, in our own words.
"""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner

from host.cli import main
from host.server.convert import ALGORITHMS, KEY_MODES, KEY_STATUSES


@pytest.fixture
def cli(sqlite_db_url, root_key_hex):
    runner = CliRunner()

    def run(*args, ok=True):
        r = runner.invoke(main, ["--db", sqlite_db_url, *map(str, args)])
        r.text = r.output + ("" if r.exception is None else str(r.exception))  # `platform` prints it as one line
        if ok:
            assert r.exit_code == 0, r.output
        return r

    run("policy", "kas-registry", "create", "--uri", "https://kas.example.com", "--name", "KAS1")
    return run


KEY = ("policy", "kas-registry", "key")


def create(cli, kid, *extra):
    return json.loads(cli(*KEY, "create", "--kas", "kas1", "--key-id", kid, "--algorithm", "rsa:2048",
                          "--mode", "local", "--wrapping-key-id", "root", *extra, "--json").stdout)


def test_kas_keys_rotate_key_is_old_and_key_id_is_new(cli):
    old = create(cli, "old-1")
    out = json.loads(cli(*KEY, "rotate", "--key", "old-1", "--kas", "kas1", "--key-id", "new-1",
                         "--algorithm", "rsa:2048", "--mode", "local", "--wrapping-key-id", "root", "--json").stdout)
    assert out["kas_key"]["key"]["key_id"] == "new-1" and KEY_STATUSES[out["kas_key"]["key"]["key_status"]] == "active"
    assert out["rotated_resources"]["rotated_out_key"]["key"]["id"] == old["key"]["id"]
    # The old spelling is refused rather than silently inverted.
    r = cli(*KEY, "rotate", "--key-id", "new-1", "--new-key-id", "x", ok=False)
    assert r.exit_code != 0 and "--new-key-id" in r.output
    # otdfctl requires --algorithm and --mode.
    r = cli(*KEY, "rotate", "--key", "new-1", "--key-id", "new-2", ok=False)
    assert r.exit_code != 0 and "--algorithm" in r.output


def test_kas_keys_get_by_key_uuid_or_kid_and_public_key_base64(cli):
    made = create(cli, "g-1")
    by_kid = json.loads(cli(*KEY, "get", "--key", "g-1", "--kas", "KAS1", "--json").stdout)
    by_id = json.loads(cli(*KEY, "get", "-k", made["key"]["id"], "--json").stdout)
    assert by_kid == by_id == made
    pem = base64.b64decode(made["key"]["public_key_ctx"]["pem"]).decode()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")
    # A public_key key from the base64 PEM, as otdfctl passes it.
    imported = json.loads(cli(*KEY, "import", "--kas", "kas1", "--key-id", "pub-1", "--algorithm", "rsa:2048",
                              "--mode", "public_key", "--public-key-pem", made["key"]["public_key_ctx"]["pem"],
                              "--json").stdout)
    assert imported["key"]["public_key_ctx"]["pem"] == made["key"]["public_key_ctx"]["pem"]


def test_kas_keys_update_labels_and_legacy_list(cli):
    made = create(cli, "u-1", "--label", "a=1", "--legacy")
    assert made["key"]["legacy"] is True
    create(cli, "u-2")
    up = json.loads(cli(*KEY, "update", "--id", made["key"]["id"], "--label", "b=2", "--json").stdout)
    assert up["key"]["metadata"]["labels"] == {"a": "1", "b": "2"}
    legacy = json.loads(cli(*KEY, "list", "--legacy", "true", "--json").stdout)
    assert [k["key"]["key_id"] for k in legacy["kas_keys"]] == ["u-1"]


def test_key_base_set_and_get(cli):
    r = cli(*KEY, "base", "get", "--json", ok=False)  # otdfctl: ExitWithError("No base key found", nil)
    assert r.exit_code == 1 and str(r.exception) == "No base key found"
    create(cli, "b-1")
    set_ = json.loads(cli(*KEY, "base", "set", "--key", "b-1", "--kas", "kas1", "--json").stdout)
    assert set_["new_base_key"]["public_key"]["kid"] == "b-1" and "previous_base_key" not in set_
    assert json.loads(cli(*KEY, "base", "get", "--json").stdout)["public_key"]["kid"] == "b-1"


def test_kas_keys_list_mappings_empty_and_unsafe_delete(cli):
    made = create(cli, "d-1")
    assert "key_mappings" not in json.loads(cli(*KEY, "list-mappings", "--key", "d-1", "--kas", "kas1", "--json").stdout)
    r = cli(*KEY, "unsafe", "delete", "--id", made["key"]["id"], "--key-id", "wrong", "--kas-uri", made["kas_uri"],
            "--force", ok=False)
    assert r.exit_code != 0 and "key id mismatch" in r.text
    cli(*KEY, "unsafe", "delete", "--id", made["key"]["id"], "--key-id", "d-1", "--kas-uri", made["kas_uri"], "--force")
    assert "not found" in cli(*KEY, "get", "--key", "d-1", "--kas", "kas1", ok=False).text


def test_kas_registry_update_delete_and_nameless(cli):
    kas = json.loads(cli("policy", "kas-registry", "create", "--uri", "https://nameless.example.com",
                         "--json").stdout)
    assert "name" not in kas  # "": omitted (Go's omitempty)
    up = json.loads(cli("policy", "kas-registry", "update", "--id", kas["id"], "--name", "Named",
                        "--json").stdout)
    assert up["name"] == "named"
    cli("policy", "kas-registry", "delete", "--id", kas["id"], "--force")
    assert cli("policy", "kas-registry", "get", "--id", kas["id"], ok=False).exit_code != 0


def test_provider_config_get_by_name_alone(cli):
    P = ("policy", "keymanagement", "provider-config")
    cli(*P, "create", "--name", "AWS-KMS-Production", "--manager", "aws-kms", "--config-json", "{}")
    got = json.loads(cli(*P, "get", "--name", "aws-kms-production", "--json").stdout)
    assert got["name"] == "aws-kms-production" and got["manager"] == "aws-kms"
    cli(*P, "create", "--name", "aws-kms-production", "--manager", "other", "--config-json", "{}")
    r = cli(*P, "get", "--name", "aws-kms-production", ok=False)
    assert r.exit_code != 0 and "--manager" in r.text
