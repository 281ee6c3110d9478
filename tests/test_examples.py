"""The plugin-author templates in examples/ (C, Go, Rust), issue 7 item 3.

Each template must build with its make target, pass build/km-conformance,
load through the Python host and round-trip, produce the documented format
(nonce(12) || ciphertext || tag(16), AAD = key id; checked with Python's
`cryptography`), interoperate with the other two, refuse bad input with the
right status and no key material in the message, and stay clean under the
sanitizer runner.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from host import errors
from host.loader import load_plugins
from tests.make import make

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build"
RUNNER = BUILD / "km-conformance"
LANGS = ("c", "go", "rust")
PLATFORM = Path(sys.executable).parent / "platform"


def so_path(lang: str) -> Path:
    return BUILD / "examples" / f"example-{lang}-manager.so"


@pytest.fixture(scope="module", autouse=True)
def built():
    """The three templates and the runner, as `make test` builds them before pytest starts (tests
    do not run make themselves: that would write into build/ while others use it)."""
    missing = [str(p.relative_to(ROOT)) for p in (*map(so_path, LANGS), RUNNER) if not p.is_file()]
    if missing:
        pytest.fail(f"missing build output(s) {', '.join(missing)}: run `make examples plugins` first "
                    "(`make test` does)")


@pytest.fixture(scope="module")
def keks() -> dict[str, bytes]:
    return {"alpha": secrets.token_bytes(32), "beta": secrets.token_bytes(32)}


def config_for(keks: dict[str, bytes], default: str = "alpha") -> bytes:
    return json.dumps({"keks": {k: v.hex() for k, v in keks.items()}, "default_key_id": default}).encode()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, keks) -> Path:
    path = tmp_path_factory.mktemp("examples") / "config.json"
    path.write_bytes(config_for(keks))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def plugins():
    """All three loaded side by side in this process."""
    loaded = load_plugins([str(so_path(lang)) for lang in LANGS])
    return {lang: p for lang, p in zip(LANGS, loaded)}


@pytest.fixture
def managers(plugins, keks):
    made = {lang: p.factories[0].create(config_for(keks)) for lang, p in plugins.items()}
    yield made
    for m in made.values():
        m.close()


# ---- build output ------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_build_output_exports_the_entry_point(lang):
    path = so_path(lang)
    assert path.is_file()
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(path)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert "km_plugin_init" in symbols
    if lang in ("c", "rust"):  # everything else is hidden (Go exports its cgo glue too)
        exported = [s for s in symbols if s not in ("T", "D", "B", "R", "W") and not s.startswith("0")]
        assert exported == ["km_plugin_init"], exported


# ---- the conformance runner ---------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
def test_conformance_runner_passes(lang, config_file):
    proc = subprocess.run([str(RUNNER), str(so_path(lang)), str(config_file)], capture_output=True, text=True,
                          timeout=300)
    lines = proc.stdout.strip().splitlines()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines[-1].endswith(" 0 failed"), lines[-1]
    assert not [line for line in lines if line.startswith("FAIL")]
    # The runner's own checks saw the manager under its own name.
    assert f"factory[example-{lang}]" in proc.stdout


@pytest.mark.parametrize("lang", LANGS)
def test_conformance_runner_fails_on_a_config_the_plugin_refuses(lang, tmp_path, keks):
    # A check that can fail: the same plugin with a config naming a missing default.
    bad = tmp_path / "bad.json"
    bad.write_bytes(config_for(keks, default="gamma"))
    proc = subprocess.run([str(RUNNER), str(so_path(lang)), str(bad)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "default_key_id names no KEK" in proc.stdout
    for key in keks.values():
        assert key.hex() not in proc.stdout + proc.stderr


def test_sanitizer_run_is_clean_for_the_examples():
    """make sanitize, restricted to the three templates' pairs (see their example.mk)."""
    asan = "build/asan"  # as the Makefile names its targets (make runs in ROOT), so make builds them
    pairs = [f"{asan}/plugins/example-c-manager.so={asan}/example-c.json",
             f"{asan}/plugins/example-go-manager.so={asan}/example-go.json",
             f"{so_path('rust')}={asan}/example-rust.json"]
    proc = make("sanitize", SANITIZE_ITERATIONS="500", SANITIZE_PLUGINS=" ".join(pairs))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("sanitize: ok ") == 3, proc.stdout


# ---- through the Python host ------------------------------------------------

# C and Go include keymanager.h (1.1); the Rust template declares the 1.0 layout itself and
# shows that a 1.0 plugin keeps working with a 1.1 host.
TEMPLATE_ABI = {"c": "1.1", "go": "1.1", "rust": "1.0"}


