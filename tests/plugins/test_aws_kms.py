"""aws-kms plugin: build/plugins/aws-kms-manager.so against moto's KMS server.

moto runs as its own process on a loopback port (real HTTP); keys are
created and results checked with plain boto3. The plugin is loaded through
the Python host (host.loader) and, for the plain-C case, by
build/km-conformance.

moto's server does not implement RSA decryption (its Decrypt only knows its
own symmetric format), so the one remote-mode call (Decrypt with
RSAES_OAEP_SHA_1) is covered with botocore's Stubber on the Python class,
as are the KMS error codes moto cannot produce (throttling, disabled key,
5xx...). Everything else talks to moto.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from host import errors
from host.abi import STATUS_ERRORS
from tests.plugins.conftest import load_factory
from host.managers.base import CallContext
from tests.make import make_or_fail

REPO = Path(__file__).resolve().parents[2]

# The seed document's AWS KMS example, verbatim.
SEED_CONFIG = {
    "region": "us-east-1",
    "access_key_id": "AKIA...",
    "secret_access_key": "...",
    "kms_key_id": "arn:aws:kms:us-east-1:123456789012:key/12345678-1234-1234-1234-123456789012",
    "endpoint": "https://kms.us-east-1.amazonaws.com",
}
# Distinctive credentials so that a leak is findable (moto accepts any while auth is off).
ACCESS_KEY_ID = "AKIAPLUGINTEST7Q2W"
SECRET_KEY = "plugin-test-secret-Zx81kQpL0vR5yT3u"
SESSION_TOKEN = "plugin-test-session-token-M4nB7cX2"


@pytest.fixture(scope="module")
def plugin(aws_kms_plugin):
    factory = load_factory(aws_kms_plugin, "aws-kms")
    assert factory.thread_safe
    return factory


@pytest.fixture(scope="module")
def kms(moto_server):
    return moto_server.client("kms")


@pytest.fixture(scope="module")
def sym_key(kms) -> str:
    return kms.create_key(Description="kas provider root key")["KeyMetadata"]["Arn"]


@pytest.fixture(scope="module")
def rsa_key(kms) -> str:
    return kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]


def seed_config(moto_server, key: str, **extra) -> dict:
    """The seed's AWS example with moto's endpoint, a real key and test credentials."""
    return {**SEED_CONFIG, "kms_key_id": key, "endpoint": moto_server.url,
            "access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_KEY, **extra}


@pytest.fixture
def manager(plugin, moto_server, sym_key):
    mgr = plugin.create(json.dumps(seed_config(moto_server, sym_key)).encode())
    yield mgr
    mgr.close()


@pytest.fixture(scope="module")
def aws_kms_class():
    for path in (REPO / "plugins" / "_pyembed", REPO / "plugins" / "aws_kms"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from aws_kms_manager import AwsKmsManager

    return AwsKmsManager


# ---- config ---------------------------------------------------------------------------
def test_seed_example_config_is_accepted_verbatim(plugin, moto_server):
    # Exactly the seed's JSON (placeholder credentials, example ARN), pointed at moto:
    # it builds; the example key does not exist there, which probe reports.
    mgr = plugin.create(json.dumps({**SEED_CONFIG, "endpoint": moto_server.url}).encode())
    try:
        with pytest.raises(errors.NotFound, match="12345678-1234-1234-1234-123456789012"):
            mgr.probe(CallContext.with_timeout(30))
    finally:
        mgr.close()
    # and without touching the network at all, the untouched seed config builds too
    plugin.create(json.dumps(SEED_CONFIG).encode()).close()


@pytest.mark.parametrize("change, needle", [
    ({"colour": "blue"}, "unknown keys ['colour']"),
    ({"access_key_id": None}, "access_key_id and secret_access_key go together"),
    ({"region": 5}, "'region' must be a string"),
    ({"region": "us east"}, "not a valid AWS region"),
    ({"endpoint": "ftp://kms"}, "endpoint must be an http(s) URL"),
    ({"endpoint": f"https://{ACCESS_KEY_ID}:{SECRET_KEY}@kms.example"}, "must not contain credentials"),
    ({"profile": "no-such-profile-xyz"}, "profile 'no-such-profile-xyz' not found"),
    ({"access_key_id": None, "secret_access_key": None, "session_token": SESSION_TOKEN}, "session_token needs"),
])
def test_bad_config_is_invalid_argument_without_secrets(plugin, moto_server, sym_key, change, needle):
    config = {k: v for k, v in {**seed_config(moto_server, sym_key), **change}.items() if v is not None}
    with pytest.raises(errors.InvalidArgument) as excinfo:
        plugin.create(json.dumps(config).encode())
    message = str(excinfo.value)
    assert needle in message
    for secret in (SECRET_KEY, SESSION_TOKEN, ACCESS_KEY_ID):
        assert secret not in message


def test_region_comes_from_the_key_arn(plugin, moto_server, sym_key):
    config = seed_config(moto_server, sym_key)
    del config["region"]
    mgr = plugin.create(json.dumps(config).encode())
    try:
        mgr.probe()
    finally:
        mgr.close()


# ---- symmetric wrap/unwrap (provider mode) ------------------------------------------------
def test_wrap_unwrap_round_trip_and_plain_boto3_decrypts(manager, kms, sym_key):
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    assert len(private_key) <= 4096
    ctx = CallContext.with_timeout(30)
    wrapped = manager.wrap("", private_key, ctx)
    assert private_key not in wrapped
    assert manager.unwrap("", wrapped, ctx) == private_key
    assert manager.unwrap(sym_key, wrapped, ctx) == private_key  # explicit key id = default
    decrypted = kms.decrypt(CiphertextBlob=wrapped, KeyId=sym_key)
    assert decrypted["Plaintext"] == private_key and decrypted["KeyId"] == sym_key


def test_wrap_with_an_explicit_key_id(manager, kms):
    other = kms.create_key()["KeyMetadata"]["KeyId"]
    wrapped = manager.wrap(other, b"dek-bytes")
    assert kms.decrypt(CiphertextBlob=wrapped)["KeyId"].endswith(other)
    assert manager.unwrap(other, wrapped) == b"dek-bytes"


def test_tampered_ciphertext_is_a_crypto_error(manager):
    wrapped = bytearray(manager.wrap("", b"secret dek"))
    wrapped[len(wrapped) // 2] ^= 0x01
    with pytest.raises(errors.CryptoError):
        manager.unwrap("", bytes(wrapped))
    with pytest.raises(errors.CryptoError, match="ciphertext must be 1..6144 bytes"):
        manager.unwrap("", b"")


def test_unknown_key_is_not_found(manager):
    with pytest.raises(errors.NotFound, match="no-such-key"):
        manager.wrap("alias/no-such-key", b"x")
    with pytest.raises(errors.NotFound):
        manager.unwrap("11111111-2222-3333-4444-555555555555", b"xyz")


def test_disabled_key_is_unavailable(plugin, moto_server, kms):
    meta = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=meta["KeyId"])  # moto's DisableKey takes the bare id
    key = meta["Arn"]
    mgr = plugin.create(json.dumps(seed_config(moto_server, key)).encode())
    try:
        with pytest.raises(errors.Unavailable, match="Disabled"):
            mgr.probe()
    finally:
        mgr.close()


def test_plaintext_size_limits(manager):
    with pytest.raises(errors.InvalidArgument, match="1..4096 bytes, got 0"):
        manager.wrap("", b"")
    with pytest.raises(errors.InvalidArgument, match="got 4097"):
        manager.wrap("", b"x" * 4097)


def test_no_key_anywhere_is_invalid_argument(plugin, moto_server, sym_key):
    config = seed_config(moto_server, sym_key)
    del config["kms_key_id"]
    mgr = plugin.create(json.dumps(config).encode())
    try:
        with pytest.raises(errors.InvalidArgument, match="no key id given"):
            mgr.wrap("", b"x")
        mgr.probe()  # without a default key, probe checks the credentials (ListKeys)
    finally:
        mgr.close()


# ---- RSA keys: public key, remote-mode unwrap -----------------------------------------------
def test_public_key_of_an_rsa_kms_key(manager, kms, rsa_key):
    pem = manager.public_key(rsa_key)
    der = kms.get_public_key(KeyId=rsa_key)["PublicKey"]
    loaded = serialization.load_pem_public_key(pem.encode())
    assert loaded.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo) == der
    assert pem.startswith("-----BEGIN PUBLIC KEY-----") and loaded.key_size == 2048


def test_public_key_of_a_symmetric_key_is_invalid_argument(manager):
    with pytest.raises(errors.InvalidArgument, match="SYMMETRIC_DEFAULT"):
        manager.public_key("")


def test_probe_of_an_rsa_default_key_fetches_the_public_key(plugin, moto_server, rsa_key):
    mgr = plugin.create(json.dumps(seed_config(moto_server, rsa_key)).encode())
    try:
        with moto_server.recording() as requests:
            mgr.probe()
    finally:
        mgr.close()
    # what KMS was asked (moto's recorder): the key's spec, then its public key; no encrypt round trip
    assert requests == [("DescribeKey", rsa_key), ("GetPublicKey", rsa_key)]


def _stubbed(aws_kms_class, key_id: str, key_spec: str):
    mgr = aws_kms_class({"region": "us-east-1", "access_key_id": ACCESS_KEY_ID,
                         "secret_access_key": SECRET_KEY, "kms_key_id": key_id})
    # Private seam, on purpose: moto's server cannot decrypt with RSA keys nor return these KMS error
    # codes, so botocore's Stubber must sit on the very client the manager calls through; the manager
    # offers no public way to hand it one. _client(None) is the client used by calls without a deadline.
    client, _ = mgr._client(None)
    stubber = Stubber(client)
    stubber.add_response("describe_key", {"KeyMetadata": {
        "KeyId": key_id, "Arn": key_id, "KeySpec": key_spec, "KeyState": "Enabled",
        "KeyUsage": "ENCRYPT_DECRYPT"}}, {"KeyId": key_id})
    return mgr, stubber


def test_remote_unwrap_with_rsa_key_uses_oaep_sha1(aws_kms_class):
    """Stubber (moto cannot decrypt RSA): the request KMS would get, and its answer."""
    key = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    dek = os.urandom(32)
    # what a TDF client sends: the DEK wrapped to the KMS key's public key with OAEP-SHA1
    wrapped = private.public_key().encrypt(dek, padding.OAEP(
        mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    mgr, stubber = _stubbed(aws_kms_class, key, "RSA_2048")
    stubber.add_response("decrypt", {"Plaintext": dek, "KeyId": key, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"},
                         {"KeyId": key, "CiphertextBlob": wrapped, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"})
    stubber.add_response("decrypt", {"Plaintext": dek, "KeyId": key, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"},
                         {"KeyId": key, "CiphertextBlob": wrapped, "EncryptionAlgorithm": "RSAES_OAEP_SHA_1"})
    with stubber:
        assert mgr.unwrap("", wrapped, None) == dek
        assert mgr.unwrap(key, wrapped, None) == dek  # KeySpec came from the cache: one DescribeKey
        stubber.assert_no_pending_responses()
    mgr.close()


@pytest.mark.parametrize("code, http, expected", [
    ("IncorrectKeyException", 400, errors.CryptoError),
    ("InvalidCiphertextException", 400, errors.CryptoError),
    ("ThrottlingException", 400, errors.Unavailable),
    ("KMSInternalException", 500, errors.Unavailable),
    ("InternalFailure", 503, errors.Unavailable),
    ("DisabledException", 400, errors.Unavailable),
    ("KMSInvalidStateException", 400, errors.Unavailable),
    ("AccessDeniedException", 400, errors.PermissionDenied),
    ("ExpiredTokenException", 400, errors.PermissionDenied),
    ("UnrecognizedClientException", 400, errors.PermissionDenied),
    ("InvalidKeyUsageException", 400, errors.InvalidArgument),
    ("NotFoundException", 400, errors.NotFound),
    ("SomethingNewException", 400, errors.Internal),
])
def test_kms_error_codes_map_to_statuses(aws_kms_class, code, http, expected):
    """Stubber: error codes moto's server cannot be made to return."""
    from km_pyembed import errors as kerr
    from km_pyembed.errors import status_of

    key = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    mgr, stubber = _stubbed(aws_kms_class, key, "RSA_2048")
    stubber.add_client_error("decrypt", service_error_code=code, http_status_code=http,
                             service_message=f"message mentioning {SECRET_KEY}")
    with stubber:
        with pytest.raises(kerr.ManagerError) as excinfo:
            mgr.unwrap("", b"x" * 256, None)
    status, message = status_of(excinfo.value)
    assert STATUS_ERRORS[status] is expected  # the KM_ERR_* code as keymanager.h defines it, seen by the host
    assert code in message or expected is errors.NotFound
    assert SECRET_KEY not in message  # AWS's message text is never passed on
    mgr.close()


