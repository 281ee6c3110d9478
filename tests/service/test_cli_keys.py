"""The key CLI flow the issue checks: create, wrap, unwrap, rotate, unwrap again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from host.cli import main
from host.server.convert import ALGORITHMS, KEY_MODES, KEY_STATUSES
from tests.service.conftest import file_kek_config

PLATFORM = Path(sys.executable).parent / "platform"


@pytest.fixture
def cli(sqlite_db_url, root_key_hex, file_kek_plugin, remote_keystore_plugin, tmp_path):
    runner = CliRunner()
    base = ["--db", sqlite_db_url, "--key-manager-plugin", str(file_kek_plugin),
            "--key-manager-plugin", str(remote_keystore_plugin)]

    def run(*args, ok=True):
        r = runner.invoke(main, base + [str(a) for a in args], catch_exceptions=False) if ok else \
            runner.invoke(main, base + [str(a) for a in args])
        if ok:
            assert r.exit_code == 0, r.output
        return r

    run("policy", "kas-registry", "create", "--uri", "https://kas.example.com", "--name", "kas1")
    return run


@pytest.mark.parametrize("alg", ["rsa:2048", "rsa:4096", "ec:secp256r1", "ec:secp384r1", "ec:secp521r1"])
def test_local_and_provider_keys_through_cli(cli, tmp_path, alg):
    cfg = json.loads(cli("policy", "keymanagement", "provider", "create", "--name", "fk", "--manager", "file-kek",
                         "--config", json.dumps(file_kek_config("a", "b")), "--json").stdout)
    for mode, extra in (("local", ["--wrapping-key-id", "root"]),
                        ("provider", ["--provider-config-id", cfg["id"], "--wrapping-key-id", "b"])):
        kid = f"{mode}-1"
        out = json.loads(cli("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", kid,
                             "--algorithm", alg, "--mode", mode, *extra, "--json").stdout)
        # --json as otdfctl: enums are numbers
        assert (KEY_MODES[out["key"]["key_mode"]], ALGORITHMS[out["key"]["key_algorithm"]]) == (mode, alg)
        dek = os.urandom(32)
        (tmp_path / "dek.bin").write_bytes(dek)
        cli("kas", "wrap", "--kid", kid, "--in", tmp_path / "dek.bin", "--out", tmp_path / "w.json")
        cli("kas", "unwrap", "--in", tmp_path / "w.json", "--out", tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == dek
        cli("policy", "kas-registry", "key", "rotate", "--kas", "kas1", "--key", kid, "--key-id", f"{mode}-2",
            "--algorithm", alg, "--mode", mode, *extra)
        cli("kas", "unwrap", "--in", tmp_path / "w.json", "--out", tmp_path / "again.bin")
        assert (tmp_path / "again.bin").read_bytes() == dek
        listed = json.loads(cli("policy", "kas-registry", "key", "list", "--json").stdout)
        status = {k["key"]["key_id"]: KEY_STATUSES[k["key"]["key_status"]] for k in listed["kas_keys"]}
        assert status[kid] == "rotated" and status[f"{mode}-2"] == "active"
        cli("policy", "keymanagement", "provider", "list")


def test_remote_key_from_manager_and_rewrap(cli, tmp_path):
    cfg = json.loads(cli("policy", "keymanagement", "provider", "create", "-n", "rk", "-m", "remote-keystore",
                         "-c", json.dumps({"keys": {"hsm-rsa": "rsa:2048"}, "key_dir": str(tmp_path)}), "--json").stdout)
    cli("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", "remote-1", "-a", "rsa:2048",
        "-m", "remote", "-p", cfg["id"], "--wrapping-key-id", "hsm-rsa", "--fetch-public-key")
    pem = cli("kas", "public-key", "--kid", "remote-1").stdout
    assert "BEGIN PUBLIC KEY" in pem
    dek = os.urandom(32)
    (tmp_path / "dek.bin").write_bytes(dek)
    cli("kas", "wrap", "--kid", "remote-1", "--in", tmp_path / "dek.bin", "--out", tmp_path / "w.json")
    cli("kas", "unwrap", "--in", tmp_path / "w.json", "--out", tmp_path / "out.bin")
    assert (tmp_path / "out.bin").read_bytes() == dek
    from cryptography.hazmat.primitives.asymmetric import ec
    from host import crypto
    client = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "client.pem").write_text(crypto.public_pem(client))
    cli("kas", "rewrap", "--in", tmp_path / "w.json", "--client-public-key", tmp_path / "client.pem",
        "--out", tmp_path / "r.json")
    r = json.loads((tmp_path / "r.json").read_text())
    eph = crypto.load_ephemeral_public_key(r["session_public_key"], "ec:secp256r1")
    import base64
    assert crypto.ec_unwrap(client, eph, base64.b64decode(r["rewrapped_key"])) == dek


def test_cli_errors_are_one_line(sqlite_db_url, root_key_hex, tmp_path):
    env = dict(os.environ)
    base = [str(PLATFORM), "--db", sqlite_db_url]
    subprocess.run(base + ["policy", "kas-registry", "create", "--uri", "https://k", "--name", "k"], check=True,
                   env=env, capture_output=True)
    cfg = json.loads(subprocess.run(base + ["policy", "keymanagement", "provider", "create", "-n", "aws", "-m",
                                            "aws-kms", "-c", '{"region": "us-east-1"}', "--json"],
                                    check=True, env=env, capture_output=True, text=True).stdout)
    r = subprocess.run(base + ["policy", "kas-registry", "key", "create", "--kas", "k", "--key-id", "k1",
                               "-a", "rsa:2048", "-m", "provider", "-p", cfg["id"], "--wrapping-key-id", "w"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no key manager named 'aws-kms'" in r.stderr and "--key-manager-plugin" in r.stderr
    (tmp_path / "bad.json").write_text('{"kid": "nope", "wrapped_key": "AAAA"}')
    r = subprocess.run(base + ["kas", "unwrap", "--in", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 1 and "not found" in r.stderr and "Traceback" not in r.stderr
    (tmp_path / "bad.json").write_text('[1]')
    r = subprocess.run(base + ["kas", "unwrap", "--in", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o")],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "must be a JSON object" in r.stderr