@pytest.mark.parametrize("lang", LANGS)
def test_host_loads_the_descriptor(plugins, lang):
    p = plugins[lang]
    assert p.name == f"example-{lang}" and p.version == "1.0.0" and p.abi_version == TEMPLATE_ABI[lang]
    (factory,) = p.factories
    assert factory.name == f"example-{lang}"
    assert factory.thread_safe
    assert factory.describe()["capabilities"] == ["wrap", "unwrap", "probe"]


@pytest.mark.parametrize("lang", LANGS)
def test_host_round_trip(managers, keks, lang):
    m = managers[lang]
    m.probe()
    for plain in (b"", b"k", secrets.token_bytes(32), secrets.token_bytes(5000)):
        wrapped = m.wrap("", plain)
        assert len(wrapped) == 12 + len(plain) + 16
        assert m.unwrap("", wrapped) == plain
        assert m.unwrap("alpha", wrapped) == plain  # "" means default_key_id
    wrapped = m.wrap("beta", b"under beta")
    assert m.unwrap("beta", wrapped) == b"under beta"
    assert m.wrap("", b"same") != m.wrap("", b"same")  # a fresh nonce each time


@pytest.mark.parametrize("lang", LANGS)
def test_format_is_aes_gcm_with_the_key_id_as_aad(managers, keks, lang):
    m = managers[lang]
    plain = secrets.token_bytes(48)
    wrapped = m.wrap("", plain)
    assert AESGCM(keks["alpha"]).decrypt(wrapped[:12], wrapped[12:], b"alpha") == plain
    wrapped = m.wrap("beta", plain)
    assert AESGCM(keks["beta"]).decrypt(wrapped[:12], wrapped[12:], b"beta") == plain
    nonce = secrets.token_bytes(12)
    theirs = nonce + AESGCM(keks["beta"]).encrypt(nonce, plain, b"beta")
    assert m.unwrap("beta", theirs) == plain


def test_the_three_templates_interoperate(managers):
    plain = secrets.token_bytes(64)
    for src in LANGS:
        wrapped = managers[src].wrap("beta", plain)
        for dst in LANGS:
            assert managers[dst].unwrap("beta", wrapped) == plain, (src, dst)


@pytest.mark.parametrize("lang", LANGS)
def test_unknown_key_is_not_found(managers, lang):
    m = managers[lang]
    wrapped = m.wrap("", b"x")
    with pytest.raises(errors.NotFound, match='no KEK named "gamma"'):
        m.wrap("gamma", b"x")
    with pytest.raises(errors.NotFound, match='no KEK named "gamma"'):
        m.unwrap("gamma", wrapped)


@pytest.mark.parametrize("lang", LANGS)
def test_tampering_and_the_wrong_kek_are_crypto_errors(managers, lang):
    m = managers[lang]
    wrapped = m.wrap("alpha", b"secret")
    for i in (0, 12, len(wrapped) - 1):  # nonce, ciphertext, tag
        bad = bytearray(wrapped)
        bad[i] ^= 1
        with pytest.raises(errors.CryptoError, match="failed to authenticate"):
            m.unwrap("alpha", bytes(bad))
    with pytest.raises(errors.CryptoError):
        m.unwrap("beta", wrapped)  # other KEK, other AAD


@pytest.mark.parametrize("lang", LANGS)
def test_short_input_is_invalid_argument(managers, lang):
    with pytest.raises(errors.InvalidArgument, match="at least 28"):
        managers[lang].unwrap("", b"\0" * 27)


@pytest.mark.parametrize("lang", LANGS)
def test_no_public_key(managers, lang):
    with pytest.raises(errors.Unimplemented):
        managers[lang].public_key("")


def _bad_configs(keks):
    a = keks["alpha"].hex()
    return [
        (b"", "JSON"),
        (b"not json", "JSON"),
        (b"[1, 2]", "JSON object"),
        (b"{}", "at least one KEK"),
        (b'{"keks": {}, "default_key_id": "a"}', "at least one KEK"),
        (b'{"keks": "x", "default_key_id": "a"}', "keks"),
        (json.dumps({"keks": {"a": a[:-2]}, "default_key_id": "a"}).encode(), "64 hex characters"),
        (json.dumps({"keks": {"a": a[:-1] + "g"}, "default_key_id": "a"}).encode(), "64 hex characters"),
        (json.dumps({"keks": {"a": 5}, "default_key_id": "a"}).encode(), "keks"),
        (json.dumps({"keks": {"a": a}}).encode(), "default_key_id"),
        (json.dumps({"keks": {"a": a}, "default_key_id": "b"}).encode(), "default_key_id names no KEK"),
        (json.dumps({"keks": {"a": a}, "default_key_id": "a", "pin": a}).encode(), 'unknown field "pin"'),
        (('{"keks": {"a": "%s", "a": "%s"}, "default_key_id": "a"}' % (a, a)).encode(), "appears twice"),
        (json.dumps({"keks": {"a": a}, "default_key_id": "a"}).encode() + b" trailing", "JSON"),
        (json.dumps({"keks": {"a": a}, "default_key_id": "a"}).encode()[:-1], "JSON"),
        (json.dumps({"keks": {"": a}, "default_key_id": ""}).encode(), "KEK ids"),
    ]


