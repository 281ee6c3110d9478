"""Issue 6, AWS KMS, end to end through the `platform` console script.

moto's standalone server on loopback with IAM authentication switched on
(so wrong credentials are really refused); the KMS key and the checks are
plain boto3. Every platform command is a subprocess of .venv/bin/platform
loading build/plugins/aws-kms-manager.so with --key-manager-plugin.
"""

from __future__ import annotations

import json

import pytest

from tests.acceptance.cli import (PLUGIN_DIR, PlatformCli, require_built, one_error_line, private_pem_matches,
                                  wrapped_private_key)
from tests.plugins.conftest import moto_auth_server  # noqa: F401  (fixture: a moto server of this module's own)

PLUGIN = PLUGIN_DIR / "aws-kms-manager.so"

# The seed document's "AWS KMS Provider" example, verbatim.
SEED_AWS_EXAMPLE = {
    "region": "us-east-1",
    "access_key_id": "AKIA...",
    "secret_access_key": "...",
    "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012",
    "endpoint": "https://kms.us-east-1.amazonaws.com",
}


@pytest.fixture(scope="module")
def aws(moto_auth_server):  # noqa: F811
    """An IAM user allowed kms:*, a symmetric KMS key, then authentication on."""
    require_built("build/plugins/aws-kms-manager.so")
    iam = moto_auth_server.client("iam")
    iam.create_user(UserName="kas-operator")
    iam.put_user_policy(UserName="kas-operator", PolicyName="kms", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}))
    access = iam.create_access_key(UserName="kas-operator")["AccessKey"]
    key_arn = moto_auth_server.client("kms").create_key(Description="KAS provider key")["KeyMetadata"]["Arn"]
    moto_auth_server.set_auth(0)  # from here on, every request must be signed by a known user
    creds = {"access_key_id": access["AccessKeyId"], "secret_access_key": access["SecretAccessKey"]}
    kms = moto_auth_server.client("kms", **creds)
    yield moto_auth_server, creds, key_arn, kms
    moto_auth_server.set_auth(float("inf"))


def provider_config(server, creds: dict, key_arn: str) -> dict:
    """The seed example with real values and moto's endpoint (same keys, nothing more)."""
    config = {**SEED_AWS_EXAMPLE, **creds, "kms_key_id": key_arn, "endpoint": server.url}
    assert set(config) == set(SEED_AWS_EXAMPLE)
    return config


def test_provider_mode_key_on_a_symmetric_kms_key(aws, tmp_path):
    server, creds, key_arn, kms = aws
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    provider_id = cli.create_provider("aws-kms-production", "aws-kms", provider_config(server, creds, key_arn))

    validated = cli.validate(provider_id)
    assert validated.returncode == 0 and validated.stdout.startswith(
        "ok: provider config 'aws-kms-production' (manager 'aws-kms') answered in "), validated.stderr
    as_json = json.loads(cli.run("policy", "keymanagement", "provider", "validate", "--id", provider_id,
                                 "--json").stdout)
    assert as_json["ok"] is True and as_json["manager"] == "aws-kms" and as_json["latency_ms"] >= 0

    key = cli.create_key("aws-provider-1", "rsa:2048", "provider", provider_id)
    assert key["provider_config"]["manager"] == "aws-kms"
    cli.round_trip("aws-provider-1")

    # The wrapped private key is plain KMS ciphertext: boto3 alone opens it.
    stored = cli.get_key("aws-provider-1")
    plain = kms.decrypt(CiphertextBlob=wrapped_private_key(stored))
    assert plain["KeyId"] == key_arn
    private_pem_matches(plain["Plaintext"], stored)

    assert creds["secret_access_key"] not in cli.output()


def test_wrong_credentials_are_permission_denied_without_the_secret(aws, tmp_path):
    server, creds, key_arn, _ = aws
    cli = PlatformCli(tmp_path, (PLUGIN,))
    cli.register_kas()
    wrong_secret = "wrong-" + creds["secret_access_key"][::-1]
    cases = {
        "bad-signature": {**creds, "secret_access_key": wrong_secret},
        "unknown-user": {"access_key_id": "AKIAUNKNOWNUSER00000", "secret_access_key": wrong_secret},
    }
    for name, bad in cases.items():
        config = provider_config(server, bad, key_arn)
        # --validate refuses to store it
        refused = cli.run("policy", "keymanagement", "provider", "create", "-n", name, "-m", "aws-kms",
                          "-c", json.dumps(config), "--validate", ok=False)
        line = one_error_line(refused)
        assert "failed validation with manager 'aws-kms' (permission_denied after " in line, line
        listed = cli.run("policy", "keymanagement", "provider", "list", "--json").stdout
        assert name not in {c["name"] for c in json.loads(listed).get("provider_configs", [])}

        # stored without validation: validate and key create both say why
        provider_id = cli.create_provider(name, "aws-kms", config, validate=False)
        line = one_error_line(cli.validate(provider_id))
        assert "KMS refused" in line and line.endswith("[permission_denied]"), line
        as_json = cli.run("policy", "keymanagement", "provider", "validate", "--id", provider_id, "--json", ok=False)
        assert as_json.returncode == 1 and json.loads(as_json.stdout)["code"] == "permission_denied"
        line = one_error_line(cli.run("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id",
                                      f"k-{name}", "-a", "rsa:2048", "-m", "provider", "-p", provider_id,
                                      *cli.defaults("provider"), ok=False))
        assert "KMS refused" in line and line.endswith("[permission_denied]"), line

    transcript = cli.output()
    for secret in (wrong_secret, creds["secret_access_key"]):
        assert secret not in transcript