# ---- credentials and logs --------------------------------------------------------------------
@pytest.fixture(scope="module")
def iam_user(moto_auth_server):
    """An IAM user allowed kms:*, a key, then moto's IAM authentication switched on."""
    iam = moto_auth_server.client("iam")
    iam.create_user(UserName="kas")
    iam.put_user_policy(UserName="kas", PolicyName="kms", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]}))
    access = iam.create_access_key(UserName="kas")["AccessKey"]
    key = moto_auth_server.client("kms").create_key()["KeyMetadata"]["Arn"]
    moto_auth_server.set_auth(0)  # from now on every request is authenticated
    yield access["AccessKeyId"], access["SecretAccessKey"], key
    moto_auth_server.set_auth(float("inf"))


def test_wrong_credentials_are_permission_denied_without_secrets(plugin, moto_auth_server, iam_user,
                                                                 caplog, capfd):
    caplog.set_level(logging.DEBUG)
    access_key_id, secret, key = iam_user
    base = {"region": "us-east-1", "kms_key_id": key, "endpoint": moto_auth_server.url}
    # the right credentials work: authentication is really on
    good = plugin.create(json.dumps({**base, "access_key_id": access_key_id,
                                     "secret_access_key": secret}).encode())
    try:
        good.probe()
    finally:
        good.close()
    wrong_secret = "wrong-secret-" + secret[::-1]
    cases = [
        {"access_key_id": access_key_id, "secret_access_key": wrong_secret},  # bad signature
        {"access_key_id": ACCESS_KEY_ID, "secret_access_key": SECRET_KEY},   # unknown key id
    ]
    for creds in cases:
        mgr = plugin.create(json.dumps({**base, **creds}).encode())
        try:
            for call in (mgr.probe, lambda: mgr.wrap("", b"dek"), lambda: mgr.unwrap("", b"blob")):
                with pytest.raises(errors.PermissionDenied) as excinfo:
                    call()
                assert "KMS refused" in str(excinfo.value)
                for secret_value in (wrong_secret, secret, SECRET_KEY):
                    assert secret_value not in str(excinfo.value)
        finally:
            mgr.close()
    out, err = capfd.readouterr()
    for secret_value in (wrong_secret, secret, SECRET_KEY):
        assert secret_value not in caplog.text + out + err


