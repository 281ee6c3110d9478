"""Post-quantum KAS keys in the key service and the CLI: generate, import, rotate (classical <-> PQ),
local and provider modes; no secret in repr or errors (issue 18)."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from host import crypto, errors, kem
from host.cli import main
from host.server.convert import ALGORITHMS
from tests.service.conftest import file_kek_config
from tests.conftest import PQC_VECTORS

PQ = list(crypto.KEMS)
VECTORS = PQC_VECTORS


def wrap_to(key, dek: bytes) -> bytes:
    pub = crypto.load_public_pem(key.public_key_pem, key.algorithm)
    return kem.wrap(pub, crypto.KEMS[key.algorithm], dek)


@pytest.mark.skipif(not VECTORS.exists(), reason="no vectors")
def test_vectors_known_answers_and_encodings():
    """Every OpenTDF case unwraps; the keys re-serialize to OpenTDF's exact PEMs; our own wrap has
    the vector's layout (lengths and offsets) and unwraps with the vector's private key."""
    doc = json.loads(VECTORS.read_text())
    assert sorted(a["algorithm"] for a in doc["algorithms"]) == sorted(PQ)
    for alg in doc["algorithms"]:
        spec = crypto.KEMS[alg["algorithm"]]
        assert spec.kao_type == alg["kao_type"]
        private = crypto.load_private_pem(alg["kas_private_key_pem"], spec.name)
        assert crypto.private_pem(private).decode() == alg["kas_private_key_pem"]
        assert crypto.public_pem(private) == alg["kas_public_key_pem"]
        for case in alg["cases"]:
            assert kem.unwrap(private, spec, bytes.fromhex(case["wrapped_hex"])).hex() == case["dek_hex"]
        with pytest.raises(errors.CryptoError):
            kem.unwrap(private, spec, bytes.fromhex(alg["tampered"]["tampered_wrapped_hex"]))
        dek = os.urandom(32)
        ours = kem.wrap(crypto.load_public_pem(alg["kas_public_key_pem"], spec.name), spec, dek)
        assert len(ours) == alg["cases"][0]["wrapped_len"]
        layout = alg["cases"][0]["wrapped_layout"]
        theirs = bytes.fromhex(alg["cases"][0]["wrapped_hex"])
        for field in layout:
            if "header" in field["field"]:  # DER headers identical; the rest is random per wrap
                o, n = field["offset"], field["length"]
                assert ours[o:o + n] == theirs[o:o + n], field
        assert kem.unwrap(private, spec, ours) == dek


@pytest.mark.parametrize("alg", PQ)
def test_no_secret_in_repr_or_errors(alg):
    private = crypto.generate_private_key(alg)
    seed = (private.mlkem if isinstance(private, kem.HybridPrivateKey) else private).private_bytes_raw()
    assert seed.hex() not in repr(private) and seed.hex()[:16] not in repr(private)
    other = "rsa:2048" if alg != "rsa:2048" else "ec:secp256r1"
    with pytest.raises(errors.InvalidArgument) as e:
        crypto.load_private_pem(crypto.private_pem(private), other)
    assert "PRIVATE" not in str(e.value) and seed.hex()[:16] not in str(e.value)


@pytest.mark.parametrize("alg", PQ)
def test_import_and_provider_mode(platform, file_kek_config_id, alg):
    pem = crypto.private_pem(crypto.generate_private_key(alg)).decode()
    key = platform.keys.create_key(None, f"imp-{alg}", alg, "provider", provider_config_id=file_kek_config_id,
                                   wrapping_key_id="b", private_key_pem=pem)
    assert key.public_key_pem == crypto.public_pem(crypto.load_private_pem(pem, alg))
    dek = os.urandom(32)
    assert platform.keys.unwrap(key.key_id, wrap_to(key, dek)) == dek
    with pytest.raises(errors.InvalidArgument, match="is not an"):  # a key of another type
        platform.keys.create_key(None, f"bad-{alg}", "mlkem:1024" if alg != "mlkem:1024" else "mlkem:768",
                                 "local", private_key_pem=pem)


def test_rotate_between_classical_and_post_quantum(platform):
    rsa_key = platform.keys.create_key(None, "c1", "rsa:2048", "local")
    rsa_wrapped = crypto.rsa_wrap(crypto.load_public_pem(rsa_key.public_key_pem, "rsa:2048"), b"r" * 32)
    pq, _ = platform.keys.rotate_key(None, "c1", "q1", algorithm="hpqt:secp256r1-mlkem768")
    pq_wrapped = wrap_to(pq, b"q" * 32)
    back, _ = platform.keys.rotate_key(None, "q1", "c2", algorithm="ec:secp256r1")
    assert back.algorithm == "ec:secp256r1"
    # old wraps keep working after each rotation
    assert platform.keys.unwrap("c1", rsa_wrapped) == b"r" * 32
    assert platform.keys.unwrap("q1", pq_wrapped) == b"q" * 32


def test_remote_kem_key_needs_a_manager_with_km_cap_kem(platform, file_kek_config_id):
    with pytest.raises(errors.InvalidArgument, match="manager 'file-kek' does not decapsulate mlkem:768 keys "
                                                     r"\(no KM_CAP_KEM\)"):
        platform.keys.create_key(None, "r-pq", "mlkem:768", "remote", provider_config_id=file_kek_config_id,
                                 wrapping_key_id="a")


@pytest.mark.parametrize("alg", PQ)
def test_remote_mode_round_trip_through_the_plugin_abi(platform, alg):
    """The remote keystore plugin decapsulates (keymanager.h KM_CAP_KEM); the host opens the DEK."""
    config = platform.store.providers.create(f"rk-{alg}", "remote-keystore", json.dumps({"keys": {"q": alg}}))
    key = platform.keys.create_key(None, f"r-{alg}", alg, "remote", provider_config_id=config.id,
                                   wrapping_key_id="q")
    assert key.private_key_ctx == {"key_id": "q"}  # no private key here
    wrapped = wrap_to(key, b"r" * 32)
    assert platform.keys.unwrap(key.key_id, wrapped) == b"r" * 32
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(errors.CryptoError):
        platform.keys.unwrap(key.key_id, tampered)
    spec = crypto.KEMS[alg]
    if spec.curve is not None:  # an ephemeral point off the curve never reaches the plugin
        ct, sealed = kem.split(wrapped, spec)
        bad = ct[:spec.ciphertext_len] + b"\x04" + bytes(spec.point_len - 1)
        envelope = kem._tlv(0x30, kem._tlv(0x80, bad) + kem._tlv(0x81, sealed))
        with pytest.raises(errors.InvalidArgument, match="ephemeral EC point is not on"):
            platform.keys.unwrap(key.key_id, envelope)
    # the good and the tampered blob each cost one decapsulation (the tag fails here, not in the
    # plugin: ML-KEM never refuses a ciphertext); the bad point cost none
    calls = {(r["manager"], r["op"], r["status"]): r["count"] for r in platform.keys.stats()["manager_calls"]}
    assert {k: v for k, v in calls.items() if k[0] == "remote-keystore"} == {("remote-keystore", "unwrap", "ok"): 2}


@pytest.mark.parametrize("alg", ["mlkem:768", "hpqt:secp384r1-mlkem1024"])
def test_wrong_length_ciphertext_is_invalid_argument(platform, alg):
    key = platform.keys.create_key(None, f"w-{alg}", alg, "local")
    spec = crypto.KEMS[alg]
    ct, sealed = kem.split(wrap_to(key, b"d" * 32), spec)
    for bad in (ct[:-1], ct + b"\x00"):
        with pytest.raises(errors.InvalidArgument, match=f"{alg} KEM ciphertext must be "
                                                         f"{spec.ciphertext_len + spec.point_len} bytes"):
            platform.keys.unwrap(key.key_id, kem._tlv(0x30, kem._tlv(0x80, bad) + kem._tlv(0x81, sealed)))
    with pytest.raises(errors.InvalidArgument, match="sealed DEK is shorter"):
        platform.keys.unwrap(key.key_id, kem._tlv(0x30, kem._tlv(0x80, ct) + kem._tlv(0x81, b"x" * 27)))
    with pytest.raises(errors.InvalidArgument, match="bytes after its two fields"):
        platform.keys.unwrap(key.key_id, kem._tlv(0x30, kem._tlv(0x80, ct) + kem._tlv(0x81, sealed) + b"\x00\x00"))


@pytest.fixture
def cli(sqlite_db_url, root_key_hex, file_kek_plugin):
    runner = CliRunner()
    base = ["--db", sqlite_db_url, "--key-manager-plugin", str(file_kek_plugin)]

    def run(*args):
        r = runner.invoke(main, base + [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r

    run("policy", "kas-registry", "create", "--uri", "https://kas.example.com", "--name", "kas1")
    return run


@pytest.mark.parametrize("alg", ["mlkem:1024", "hpqt:secp256r1-mlkem768"])
def test_cli_create_wrap_unwrap_rotate(cli, tmp_path, alg):
    cfg = json.loads(cli("policy", "keymanagement", "provider", "create", "--name", "fk", "--manager", "file-kek",
                         "--config", json.dumps(file_kek_config("a", "b")), "--json").stdout)
    for mode, extra in (("local", ["--wrapping-key-id", "root"]),
                        ("provider", ["--provider-config-id", cfg["id"], "--wrapping-key-id", "b"])):
        kid = f"{mode}-pq"
        out = json.loads(cli("policy", "kas-registry", "key", "create", "--kas", "kas1", "--key-id", kid,
                             "--algorithm", alg, "--mode", mode, *extra, "--json").stdout)
        assert ALGORITHMS[out["key"]["key_algorithm"]] == alg  # --json as otdfctl: a number
        dek = os.urandom(32)
        (tmp_path / "dek.bin").write_bytes(dek)
        cli("kas", "wrap", "--kid", kid, "--in", tmp_path / "dek.bin", "--out", tmp_path / "w.json")
        cli("policy", "kas-registry", "key", "rotate", "--kas", "kas1", "--key", kid, "--key-id", f"{mode}-rsa",
            "--algorithm", "rsa:2048", "--mode", mode, *extra)
        cli("kas", "unwrap", "--in", tmp_path / "w.json", "--out", tmp_path / "out.bin")
        assert (tmp_path / "out.bin").read_bytes() == dek
        assert "BEGIN PUBLIC KEY" in cli("kas", "public-key", "--kid", kid).stdout


@pytest.mark.parametrize("alg", ["mlkem:768", "hpqt:secp256r1-mlkem768"])
def test_envelope_fast_path_and_general_parse_agree(alg):
    """split() recognizes a 32-byte DEK's envelope whole (docs/performance.md); other DEK sizes take
    the field-by-field parse, and a fixed-layout envelope with any header byte changed is refused."""
    spec = crypto.KEMS[alg]
    private = kem.generate(spec)
    for n in (16, 32, 64, 200):  # 200: the [1] field's length in long form
        dek = os.urandom(n)
        assert kem.unwrap(private, spec, kem.wrap(private.public_key(), spec, dek)) == dek
    envelope = kem.wrap(private.public_key(), spec, b"k" * 32)
    ct_end = len(envelope) - 62
    for at in (0, 1, 2, 3, 4, 5, 6, 7, ct_end, ct_end + 1):
        bad = bytearray(envelope)
        bad[at] ^= 0x01
        with pytest.raises(errors.InvalidArgument):
            kem.split(bytes(bad), spec)
