"""The file-kek plugin: config validation (through km-conformance), the wire
format and key-id binding (through the host loader), and key hygiene."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host import errors
from host.loader import load_plugin
from tests.conformance.runner_util import PLUGIN_DIR, ROOT, RUNNER, make_or_fail, random_kek, run_runner

SO = PLUGIN_DIR / "file-kek-manager.so"


@pytest.fixture(scope="module", autouse=True)
def built():
    make_or_fail("build/plugins/file-kek-manager.so", str(RUNNER.relative_to(ROOT)))


@pytest.fixture(scope="module")
def factory():
    plugin = load_plugin(str(SO))
    assert plugin.name == "file-kek" and plugin.abi_version == "1.1"
    (f,) = plugin.factories
    return f


def create_via_runner(tmp_path: Path, config: str | bytes):
    cfg = tmp_path / "config.json"
    cfg.write_bytes(config.encode() if isinstance(config, str) else config)
    return run_runner(SO, cfg)


def assert_rejected(r, reason: str, *secrets: str):
    assert r.returncode == 1
    line = r.line("FAIL create")
    assert line.startswith("FAIL create: file-kek returned KM_ERR_INVALID_ARGUMENT: file-kek config: "), line
    assert reason in line, line
    for s in secrets:  # key material is never echoed, in any case
        assert s.lower() not in r.text().lower()


# ---- exports and descriptor ---------------------------------------------------

def test_only_km_plugin_init_is_exported():
    out = subprocess.run(["nm", "-D", "--defined-only", str(SO)], capture_output=True, text=True, check=True).stdout
    symbols = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert symbols == ["km_plugin_init"]


def test_descriptor_capabilities(factory):
    assert factory.name == "file-kek"
    assert factory.thread_safe
    caps = factory.describe()
    assert "public_key" not in json.dumps(caps).lower() or caps.get("public_key") in (False, None)


# ---- config validation (one line, names the problem, never the key) ----------

K1, K2 = random_kek(), random_kek()

BAD_CONFIGS = [
    ("{not json", "invalid JSON at byte 1: expected a string"),
    ("[]", "must be a JSON object, got an array"),
    ("", "empty; expected a JSON object"),
    ("   ", "empty; expected a JSON object"),
    ('"keks"', "must be a JSON object, got a string"),
    ("{}", 'needs "keks"'),
    ('{"keks": {}}', '"keks" is empty'),
    ('{"keks": []}', '"keks" must be an object'),
    ('{"keks": {"a": 5}}', 'keks["a"] must be a string of 64 hex characters, got a number'),
    ('{"keks": {"a": "%s"}}' % K1[:-1], 'keks["a"] must be 64 hex characters'),
    ('{"keks": {"a": "%s00"}}' % K1, 'keks["a"] must be 64 hex characters'),
    ('{"keks": {"a": "%sxz"}}' % K1[:-2], 'keks["a"] contains a character that is not hex'),
    ('{"keks": {"a": "%s", "b": "%s"}}' % (K1, K2), "default_key_id is required when more than one KEK"),
    ('{"keks": {"a": "%s"}, "default_key_id": "b"}' % K1, 'default_key_id "b" is not one of the configured KEKs'),
    ('{"keks": {"a": "%s"}, "default_key_id": ""}' % K1, '"default_key_id" is empty'),
    ('{"keks": {"a": "%s"}, "default_key_id": 7}' % K1, '"default_key_id" must be a string, got a number'),
    ('{"keks": {"": "%s"}}' % K1, "key id is empty"),
    ('{"keks": {"%s": "%s"}}' % ("x" * 129, K1), "key id is longer than 128 bytes"),
    ('{"keks": {"a\\nb": "%s"}}' % K1, "key id contains a control character"),
    ('{"keks": {"a\\u0000": "%s"}}' % K1, "\\u0000 is not allowed"),
    ('{"keks": {"a": "%s", "a": "%s"}, "default_key_id": "a"}' % (K1, K2), 'key id "a" appears twice'),
    ('{"keks": {"a": "%s"}, "keks": {}}' % K1, 'field "keks" appears twice'),
    ('{"keks": {"a": "%s"}, "kek_dir": "/tmp"}' % K1, 'either "keks" or "kek_dir", not both'),
    ('{"keks": {"a": "%s"}, "default_kek": "a"}' % K1, 'unknown field "default_kek"'),
    ('{"keks": {"a": "%s"}} x' % K1, "unexpected data after the value"),
    ('{"keks": {"a": "%s"},}' % K1, "expected a string"),
    ('{"keks": {"a": "%s"}' % K1, "unexpected end of input, expected '}'"),
    ('{"keks": {"a": "%s}}' % K1, "unterminated string"),
    ('{"keks": {"a": "%s"}, "default_key_id": "\\ud800"}' % K1, "lone high surrogate"),
    ('{"keks": {"a": "%s"}, "default_key_id": "\\x"}' % K1, "bad escape"),
    ('{"keks": tru}', "invalid JSON at byte 9: expected a value"),
    ('{"keks": {"a": nul}}', "invalid JSON at byte 15: expected a value"),
]


@pytest.mark.parametrize("config, reason", BAD_CONFIGS, ids=range(len(BAD_CONFIGS)))
def test_bad_config_is_rejected(tmp_path, config, reason):
    r = create_via_runner(tmp_path, config)
    secrets = [k for k in (K1, K2) if k in config] + [K1[:-1], K1[:-2]]
    assert_rejected(r, reason, *secrets)


def test_invalid_utf8_is_rejected(tmp_path):
    config = b'{"keks": {"\xff": "' + K1.encode() + b'"}}'
    assert_rejected(create_via_runner(tmp_path, config), "invalid UTF-8", K1)


def test_deeply_nested_input_does_not_crash(tmp_path):
    assert_rejected(create_via_runner(tmp_path, '{"keks": ' + "[" * 100000), '"keks" must be an object')


def test_good_inline_configs(tmp_path):
    for config in (
        {"keks": {"only": K1}},  # one key: it is the default
        {"keks": {"a": K1, "b": K2.upper()}, "default_key_id": "b"},
        {"keks": {"ключ/with spaces & ünïcode": K1}},
    ):
        r = create_via_runner(tmp_path, json.dumps(config))
        assert r.returncode == 0, r.stdout
        assert K1 not in r.text() and K2 not in r.text()


# ---- kek_dir --------------------------------------------------------------------

def write_key(path: Path, hex_key: str, mode: int = 0o600, ending: str = "\n") -> None:
    path.write_text(hex_key + ending)
    os.chmod(path, mode)


def test_kek_dir_passes_conformance(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    write_key(keys / "alpha.key", K1)
    write_key(keys / "beta-2.key", K2, ending="\r\n")
    write_key(keys / "gamma_3.key", random_kek(), ending="")
    (keys / ".hidden.key").write_text("not a key")  # hidden: ignored
    (keys / "README").write_text("not a key")  # other names: ignored
    (keys / "..data").mkdir()  # Kubernetes secret volume layout
    r = create_via_runner(tmp_path, json.dumps({"kek_dir": str(keys), "default_key_id": "beta-2"}))
    assert r.returncode == 0, r.stdout
    assert 'manager ready with 3 KEK(s), default key id "beta-2"' in r.stderr
    assert "accessible by group" not in r.stderr


def test_kek_dir_single_key_is_default_and_symlinks_work(tmp_path):
    keys, real = tmp_path / "keys", tmp_path / "real.key"
    keys.mkdir()
    write_key(real, K1)
    (keys / "linked.key").symlink_to(real)
    r = create_via_runner(tmp_path, json.dumps({"kek_dir": str(keys)}))
    assert r.returncode == 0, r.stdout
    assert 'default key id "linked"' in r.stderr


def test_kek_dir_warns_about_loose_permissions(tmp_path):
    keys = tmp_path / "keys"
    keys.mkdir()
    write_key(keys / "open.key", K1, mode=0o644)
    r = create_via_runner(tmp_path, json.dumps({"kek_dir": str(keys)}))
    assert r.returncode == 0
    assert "key file open.key is accessible by group or others (mode 644)" in r.stderr


def kek_dir_case(tmp_path: Path, name: str):
    keys = tmp_path / "keys"
    keys.mkdir()
    if name == "missing":
        return {"kek_dir": str(tmp_path / "absent")}, f"kek_dir {tmp_path}/absent: No such file or directory", None
    if name == "empty":
        (keys / "notes.txt").write_text("x")
        return {"kek_dir": str(keys)}, "holds no <key id>.key files", None
    if name == "short":
        write_key(keys / "a.key", K1[:-2])
        return {"kek_dir": str(keys)}, "a.key must be 64 hex characters", K1[:-2]
    if name == "long":
        write_key(keys / "a.key", K1 + "ab")
        return {"kek_dir": str(keys)}, "a.key must be 64 hex characters", K1
    if name == "two_newlines":
        write_key(keys / "a.key", K1, ending="\n\n")
        return {"kek_dir": str(keys)}, "a.key must be 64 hex characters", K1
    if name == "not_hex":
        write_key(keys / "a.key", "g" + K1[1:])
        return {"kek_dir": str(keys)}, "a.key contains a character that is not hex", K1[1:]
    if name == "bad_name":
        write_key(keys / "has space.key", K1)
        return {"kek_dir": str(keys)}, "key file name has space.key is not <id>.key", K1
    if name == "directory":
        (keys / "sub.key").mkdir()
        return {"kek_dir": str(keys)}, "sub.key is not a regular file", None
    if name == "traversal_default":
        write_key(keys / "a.key", K1)
        (tmp_path / "b.key").write_text(K2)
        return {"kek_dir": str(keys), "default_key_id": "../b"}, 'default_key_id "../b" is not one', K2
    if name == "two_without_default":
        write_key(keys / "a.key", K1)
        write_key(keys / "b.key", K2)
        return {"kek_dir": str(keys)}, "default_key_id is required", K1
    if name == "not_a_string":
        return {"kek_dir": ["x"]}, '"kek_dir" must be a string, got an array', None
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["missing", "empty", "short", "long", "two_newlines", "not_hex", "bad_name",
                                  "directory", "traversal_default", "two_without_default", "not_a_string"])
def test_bad_kek_dir_is_rejected(tmp_path, case):
    config, reason, secret = kek_dir_case(tmp_path, case)
    r = create_via_runner(tmp_path, json.dumps(config))
    assert_rejected(r, reason, *([secret] if secret else []))


# ---- wire format and key-id binding, through the host -----------------------

def test_wrapped_format_is_nonce_ciphertext_tag_with_key_id_aad(factory):
    mgr = factory.create(json.dumps({"keks": {"a": K1, "b": K2}, "default_key_id": "b"}).encode())
    try:
        plain = os.urandom(45)
        for key_id, aad, key in (("a", b"a", K1), ("b", b"b", K2), ("", b"b", K2)):
            wrapped = mgr.wrap(key_id, plain)
            assert len(wrapped) == 12 + len(plain) + 16
            nonce, body = wrapped[:12], wrapped[12:]
            assert AESGCM(bytes.fromhex(key)).decrypt(nonce, body, aad) == plain
            assert mgr.unwrap(key_id, wrapped) == plain
        # wrapping is randomized (fresh nonce each time)
        assert mgr.wrap("a", plain) != mgr.wrap("a", plain)
        # what the host's Python side produces, the plugin opens
        nonce = os.urandom(12)
        ours = nonce + AESGCM(bytes.fromhex(K1)).encrypt(nonce, plain, b"a")
        assert mgr.unwrap("a", ours) == plain
        # "" resolves to the default key id, also for unwrap
        assert mgr.unwrap("", mgr.wrap("b", plain)) == plain
        assert mgr.wrap("", b"") and mgr.unwrap("", mgr.wrap("", b"")) == b""
    finally:
        mgr.close()


def test_key_id_is_bound_even_with_equal_key_bytes(factory):
    mgr = factory.create(json.dumps({"keks": {"a": K1, "twin": K1}, "default_key_id": "a"}).encode())
    try:
        wrapped = mgr.wrap("a", b"secret private key")
        with pytest.raises(errors.CryptoError) as e:
            mgr.unwrap("twin", wrapped)
        assert "failed authentication" in str(e.value)
    finally:
        mgr.close()


def test_errors_map_to_host_exceptions(factory):
    mgr = factory.create(json.dumps({"keks": {"a": K1}}).encode())
    try:
        with pytest.raises(errors.NotFound, match='no KEK with key id "nope"'):
            mgr.wrap("nope", b"x")
        with pytest.raises(errors.NotFound):
            mgr.unwrap("nope", b"x" * 40)
        with pytest.raises(errors.CryptoError, match="shorter than nonce and tag"):
            mgr.unwrap("a", b"x" * 27)
        with pytest.raises(errors.CryptoError):
            mgr.unwrap("a", bytes(28))
        with pytest.raises(errors.Unimplemented):
            mgr.public_key("a")
        mgr.probe()
    finally:
        mgr.close()
    with pytest.raises(errors.InvalidArgument, match="must be 64 hex characters") as e:
        factory.create(json.dumps({"keks": {"a": K1[:-1]}}).encode())
    assert K1[:-1] not in str(e.value)


def test_inline_and_kek_dir_managers_interoperate(factory, tmp_path):
    write_key(tmp_path / "shared.key", K2)
    inline = factory.create(json.dumps({"keks": {"shared": K2}}).encode())
    from_dir = factory.create(json.dumps({"kek_dir": str(tmp_path)}).encode())
    try:
        assert from_dir.unwrap("", inline.wrap("shared", b"dek")) == b"dek"
        assert inline.unwrap("shared", from_dir.wrap("", b"dek")) == b"dek"
    finally:
        inline.close()
        from_dir.close()


def test_concurrent_calls_through_the_host(factory):
    mgr = factory.create(json.dumps({"keks": {"a": K1, "b": K2}, "default_key_id": "a"}).encode())
    failures = []

    def work(seed: int):
        for i in range(300):
            plain = os.urandom(1 + (seed * 31 + i) % 200)
            key_id = ("a", "b", "")[i % 3]
            if mgr.unwrap(key_id, mgr.wrap(key_id, plain)) != plain:
                failures.append((seed, i))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mgr.close()
    assert failures == []


def test_long_unicode_key_id_is_cut_on_a_character_boundary(factory):
    key_id = "é" * 60  # 120 bytes: a valid id, longer than error messages show
    with pytest.raises(errors.InvalidArgument) as e:
        factory.create(json.dumps({"keks": {key_id: K1[:10]}}, ensure_ascii=False).encode())
    message = str(e.value)
    assert "not valid UTF-8" not in message
    assert 'keks["' + "é" * 24 + '..."] must be 64 hex characters' in message