def test_logs_and_errors_never_contain_secrets(plugin, moto_server, sym_key, caplog, capfd):
    caplog.set_level(logging.DEBUG)
    config = seed_config(moto_server, sym_key, session_token=SESSION_TOKEN)
    dek = b"DEK-0123456789abcdef-plaintext"
    seen = []
    mgr = plugin.create(json.dumps(config).encode())
    try:
        mgr.probe()
        assert mgr.unwrap("", mgr.wrap("", dek)) == dek
        for call in (lambda: mgr.wrap("alias/missing", dek), lambda: mgr.unwrap("", b"junk"),
                     lambda: mgr.public_key(""), lambda: mgr.wrap("", b"")):
            with pytest.raises(errors.PlatformError) as excinfo:
                call()
            seen.append(str(excinfo.value))
        seen.append(repr(mgr))
    finally:
        mgr.close()
    for bad in ({**config, "region": 3}, {**config, "colour": SECRET_KEY}):
        with pytest.raises(errors.InvalidArgument) as excinfo:
            plugin.create(json.dumps(bad).encode())
        seen.append(str(excinfo.value))
    out, err = capfd.readouterr()
    records = [r.getMessage() for r in caplog.records]
    assert any("aws-kms manager: region us-east-1" in r for r in records)  # plugin logs do arrive
    text = "\n".join(seen + records) + caplog.text + out + err
    for secret in (SECRET_KEY, SESSION_TOKEN, dek.decode(), dek.hex(), base64.b64encode(dek).decode()):
        assert secret not in text


