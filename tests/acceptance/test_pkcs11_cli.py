"""Issue 7, PKCS#11 on SoftHSM2, end to end through the `platform` console script.

A SoftHSM2 token is set up from scratch in a temporary directory (its own
softhsm2.conf; keys generated on the token, private and not extractable).
Every platform command is a subprocess of .venv/bin/platform loading
build/plugins/pkcs11-manager.so with SOFTHSM2_CONF pointing at that token;
this test process itself never loads SoftHSM. The public keys are read off
the token independently with OpenSC's pkcs11-tool.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.acceptance.cli import (PLUGIN_DIR, PlatformCli, require_built, one_error_line, same_public_key,
                                  stored_public_key)
from tests.softhsm import SoftHSMUnavailable, create_token

PLUGIN = PLUGIN_DIR / "pkcs11-manager.so"
AES_KEY, RSA_KEY, EC_KEY = "kas-wrapping-aes", "kas-remote-rsa", "kas-remote-ec"


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    try:
        made = create_token(tmp_path_factory.mktemp("softhsm"), label="kas-acceptance",
                            aes=[AES_KEY], rsa=[RSA_KEY], ec=[EC_KEY])
    except SoftHSMUnavailable as e:
        pytest.fail(f"{e}: run `make sysdeps`")
    require_built("build/plugins/pkcs11-manager.so")
    return made


def new_cli(token, tmp_path) -> PlatformCli:
    cli = PlatformCli(tmp_path, (PLUGIN,), extra_env=token.env)
    cli.register_kas()
    return cli


def token_public_key(token, label: str, tmp_path):
    """The public key object as the token holds it, read with pkcs11-tool (not the plugin)."""
    tool = shutil.which("pkcs11-tool")
    if tool is None:
        pytest.fail("pkcs11-tool not found (Debian package opensc): run `make sysdeps`")
    out = tmp_path / f"{label}.pub.der"
    proc = subprocess.run([tool, "--module", token.module, "--token-label", token.label, "--read-object",
                           "--type", "pubkey", "--label", label, "--output-file", str(out)],
                          env={**os.environ, **token.env}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return serialization.load_der_public_key(out.read_bytes())


def test_provider_mode_key_wrapped_by_an_hsm_aes_key(token, tmp_path):
    cli = new_cli(token, tmp_path)
    provider_id = cli.create_provider("hsm", "pkcs11", token.config(AES_KEY))
    validated = cli.validate(provider_id)
    assert validated.returncode == 0 and validated.stdout.startswith(
        "ok: provider config 'hsm' (manager 'pkcs11') answered in "), validated.stderr

    for kid, algorithm in (("hsm-provider-rsa", "rsa:2048"), ("hsm-provider-ec", "ec:secp256r1")):
        key = cli.create_key(kid, algorithm, "provider", provider_id)
        assert key["private_key_ctx"]["wrapped_key"], "provider mode stores the HSM-wrapped private key"
        cli.round_trip(kid)
    assert token.user_pin not in cli.output()


def test_remote_mode_rsa_key_whose_public_key_comes_from_the_hsm(token, tmp_path):
    cli = new_cli(token, tmp_path)
    provider_id = cli.create_provider("hsm-rsa", "pkcs11", token.config(RSA_KEY))
    assert cli.validate(provider_id).returncode == 0

    key = cli.create_key("hsm-remote-rsa", "rsa:2048", "remote", provider_id)  # no --public-key-pem
    assert not (key.get("private_key_ctx") or {}).get("wrapped_key")  # nothing of the private key is stored here
    public = stored_public_key(key)
    assert isinstance(public, rsa.RSAPublicKey)
    assert same_public_key(public, token_public_key(token, RSA_KEY, tmp_path))
    cli.round_trip("hsm-remote-rsa")

    attrs = token.key_attributes(RSA_KEY, "private")  # the private half never left the token
    assert attrs["sensitive"] and attrs["never_extractable"] and attrs["value_readable"] is False
    assert token.user_pin not in cli.output()


def test_remote_mode_ec_key_whose_public_key_comes_from_the_hsm(token, tmp_path):
    """EC remote mode: ECDH on the token (the client's ephemeral key in, the shared secret out)."""
    cli = new_cli(token, tmp_path)
    provider_id = cli.create_provider("hsm-ec", "pkcs11", token.config())
    key = cli.create_key("hsm-remote-ec", "ec:secp256r1", "remote", provider_id, "--wrapping-key-id", EC_KEY)
    public = stored_public_key(key)
    assert isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == "secp256r1"
    assert same_public_key(public, token_public_key(token, EC_KEY, tmp_path))
    cli.round_trip("hsm-remote-ec")


def test_wrong_pin_is_permission_denied_without_echoing_the_pin(token, tmp_path):
    cli = new_cli(token, tmp_path)
    wrong_pin = "wrong-pin-" + secrets.token_hex(4)
    config = token.config(AES_KEY, pin=wrong_pin)

    refused = cli.run("policy", "keymanagement", "provider", "create", "-n", "bad-pin", "-m", "pkcs11",
                      "-c", json.dumps(config), "--validate", ok=False)
    line = one_error_line(refused)
    assert "failed validation with manager 'pkcs11' (permission_denied after " in line, line
    assert "refused the user PIN" in line, line

    provider_id = cli.create_provider("bad-pin", "pkcs11", config, validate=False)
    line = one_error_line(cli.validate(provider_id))
    assert "refused the user PIN" in line and line.endswith("[permission_denied]"), line
    for kid, algorithm, mode, extra in (("p", "rsa:2048", "provider", ()),
                                        ("r", "rsa:2048", "remote", ("--wrapping-key-id", RSA_KEY))):
        line = one_error_line(cli.run("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", kid,
                                      "-a", algorithm, "-m", mode, "-p", provider_id, *cli.defaults(mode, extra),
                                      *extra, ok=False))
        assert "refused the user PIN" in line and line.endswith("[permission_denied]"), line
    listed = json.loads(cli.run("policy", "kas-registry", "key", "list", "--json").stdout)
    assert "kas_keys" not in listed  # none: omitted (Go's omitempty)
    transcript = cli.output()
    assert wrong_pin not in transcript and token.user_pin not in transcript