@pytest.mark.parametrize("lang", LANGS)
def test_bad_config_is_invalid_argument_without_key_material(plugins, keks, lang):
    factory = plugins[lang].factories[0]
    for config, expected in _bad_configs(keks):
        with pytest.raises(errors.InvalidArgument) as info:
            factory.create(config)
        message = str(info.value)
        assert expected in message, (config[:40], message)
        assert "\n" not in message
        for key in keks.values():
            assert key.hex() not in message and key.hex()[:16] not in message


@pytest.mark.parametrize("lang", LANGS)
def test_concurrent_calls_from_many_threads(managers, lang):
    m = managers[lang]
    problems = []

    def worker(n):
        try:
            for i in range(200):
                plain = bytes([n, i % 256]) * 16
                key = "alpha" if i % 2 else "beta"
                if m.unwrap(key, m.wrap(key, plain)) != plain:
                    problems.append((n, i))
        except Exception as exc:  # collected and asserted below
            problems.append(repr(exc))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert problems == []


@pytest.mark.parametrize("lang", LANGS)
def test_closed_manager_refuses_calls(plugins, keks, lang):
    m = plugins[lang].factories[0].create(config_for(keks))
    m.close()
    m.close()
    with pytest.raises(errors.Unavailable):
        m.wrap("", b"x")


# ---- the CLI ------------------------------------------------------------------

def test_cli_inspects_and_loads_all_three(tmp_path):
    env = {**os.environ, "PLATFORM_DB_URL": f"sqlite:///{tmp_path}/p.db"}
    for lang in LANGS:
        proc = subprocess.run([str(PLATFORM), "plugins", "inspect", "--json", str(so_path(lang))],
                              capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        info = json.loads(proc.stdout)
        assert info["plugin"] == f"example-{lang}" and info["abi_version"] == TEMPLATE_ABI[lang]
        assert [m["name"] for m in info["managers"]] == [f"example-{lang}"]
    args = [f"--key-manager-plugin={so_path(lang)}" for lang in LANGS]
    proc = subprocess.run([str(PLATFORM), *args, "plugins", "list", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = {m["name"] for m in json.loads(proc.stdout)["managers"]}
    assert {"example-c", "example-go", "example-rust"} <= names


@pytest.mark.parametrize("lang", ["go"])  # one is enough here: the host path is shared; Go is the odd runtime
def test_cli_provider_mode_key_round_trips_a_dek(tmp_path, lang):
    """The docs' walk-through: provider config -> provider-mode KAS key -> wrap/unwrap a DEK."""
    root_key = tmp_path / "root.key"
    root_key.write_text(secrets.token_hex(32))
    kek_file = tmp_path / "kek.json"
    kek_file.write_text(json.dumps({"keks": {"kek-1": secrets.token_hex(32)}, "default_key_id": "kek-1"}))
    env = {**os.environ, "PLATFORM_DB_URL": f"sqlite:///{tmp_path}/p.db", "PLATFORM_ROOT_KEY_FILE": str(root_key)}
    plugin = f"--key-manager-plugin={so_path(lang)}"

    def platform(*args: str) -> str:
        proc = subprocess.run([str(PLATFORM), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120)
        assert proc.returncode == 0, f"platform {' '.join(args)}:\n{proc.stderr}"
        return proc.stdout

    platform("db", "upgrade")
    created = json.loads(platform(plugin, "policy", "keymanagement", "provider", "create", "--name", "my-kek",
                                  "--manager", f"example-{lang}", "--config", f"@{kek_file}", "--validate",
                                  "--json"))
    platform("policy", "kas-registry", "create", "-u", "https://kas.example.com", "-n", "kas1")
    platform(plugin, "policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", "k1", "-a", "rsa:2048",
             "-m", "provider", "-p", created["id"], "--wrapping-key-id", "kek-1")
    dek = secrets.token_bytes(32)
    (tmp_path / "dek.bin").write_bytes(dek)
    platform("kas", "wrap", "--kid", "k1", "--in", "dek.bin", "--out", "wrapped.json")
    platform(plugin, "kas", "unwrap", "--in", "wrapped.json", "--out", "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == dek