def test_python_class_repr_hides_secrets(aws_kms_class):
    mgr = aws_kms_class({"region": "us-east-1", "access_key_id": ACCESS_KEY_ID,
                         "secret_access_key": SECRET_KEY, "session_token": SESSION_TOKEN})
    assert SECRET_KEY not in repr(mgr) and SESSION_TOKEN not in repr(mgr)
    assert SECRET_KEY not in repr(vars(mgr)) and SESSION_TOKEN not in repr(vars(mgr))
    mgr.close()


# ---- deadlines and outages -----------------------------------------------------------------
@pytest.fixture
def silent_endpoint():
    """A loopback port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_deadline_bounds_a_hanging_kms(plugin, silent_endpoint, sym_key):
    config = {**SEED_CONFIG, "kms_key_id": sym_key, "endpoint": silent_endpoint}
    mgr = plugin.create(json.dumps(config).encode())
    try:
        with pytest.raises(errors.DeadlineExceeded):
            mgr.wrap("", b"dek", CallContext.with_timeout(0.5))
    finally:
        mgr.close()


def test_unreachable_kms_is_unavailable(plugin, sym_key):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = {**SEED_CONFIG, "kms_key_id": sym_key, "endpoint": f"http://127.0.0.1:{port}"}
    mgr = plugin.create(json.dumps(config).encode())
    try:
        with pytest.raises(errors.Unavailable, match="unreachable"):
            mgr.wrap("", b"dek", CallContext.with_timeout(60))
    finally:
        mgr.close()


# ---- threads -----------------------------------------------------------------------------
def test_four_threads_share_one_manager(manager, kms):
    failures, done = [], []

    def worker(n: int):
        try:
            for i in range(10):
                plain = f"thread {n} dek {i}".encode()
                wrapped = manager.wrap("", plain, CallContext.with_timeout(60))
                assert manager.unwrap("", wrapped, CallContext.with_timeout(60)) == plain
                done.append(wrapped)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and len(done) == 40
    assert kms.decrypt(CiphertextBlob=done[-1])["Plaintext"].startswith(b"thread ")


# ---- the plain C host ---------------------------------------------------------------------
def test_conformance_suite_passes_from_a_plain_c_host(aws_kms_plugin, moto_server, sym_key, tmp_path):
    make_or_fail("build/km-conformance")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(seed_config(moto_server, sym_key)))
    # dlopen(RTLD_LOCAL) from C with no Python environment at all
    proc = subprocess.run([str(REPO / "build" / "km-conformance"), str(aws_kms_plugin), str(cfg)],
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].endswith(" 0 failed")
    assert "PASS concurrency" in proc.stdout and "PASS roundtrip.4096" in proc.stdout
    for secret in (SECRET_KEY, ACCESS_KEY_ID):
        assert secret not in proc.stdout + proc.stderr
