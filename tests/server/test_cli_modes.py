"""The admin CLI in both of its modes against one real `platform serve` (issue 15, the admin CLI 2).

Every case runs twice: `--db URL` (the server's handlers in the CLI's process, on the
served database) and `--host URL --with-access-token T` (over Connect, no root key
and no database on the CLI's side). The names follow otdfctl's e2e cases
(provider-config.bats, kas-registry.bats, kas-keys.bats, key-base.bats).
"""

from __future__ import annotations

import base64
import json
import secrets

import pytest
from click.testing import CliRunner

from host import crypto
from host.cli import main
from host.server.convert import ALGORITHMS, KEY_MODES, KEY_STATUSES
from tests.server.conftest import ROOT, start_server

# --json is otdfctl's: Go's encoding/json of the proto structs (host.cli.gojson), so enums are numbers
ALG = {name: n for n, name in ALGORITHMS.items()}
MODE = {name: n for n, name in KEY_MODES.items()}
STATUS = {name: n for n, name in KEY_STATUSES.items()}

FILE_KEK = ROOT / "build" / "plugins" / "file-kek-manager.so"

P = ("policy", "keymanagement", "provider-config")
KAS = ("policy", "kas-registry")
KEY = ("policy", "kas-registry", "key")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli-modes")
    assert FILE_KEK.exists(), "run `make plugins` first (make test does)"
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}", plugins=(str(FILE_KEK),))
    s.extra["db_url"] = s.env["PLATFORM_DB_URL"]
    yield s
    s.stop()


class Cli:
    def __init__(self, served, mode: str):
        self.served, self.mode = served, mode
        self.runner = CliRunner()
        if mode == "db":
            self.base = ["--db", served.extra["db_url"]]
            self.env = {"PLATFORM_ROOT_KEY": served.root_key_hex}  # direct mode: the node's own secrets
        else:
            self.base = ["--host", served.url, "--with-access-token", served.admin_token]
            self.env = {"PLATFORM_ROOT_KEY": None}  # nothing secret on the operator's machine but the token

    def __call__(self, *args, ok=True, plugins=()):
        r = self.runner.invoke(main, [*self.base, *(f"--key-manager-plugin={p}" for p in plugins), *map(str, args)],
                               env=self.env)
        exc = r.exception
        # What `platform` prints for a PlatformError (host.cli.run), or click's usage error.
        r.text = r.output + (f"error: {exc.message} [{exc.code}]" if hasattr(exc, "code") and hasattr(exc, "message")
                             else "")
        if ok:
            assert r.exit_code == 0, r.text
        else:
            assert r.exit_code != 0, r.output
        assert self.served.admin_token not in r.output  # a token is never echoed
        return r

    def json(self, *args):
        return json.loads(self(*args, "--json").stdout)


@pytest.fixture(params=["db", "host"])
def cli(request, served, monkeypatch):
    for name in [k for k in __import__("os").environ if k.startswith("PLATFORM_")]:
        monkeypatch.delenv(name)
    return Cli(served, request.param)


@pytest.fixture
def uid():
    return secrets.token_hex(3)


@pytest.fixture
def kas(cli, uid):
    return cli.json(*KAS, "create", "--uri", f"https://kas-{uid}.example.com", "--name", f"kas-{uid}")


def local_key(cli, kas, kid, *extra, algorithm="rsa:2048"):
    return cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", kid, "--algorithm", algorithm, "--mode", "local",
                    "--wrapping-key-id", "root", "--wrapping-key", cli.served.root_key_hex, *extra)


def pem_b64(algorithm="rsa:2048"):
    return base64.b64encode(crypto.public_pem(crypto.generate_private_key(algorithm)).encode()).decode()


# ---- both modes, one answer -------------------------------------------------------

def test_host_mode_goes_over_the_api(served, monkeypatch, uid):
    for name in [k for k in __import__("os").environ if k.startswith("PLATFORM_")]:
        monkeypatch.delenv(name)
    cli = Cli(served, "host")
    cli(*KAS, "create", "--uri", f"https://wire-{uid}.example.com", "--name", f"wire-{uid}")
    assert "/policy.kasregistry.KeyAccessServerRegistryService/CreateKeyAccessServer" in \
        served.wait_for_log("CreateKeyAccessServer")
    # The same auth as any client: a wrong token is refused, and not echoed.
    wrong = secrets.token_urlsafe(16)
    r = CliRunner().invoke(main, ["--host", served.url, "--with-access-token", wrong, *KAS, "list"])
    assert r.exit_code != 0 and r.exception.code == "unauthenticated" and wrong not in r.output + str(r.exception)
    r = CliRunner().invoke(main, ["--host", served.url, "--db", "sqlite:///x.db", *KAS, "list"])
    assert r.exit_code != 0 and "not both" in r.output


BAD_INPUT = [
    (*P, "create", "--name", "x", "--manager", "m"),
    (*P, "get", "--id", "not-a-uuid"),
    (*P, "get", "--manager", "m"),
    (*P, "create", "--name", "", "--manager", "m", "--config", "{}"),
    (*KAS, "create", "--uri", "not a uri"),
    (*KAS, "create", "--uri", "https://ok.example.com", "--name", "bad name!"),
    (*KAS, "update", "--id", "00000000-0000-4000-8000-000000000000", "--name", "x"),
    (*KEY, "get", "--key", "00000000-0000-4000-8000-000000000000"),
    (*KEY, "create", "--kas", "no-such-kas", "--key-id", "k", "-a", "rsa:2048", "-m", "public_key", "-e", "x"),
    (*KEY, "unsafe", "delete", "--id", "nope", "--key-id", "k", "--kas-uri", "https://x", "--force"),
]


def test_errors_are_the_same_in_both_modes(served, monkeypatch):
    for name in [k for k in __import__("os").environ if k.startswith("PLATFORM_")]:
        monkeypatch.delenv(name)
    db, host = Cli(served, "db"), Cli(served, "host")
    for args in BAD_INPUT:
        a, b = db(*args, ok=False), host(*args, ok=False)
        # the error line (direct mode may also warn about this node's plugins)
        assert a.text.splitlines()[-1] == b.text.splitlines()[-1] and a.exit_code == b.exit_code, args


# ---- provider-config.bats ---------------------------------------------------------

def test_fail_to_create_provider_configuration_without_config(cli, uid):
    assert "--config" in cli(*P, "create", "--name", f"p-{uid}", "--manager", "m", ok=False).text


def test_fail_to_create_provider_configuration_with_invalid_config(cli, uid):
    assert "not valid JSON" in cli(*P, "create", "--name", f"p-{uid}", "--manager", "m", "--config", "{x",
                                   ok=False).text


def test_create_get_list_update_delete_provider_configuration(cli, uid):
    made = cli.json(*P, "create", "--name", f"P-{uid}", "--manager", "aws-kms", "--config", '{"region": "r"}',
                    "--label", "a=1")
    assert (made["name"], made["manager"]) == (f"p-{uid}", "aws-kms")
    assert base64.b64decode(made["config_json"]) == b'{"region": "r"}'
    assert cli.json(*P, "get", "--id", made["id"]) == made
    assert cli.json(*P, "get", "--name", f"p-{uid}", "--manager", "aws-kms") == made
    assert cli.json(*P, "get", "--name", f"p-{uid}") == made  # the seed document's form
    listed = cli.json(*P, "list", "--limit", "1000")
    assert made in listed["provider_configs"]
    up = cli.json(*P, "update", "--id", made["id"], "--config", '{"region": "s"}', "--label", "b=2",
                  "--extend-labels")
    assert base64.b64decode(up["config_json"]) == b'{"region": "s"}' and up["metadata"]["labels"] == {"a": "1", "b": "2"}
    gone = cli.json(*P, "delete", "--id", made["id"], "--force")
    assert gone is None  # otdfctl's delete: ExitWithJSON(nil)
    assert "not found" in cli(*P, "get", "--id", made["id"], ok=False).text


def test_fail_to_get_provider_configuration_with_non_existent_name(cli, uid):
    assert "[not_found]" in cli(*P, "get", "--name", f"none-{uid}", ok=False).text
    assert "[not_found]" in cli(*P, "get", "--name", f"none-{uid}", "--manager", "m", ok=False).text


def test_fail_to_update_provider_configuration_missing_id(cli):
    assert "--id" in cli(*P, "update", "--name", "x", ok=False).text


def test_delete_provider_configuration_fail_no_force(cli, uid):
    made = cli.json(*P, "create", "--name", f"nf-{uid}", "--manager", "m", "--config", "{}")
    r = cli(*P, "delete", "--id", made["id"], ok=False)  # asks, and stdin says no (README: otdfctl refuses)
    assert "Delete provider config" in r.output and "Aborted" in r.output
    assert cli.json(*P, "get", "--id", made["id"])["id"] == made["id"]


# ---- kas-registry.bats ------------------------------------------------------------

def test_create_kas_registration_with_invalid_uri_fails(cli):
    assert "[uri_format]" in cli(*KAS, "create", "--uri", "no-scheme here", ok=False).text


def test_create_kas_registration_with_duplicate_uri_fails(cli, kas):
    assert "[already_exists]" in cli(*KAS, "create", "--uri", kas["uri"], ok=False).text


def test_create_kas_registration_with_duplicate_name_fails(cli, kas):
    assert "[already_exists]" in cli(*KAS, "create", "--uri", "https://other-" + kas["name"] + ".example.com",
                                     "--name", kas["name"], ok=False).text


def test_create_kas_registration_with_invalid_name_fails(cli, uid):
    assert "[kas_name_format]" in cli(*KAS, "create", "--uri", f"https://n-{uid}.example.com", "--name", "-bad-",
                                      ok=False).text


def test_update_registered_kas(cli, kas, uid):
    up = cli.json(*KAS, "update", "--id", kas["id"], "--uri", f"https://moved-{uid}.example.com", "--label", "x=1")
    assert up["uri"] == f"https://moved-{uid}.example.com" and up["metadata"]["labels"] == {"x": "1"}
    assert cli.json(*KAS, "get", "--id", kas["id"]) == up
    assert cli.json(*KAS, "get", up["uri"]) == up and cli.json(*KAS, "get", "--name", kas["name"]) == up


def test_update_registered_kas_with_invalid_uri_fails(cli, kas):
    assert "[optional_uri_format]" in cli(*KAS, "update", "--id", kas["id"], "--uri", "bad uri", ok=False).text


def test_list_registered_kases(cli, kas):
    listed = cli.json(*KAS, "list", "--limit", "1000")
    assert kas in listed["key_access_servers"]
    assert "Total:" in cli(*KAS, "list").stdout


def test_delete_registered_kas(cli, kas):
    cli(*KAS, "delete", "--id", kas["id"], "--force")
    assert "[not_found]" in cli(*KAS, "get", "--id", kas["id"], ok=False).text


# ---- kas-keys.bats ----------------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["rsa:2048", "ec:secp256r1", "hpqt:secp256r1-mlkem768",
                                       "hpqt:secp384r1-mlkem1024", "mlkem:768", "mlkem:1024"])
def test_kas_keys_create_key_local_mode(cli, kas, uid, algorithm):
    made = local_key(cli, kas, f"l-{uid}", algorithm=algorithm)
    assert (made["kas_id"], made["key"]["key_mode"], made["key"]["key_algorithm"]) == \
        (kas["id"], MODE["local"], ALG[algorithm])
    assert made["key"]["private_key_ctx"]["key_id"] == "root" and made["key"]["private_key_ctx"]["wrapped_key"]
    pem = base64.b64decode(made["key"]["public_key_ctx"]["pem"]).decode()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_kas_keys_create_key_public_key_mode(cli, kas, uid):
    pem = pem_b64()
    made = cli.json(*KEY, "create", "--kas", kas["name"], "--key-id", f"pk-{uid}", "-a", "rsa:2048",
                    "-m", "public_key", "--public-key-pem", pem)
    assert made["key"]["public_key_ctx"]["pem"] == pem and "private_key_ctx" not in made["key"]  # unset: omitted


def test_kas_keys_create_key_with_labels(cli, kas, uid):
    made = local_key(cli, kas, f"lb-{uid}", "--label", "owner=team-a", "--label", "env=prod")
    assert made["key"]["metadata"]["labels"] == {"owner": "team-a", "env": "prod"}


def test_kas_keys_create_key_local_mode_missing_wrapping_key(cli, kas, uid):
    # otdfctl wraps with --wrapping-key. Without it the CLI wraps with the root key of its own process:
    # direct mode has the node's; over --host there is none, so nothing is sent.
    args = (*KEY, "create", "--kas", kas["id"], "--key-id", f"nw-{uid}", "-a", "rsa:2048", "-m", "local",
            "--wrapping-key-id", "root")
    if cli.mode == "host":
        r = cli(*args, ok=False)
        assert "--wrapping-key" in r.text and "[failed_precondition]" in r.text
    else:
        assert cli.json(*args)["key"]["private_key_ctx"]["key_id"] == "root"


def test_kas_keys_create_key_public_key_mode_missing_pem(cli, kas, uid):
    assert "[invalid_argument]" in cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"np-{uid}", "-a", "rsa:2048",
                                       "-m", "public_key", ok=False).text


def test_kas_keys_create_key_remote_mode_missing_provider_config_id(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"rm-{uid}", "-a", "rsa:2048", "-m", "remote",
            "--wrapping-key-id", "w", "-e", pem_b64(), ok=False)
    assert "Flag '--provider-config-id' is required" in r.text and "[invalid_argument]" in r.text  # otdfctl's check


def test_kas_keys_create_key_public_key_mode_ec_key_with_rsa_algorithm(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"ec-{uid}", "-a", "rsa:2048", "-m", "public_key",
            "-e", pem_b64("ec:secp256r1"), ok=False)
    assert "[invalid_argument]" in r.text


def test_kas_keys_create_key_invalid_kas_identifier(cli, uid):
    r = cli(*KEY, "create", "--kas", f"nokas-{uid}", "--key-id", "k", "-a", "rsa:2048", "-m", "public_key",
            "-e", pem_b64(), ok=False)
    assert "[not_found]" in r.text
    # otdfctl's words, in both modes (direct mode raises in this process; --host reads the server's)
    assert f"Failed to resolve KAS identifier 'nokas-{uid}': not_found: resource not found" in r.text


def test_kas_keys_create_key_duplicate_key_id(cli, kas, uid):
    local_key(cli, kas, f"d-{uid}")
    assert "[already_exists]" in cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"d-{uid}", "-a", "rsa:2048",
                                     "-m", "public_key", "-e", pem_b64(), ok=False).text


def test_kas_keys_create_key_invalid_hex_encoded_wrapping_key(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"hx-{uid}", "-a", "rsa:2048", "-m", "local",
            "--wrapping-key-id", "root", "--wrapping-key", "zz-not-hex", ok=False)
    assert "--wrapping-key" in r.text


def test_kas_keys_create_key_wrong_wrapping_key_is_refused_by_the_server(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"wk-{uid}", "-a", "rsa:2048", "-m", "local",
            "--wrapping-key-id", "root", "--wrapping-key", secrets.token_hex(32), ok=False)
    assert "root key" in r.text and "[invalid_argument]" in r.text


def test_kas_keys_get_key_by_system_id_and_by_key_id_with_kas_id_name_uri(cli, kas, uid):
    made = local_key(cli, kas, f"g-{uid}")
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made
    for ref in (kas["id"], kas["name"], kas["uri"]):
        assert cli.json(*KEY, "get", "--key", f"g-{uid}", "--kas", ref) == made


def test_kas_keys_get_key_not_found_by_system_id(cli):
    assert "[not_found]" in cli(*KEY, "get", "--key", "6b1f4c5e-0000-4000-8000-000000000000", ok=False).text


def test_kas_keys_get_key_not_found_by_user_key_id_and_kas(cli, kas, uid):
    assert "[not_found]" in cli(*KEY, "get", "--key", f"none-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_update_key_labels_add_and_replace(cli, kas, uid):
    made = local_key(cli, kas, f"u-{uid}", "--label", "a=1")
    added = cli.json(*KEY, "update", "--id", made["key"]["id"], "--label", "b=2")
    assert added["key"]["metadata"]["labels"] == {"a": "1", "b": "2"}
    replaced = cli.json(*KEY, "update", "--id", made["key"]["id"], "--label", "c=3", "--force-replace-labels")
    assert replaced["key"]["metadata"]["labels"] == {"c": "3"}


def test_kas_keys_update_key_not_found(cli):
    assert "[not_found]" in cli(*KEY, "update", "--id", "6b1f4c5e-0000-4000-8000-000000000000", "--label", "a=1",
                                ok=False).text


def test_kas_keys_list_keys_filter_by_kas_and_algorithm_and_pagination(cli, kas, uid):
    a = local_key(cli, kas, f"la-{uid}")
    b = local_key(cli, kas, f"lb-{uid}", algorithm="ec:secp256r1")
    for ref in (kas["id"], kas["name"], kas["uri"]):
        listed = cli.json(*KEY, "list", "--kas", ref)
        assert [k["key"]["key_id"] for k in listed["kas_keys"]] == [f"lb-{uid}", f"la-{uid}"]  # newest first
    only_rsa = cli.json(*KEY, "list", "--kas", kas["id"], "--algorithm", "rsa:2048")
    assert only_rsa["kas_keys"] == [a]
    page = cli.json(*KEY, "list", "--kas", kas["id"], "--limit", "1", "--offset", "1")
    assert page["kas_keys"] == [a] and page["pagination"] == {"current_offset": 1, "total": 2}  # next_offset 0: omitted
    assert b in cli.json(*KEY, "list", "--kas", kas["id"])["kas_keys"]


def test_kas_keys_list_legacy_keys(cli, kas, uid):
    legacy = local_key(cli, kas, f"lg-{uid}", "--legacy")
    local_key(cli, kas, f"nl-{uid}")
    assert cli.json(*KEY, "list", "--kas", kas["id"], "--legacy", "true")["kas_keys"] == [legacy]


def test_kas_keys_rotate_key(cli, kas, uid):
    old = local_key(cli, kas, f"r1-{uid}")
    out = cli.json(*KEY, "rotate", "--key", f"r1-{uid}", "--kas", kas["id"], "--key-id", f"r2-{uid}",
                   "-a", "rsa:2048", "-m", "local", "--wrapping-key-id", "root", "--wrapping-key", cli.served.root_key_hex)
    assert out["kas_key"]["key"]["key_id"] == f"r2-{uid}" and out["kas_key"]["key"]["key_status"] == STATUS["active"]
    rotated = out["rotated_resources"]["rotated_out_key"]
    assert rotated["key"]["id"] == old["key"]["id"] and rotated["key"]["key_status"] == STATUS["rotated"]


def test_kas_keys_import_key_successful_legacy(cli, kas, uid):
    private = crypto.generate_private_key("rsa:2048")
    pem = base64.b64encode(crypto.private_pem(private)).decode()  # base64 of the PEM, as otdfctl takes it
    made = cli.json(*KEY, "import", "--kas", kas["id"], "--key-id", f"im-{uid}", "-a", "rsa:2048", "-m", "local",
                    "--wrapping-key-id", "root", "--wrapping-key", cli.served.root_key_hex,
                    "--public-key-pem", pem_b64_of(private), "--private-key-pem", pem, "--legacy")
    assert made["key"]["legacy"] is True and made["key"]["public_key_ctx"]["pem"] == pem_b64_of(private)


def pem_b64_of(private) -> str:
    return base64.b64encode(crypto.public_pem(private).encode()).decode()


def test_kas_keys_import_key_failure_missing_required_private_key(cli, kas, uid):
    r = cli(*KEY, "import", "--kas", kas["id"], "--key-id", f"nk-{uid}", "-a", "rsa:2048", "-m", "local",
            "--public-key-pem", pem_b64(), ok=False)
    assert "--private-key-pem" in r.output


def test_kas_keys_import_key_failure_public_key_does_not_match(cli, kas, uid):
    private = crypto.generate_private_key("rsa:2048")
    r = cli(*KEY, "import", "--kas", kas["id"], "--key-id", f"mm-{uid}", "-a", "rsa:2048", "-m", "local",
            "--wrapping-key-id", "root", "--wrapping-key", cli.served.root_key_hex, "--public-key-pem", pem_b64(),
            "--private-key-pem", crypto.private_pem(private).decode(), ok=False)
    assert "does not match" in r.text


def test_kas_keys_delete_key(cli, kas, uid):
    made = local_key(cli, kas, f"del-{uid}")
    r = cli(*KEY, "unsafe", "delete", "--id", made["key"]["id"], "--key-id", "wrong", "--kas-uri", kas["uri"],
            "--force", ok=False)
    assert "key id mismatch" in r.text
    gone = cli.json(*KEY, "unsafe", "delete", "--id", made["key"]["id"], "--key-id", f"del-{uid}",
                    "--kas-uri", kas["uri"], "--force")
    assert gone["key"]["id"] == made["key"]["id"]
    assert "[not_found]" in cli(*KEY, "get", "--key", made["key"]["id"], ok=False).text


def test_kas_keys_delete_key_failure_missing_kas_uri(cli):
    assert "--kas-uri" in cli(*KEY, "unsafe", "delete", "--id", "x", "--key-id", "k", "--force", ok=False).output


def test_kas_keys_list_mappings_are_empty(cli, kas, uid):
    local_key(cli, kas, f"mp-{uid}")
    out = cli.json(*KEY, "list-mappings", "--key", f"mp-{uid}", "--kas", kas["id"])
    assert "key_mappings" not in out and out["pagination"] == {}  # empty and zero: omitted


# ---- key-base.bats ----------------------------------------------------------------

def test_base_key_set_get_and_verify_previous_base_key(cli, kas, uid):
    first = local_key(cli, kas, f"b1-{uid}")
    second = local_key(cli, kas, f"b2-{uid}")
    set1 = cli.json(*KEY, "base", "set", "--key", first["key"]["id"])
    assert set1["new_base_key"]["public_key"]["kid"] == f"b1-{uid}"
    set2 = cli.json(*KEY, "base", "set", "--key", f"b2-{uid}", "--kas", kas["name"])
    assert set2["new_base_key"] == {"kas_id": kas["id"], "kas_uri": kas["uri"], "public_key": {
        "algorithm": ALG["rsa:2048"], "kid": f"b2-{uid}",
        "pem": base64.b64decode(second["key"]["public_key_ctx"]["pem"]).decode()}}
    assert set2["previous_base_key"]["public_key"]["kid"] == f"b1-{uid}"
    assert cli.json(*KEY, "base", "get") == set2["new_base_key"]
    assert f"b2-{uid}" in cli(*KEY, "base", "get").stdout


def test_base_key_set_using_non_existent_key_id(cli, kas, uid):
    assert "[not_found]" in cli(*KEY, "base", "set", "--key", f"none-{uid}", "--kas", kas["id"], ok=False).text


def test_base_key_set_using_non_existent_kas_id(cli, uid):
    assert "[not_found]" in cli(*KEY, "base", "set", "--key", f"k-{uid}",
                                "--kas", "6b1f4c5e-0000-4000-8000-000000000000", ok=False).text


def test_kas_keys_create_key_provider_mode_and_rotate(cli, kas, uid):
    # The private key is wrapped on the CLI's side by the provider's manager (its plugin loaded there
    # too); the server unwraps it to check it against the public key, then keeps the bytes as sent.
    config = {"keks": {"a": secrets.token_hex(32), "b": secrets.token_hex(32)}, "default_key_id": "a"}
    pc = cli.json(*P, "create", "--name", f"fk-{uid}", "--manager", "file-kek", "--config", json.dumps(config))
    args = ("--kas", kas["id"], "-a", "ec:secp256r1", "-m", "provider", "-p", pc["id"], "--wrapping-key-id", "b")
    made = json.loads(cli(*KEY, "create", "--key-id", f"pv-{uid}", *args, "--json", plugins=[FILE_KEK]).stdout)
    assert made["key"]["key_mode"] == MODE["provider"] and made["key"]["provider_config"]["id"] == pc["id"]
    assert made["key"]["private_key_ctx"]["key_id"] == "b"
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made  # stored as sent
    out = json.loads(cli(*KEY, "rotate", "--key", made["key"]["id"], "--key-id", f"pv2-{uid}", "-a", "ec:secp256r1",
                         "-m", "provider", "-p", pc["id"], "--wrapping-key-id", "b", "--json", plugins=[FILE_KEK]).stdout)
    new = out["kas_key"]["key"]
    assert (new["provider_config"]["id"], new["private_key_ctx"]["key_id"]) == (pc["id"], "b")
    # Without the plugin on the CLI's side nothing can wrap the new key: said so, nothing created.
    r = cli(*KEY, "create", "--key-id", f"pv3-{uid}", *args, ok=False)
    assert "no key manager named 'file-kek'" in r.text and "--key-manager-plugin" in r.text
    assert "[not_found]" in cli(*KEY, "get", "--key", f"pv3-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_create_key_provider_mode_missing_provider_config_id(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"pm-{uid}", "-a", "rsa:2048", "-m", "provider",
            "--wrapping-key-id", "b", ok=False)
    assert "Flag '--provider-config-id' is required" in r.text and "[invalid_argument]" in r.text  # otdfctl's check


# ---- more of provider-config.bats ---------------------------------------------------

def test_fail_to_create_provider_configuration_without_name(cli):
    r = cli(*P, "create", "--manager", "m", "--config", "{}", ok=False)
    assert "--name" in r.text and r.exit_code == 2  # a usage error, as a missing cobra flag


def test_fail_to_create_provider_configuration_with_invalid_config_value(cli, uid):
    r = cli(*P, "create", "--name", f"iv-{uid}", "--manager", "m", "--config", "test-value", ok=False)
    assert "[invalid_argument]" in r.text
    assert "[not_found]" in cli(*P, "get", "--name", f"iv-{uid}", ok=False).text


def test_fail_to_get_provider_configuration_no_name_with_manager(cli):
    # otdfctl's flag group [name manager], refused before anything is sent
    r = cli(*P, "get", "--manager", "m", ok=False)
    assert "if any flags in the group [name manager] are set they must all be set; missing [name]" in r.text


def test_fail_to_get_provider_configuration_no_required_flags(cli):
    r = cli(*P, "get", ok=False)
    assert "--id" in r.text and "--name" in r.text and r.exit_code == 2


def test_fail_to_get_provider_configuration_with_id_name(cli, uid):
    made = cli.json(*P, "create", "--name", f"idn-{uid}", "--manager", "m", "--config", "{}")
    r = cli(*P, "get", "--id", made["id"], "--manager", "m", "--name", f"idn-{uid}", ok=False)
    assert "--id" in r.text and "--name" in r.text


def test_fail_to_get_provider_configuration_with_empty_name_and_manager(cli):
    r = cli(*P, "get", "--name", "", "--manager", "", ok=False)
    assert "[invalid_argument]" in r.text or r.exit_code == 2


def test_list_provider_configurations(cli, uid):
    made = cli.json(*P, "create", "--name", f"ls-{uid}", "--manager", "m", "--config", "{}")
    listed = cli.json(*P, "list", "--limit", "1000")
    assert made in listed["provider_configs"]
    assert listed["pagination"]["total"] == len(listed["provider_configs"])
    text = cli(*P, "list").stdout
    assert "Total" in text and "Current Offset" in text


def test_update_provider_configuration_success(cli, uid):
    made = cli.json(*P, "create", "--name", f"up-{uid}", "--manager", "m", "--config", '{"cached": "key"}')
    up = cli.json(*P, "update", "--id", made["id"], "--name", f"up-{uid}-updated",
                  "--config", '{"cached": "key-updated"}')
    assert (up["id"], up["name"]) == (made["id"], f"up-{uid}-updated")
    assert up["config_json"] == base64.b64encode(b'{"cached": "key-updated"}').decode()


def test_fail_to_update_provider_configuration_no_optional_flags(cli, uid):
    made = cli.json(*P, "create", "--name", f"no-{uid}", "--manager", "m", "--config", "{}")
    r = cli(*P, "update", "--id", made["id"], ok=False)
    assert "At least one field (name, manager, config, or metadata labels) must be updated" in r.text
    assert "[invalid_argument]" in r.text
    assert cli.json(*P, "get", "--id", made["id"]) == made


def test_fail_to_update_provider_configuration_invalid_config_format(cli, uid):
    made = cli.json(*P, "create", "--name", f"ic-{uid}", "--manager", "m", "--config", "{}")
    assert "[invalid_argument]" in cli(*P, "update", "--id", made["id"], "--config", "{invalid: json}",
                                       ok=False).text
    assert cli.json(*P, "get", "--id", made["id"]) == made


def test_delete_provider_configuration_fail_no_id(cli):
    assert "--id" in cli(*P, "delete", "--force", ok=False).text


# ---- more of kas-registry.bats -------------------------------------------------------

def test_update_registered_kas_with_invalid_name_fails(cli, kas):
    assert "[kas_name_format]" in cli(*KAS, "update", "--id", kas["id"], "--name", "-bad name-", ok=False).text
    assert cli.json(*KAS, "get", "--id", kas["id"]) == kas


# ---- more of kas-keys.bats -------------------------------------------------------------

@pytest.mark.parametrize("missing", ["--key-id", "--algorithm", "--mode"])
def test_kas_keys_create_key_missing_required_flag(cli, kas, uid, missing):
    # create key (missing key-id), (missing algorithm), (missing mode)
    flags = {"--key-id": f"mf-{uid}", "--algorithm": "rsa:2048", "--mode": "local"}
    args = [x for flag, value in flags.items() if flag != missing for x in (flag, value)]
    r = cli(*KEY, "create", "--kas", kas["id"], *args, "--wrapping-key-id", "root",
            "--wrapping-key", cli.served.root_key_hex, ok=False)
    assert missing in r.text and r.exit_code == 2


def test_kas_keys_create_key_local_mode_missing_wrapping_key_id(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"nwi-{uid}", "-a", "rsa:2048", "-m", "local",
            "--wrapping-key", cli.served.root_key_hex, ok=False)
    assert "wrapping-key-id is required for mode local" in r.text  # otdfctl's words, before any work
    assert "[not_found]" in cli(*KEY, "get", "--key", f"nwi-{uid}", "--kas", kas["id"], ok=False).text


def file_kek_config(cli, uid):
    config = {"keks": {"wrapping-key-remote": secrets.token_hex(32)}, "default_key_id": "wrapping-key-remote"}
    return cli.json(*P, "create", "--name", f"fk-{uid}", "--manager", "file-kek", "--config", json.dumps(config))


def test_kas_keys_create_key_remote_mode_with_a_manager_not_loaded(cli, kas, uid):
    # otdfctl's remote-mode cases name a manager ("fake-manager") no platform node loads: the key is
    # registered with the PEM given, as OpenTDF's policy service does (no manager is asked).
    pc = cli.json(*P, "create", "--name", f"fake-{uid}", "--manager", "fake-manager", "--config", "{}")
    pem = pem_b64()
    made = cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", f"fm-{uid}", "-a", "rsa:2048", "-m", "remote",
                    "-e", pem, "-p", pc["id"], "--wrapping-key-id", "wrapping-key-remote")
    assert made["key"]["public_key_ctx"]["pem"] == pem and made["key"]["key_mode"] == 3  # KEY_MODE_REMOTE
    assert made["key"]["private_key_ctx"] == {"key_id": "wrapping-key-remote"}


def test_kas_keys_create_key_remote_mode(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    pem = pem_b64()
    # Direct mode runs the server's handlers here: the provider's manager is loaded in this process.
    made = json.loads(cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"rmk-{uid}", "-a", "rsa:2048",
                          "-m", "remote", "-e", pem, "-p", pc["id"], "--wrapping-key-id", "wrapping-key-remote",
                          "--json", plugins=[FILE_KEK]).stdout)
    assert (made["key"]["key_mode"], made["key"]["provider_config"]["id"]) == (MODE["remote"], pc["id"])
    assert made["key"]["public_key_ctx"]["pem"] == pem
    assert made["key"]["private_key_ctx"]["key_id"] == "wrapping-key-remote"


def test_kas_keys_create_key_remote_mode_missing_pem(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"rpm-{uid}", "-a", "rsa:2048", "-m", "remote",
            "-p", pc["id"], "--wrapping-key-id", "wrapping-key-remote", ok=False)
    assert "Flag '--public-key-pem' is required" in r.text  # as otdfctl
    assert "[not_found]" in cli(*KEY, "get", "--key", f"rpm-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_create_key_provider_mode_default_wrapping_key(cli, kas, uid):
    # Ours, under its own flag: the provider config's default key (an empty key id).
    pc = file_kek_config(cli, uid)
    made = json.loads(cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"pdk-{uid}", "-a", "rsa:2048",
                          "-m", "provider", "-p", pc["id"], "--default-wrapping-key", "--json",
                          plugins=[FILE_KEK]).stdout)
    assert made["key"]["key_id"] == f"pdk-{uid}" and not (made["key"].get("private_key_ctx") or {}).get("key_id")
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"pdk2-{uid}", "-a", "rsa:2048", "-m", "local",
            "--default-wrapping-key", ok=False)
    assert "--default-wrapping-key is for provider and remote mode" in r.text


def test_kas_keys_create_key_remote_mode_fetch_public_key(cli, kas, uid):
    # Ours, under its own flag: the CLI asks the provider's manager (its plugin loaded on the CLI's
    # side) for the public key; without that plugin nothing is sent.
    pc = file_kek_config(cli, uid)
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"rpf-{uid}", "-a", "rsa:2048", "-m", "remote",
            "-p", pc["id"], "--wrapping-key-id", "wrapping-key-remote", "--fetch-public-key", ok=False)
    assert "no key manager named 'file-kek'" in r.text
    assert "[not_found]" in cli(*KEY, "get", "--key", f"rpf-{uid}", "--kas", kas["id"], ok=False).text


@pytest.mark.parametrize("mode", ["remote", "public_key"])
def test_kas_keys_create_key_pem_not_base64(cli, kas, uid, mode):
    # create key (remote mode, pem not base64), (public_key mode, pem not base64)
    extra = ("-p", file_kek_config(cli, uid)["id"], "--wrapping-key-id", "wrapping-key-remote") \
        if mode == "remote" else ()
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"nb-{uid}", "-a", "rsa:2048", "-m", mode,
            "-e", "not-base64-value", *extra, ok=False)
    assert "pem" in r.text.lower()
    assert "[not_found]" in cli(*KEY, "get", "--key", f"nb-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_create_key_public_key_mode_invalid_pem_content(cli, kas, uid):
    bad = base64.b64encode(b"-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n").decode()
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"bp-{uid}", "-a", "rsa:2048", "-m", "public_key",
            "-e", bad, ok=False)
    assert "[invalid_argument]" in r.text


def test_kas_keys_create_key_missing_kas_identifier(cli, kas, uid):
    r = cli(*KEY, "create", "--key-id", f"mk-{uid}", "-a", "rsa:2048", "-m", "public_key", "-e", pem_b64(), ok=False)
    assert 'required flag(s) "kas" not set' in r.text  # as otdfctl, however many KAS are registered


@pytest.mark.parametrize("ref", ["name", "uri"])
def test_kas_keys_create_key_using_kas_name_and_uri(cli, kas, uid, ref):
    made = cli.json(*KEY, "create", "--kas", kas[ref], "--key-id", f"k{ref}-{uid}", "-a", "rsa:2048",
                    "-m", "public_key", "-e", pem_b64())
    assert made["kas_id"] == kas["id"] and made["kas_uri"] == kas["uri"]


@pytest.mark.parametrize("flag, value", [("--algorithm", "invalid-algorithm-value"), ("--mode", "invalid-mode-value")])
def test_kas_keys_create_key_invalid_algorithm_and_mode_value(cli, kas, uid, flag, value):
    args = {"--algorithm": "rsa:2048", "--mode": "public_key", flag: value}
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"iv-{uid}", *[x for kv in args.items() for x in kv],
            "-e", pem_b64(), ok=False)
    assert value in r.text and r.exit_code == 2


def test_kas_keys_get_key_by_uuid_form_user_key_id_and_kas_id(cli, kas):
    kid = "0f6e3b4a-1c2d-4e5f-8a9b-" + secrets.token_hex(6)  # a key id that looks like a system id
    made = cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", kid, "-a", "rsa:2048", "-m", "public_key",
                    "-e", pem_b64())
    assert made["key"]["id"] != kid
    assert cli.json(*KEY, "get", "--key", kid, "--kas", kas["id"]) == made


def test_kas_keys_get_key_failure_only_kas_missing_key_id_or_system_id(cli, kas):
    assert "--key" in cli(*KEY, "get", "--kas", kas["id"], ok=False).text


def test_kas_keys_update_key_missing_id(cli):
    assert "--id" in cli(*KEY, "update", ok=False).text


def test_kas_keys_list_keys_invalid_algorithm_and_legacy(cli):
    # list keys (invalid algorithm), list keys (legacy=invalid)
    assert "invalid-algorithm" in cli(*KEY, "list", "--algorithm", "invalid-algorithm", ok=False).text
    assert "invalid" in cli(*KEY, "list", "--legacy", "invalid", ok=False).text


def test_kas_keys_rotate_key_by_uuid_form_user_key_id_and_kas_id(cli, kas):
    kid = "1a2b3c4d-5e6f-4a7b-8c9d-" + secrets.token_hex(6)
    old = cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", kid, "-a", "rsa:2048", "-m", "public_key",
                   "-e", pem_b64())
    new_kid = "2b3c4d5e-6f7a-4b8c-9dae-" + secrets.token_hex(6)
    out = cli.json(*KEY, "rotate", "--key", kid, "--kas", kas["id"], "--key-id", new_kid, "-a", "rsa:2048",
                   "-m", "public_key", "-e", pem_b64())
    assert out["kas_key"]["key"]["key_id"] == new_kid
    assert out["rotated_resources"]["rotated_out_key"]["key"]["id"] == old["key"]["id"]


@pytest.mark.parametrize("missing", ["--key", "--key-id", "--algorithm", "--mode"])
def test_kas_keys_rotate_key_missing_required_flag(cli, missing):
    # rotate key (missing key), (missing key-id), (missing algorithm), (missing mode)
    flags = {"--key": "old-key-id", "--key-id": "new-key-id", "--algorithm": "rsa:2048", "--mode": "public_key"}
    args = [x for flag, value in flags.items() if flag != missing for x in (flag, value)]
    r = cli(*KEY, "rotate", *args, "-e", pem_b64(), ok=False)
    assert missing in r.text and r.exit_code == 2


@pytest.fixture
def old_public_key(cli, kas, uid):
    return cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", f"old-{uid}", "-a", "rsa:2048",
                    "-m", "public_key", "-e", pem_b64())


def _rotate_fails(cli, old, uid, *args):
    r = cli(*KEY, "rotate", "--key", old["key"]["id"], "--key-id", f"new-{uid}", "-a", "rsa:2048", *args, ok=False)
    assert cli.json(*KEY, "get", "--key", old["key"]["id"])["key"]["key_status"] == STATUS["active"]  # nothing rotated
    return r


def test_kas_keys_rotate_key_local_mode_missing_wrapping_key_id(cli, old_public_key, uid):
    r = _rotate_fails(cli, old_public_key, uid, "-m", "local", "--wrapping-key", cli.served.root_key_hex)
    assert "wrapping-key-id is required for mode local" in r.text  # as otdfctl


def test_kas_keys_rotate_key_local_mode_missing_wrapping_key(cli, old_public_key, uid):
    r = cli(*KEY, "rotate", "--key", old_public_key["key"]["id"], "--key-id", f"new-{uid}", "-a", "rsa:2048",
            "-m", "local", "--wrapping-key-id", "root", ok=cli.mode == "db")
    if cli.mode == "host":  # direct mode wraps with the node's own root key, as key create does
        assert "--wrapping-key" in r.text and "[failed_precondition]" in r.text


def test_kas_keys_rotate_key_public_key_mode_missing_public_key_pem(cli, old_public_key, uid):
    assert "[invalid_argument]" in _rotate_fails(cli, old_public_key, uid, "-m", "public_key").text


def test_kas_keys_rotate_key_remote_mode_missing_provider_config_id(cli, old_public_key, uid):
    r = _rotate_fails(cli, old_public_key, uid, "-m", "remote", "-e", pem_b64(), "--wrapping-key-id", "wk-1")
    assert "Flag '--provider-config-id' is required" in r.text and "[invalid_argument]" in r.text  # otdfctl's check


def test_kas_keys_rotate_key_invalid_algorithm_and_mode(cli, old_public_key, uid):
    # rotate key (invalid algorithm), rotate key (invalid mode)
    for args, bad in (((*KEY, "rotate", "-a", "invalid-algorithm", "-m", "public_key"), "invalid-algorithm"),
                      ((*KEY, "rotate", "-a", "rsa:2048", "-m", "invalid-mode"), "invalid-mode")):
        r = cli(*args, "--key", old_public_key["key"]["id"], "--key-id", f"new-{uid}", "-e", pem_b64(), ok=False)
        assert bad in r.text and r.exit_code == 2


def test_kas_keys_rotate_key_invalid_hex_encoded_wrapping_key(cli, old_public_key, uid):
    r = _rotate_fails(cli, old_public_key, uid, "-m", "local", "--wrapping-key-id", "root",
                      "--wrapping-key", "not-hex-encoded")
    assert "--wrapping-key" in r.text


def _import(cli, kas, kid, *extra, private=None, ok=True):
    private = private or crypto.generate_private_key("rsa:2048")
    return cli(*KEY, "import", "--kas", kas["id"], "--key-id", kid, "-a", "rsa:2048", "-m", "local",
               "--public-key-pem", pem_b64_of(private),
               "--private-key-pem", base64.b64encode(crypto.private_pem(private)).decode(), *extra, "--json", ok=ok)


def test_kas_keys_import_key_successful(cli, kas, uid):
    made = json.loads(_import(cli, kas, f"is-{uid}", "--wrapping-key-id", "root",
                              "--wrapping-key", cli.served.root_key_hex).stdout)
    assert made["key"]["key_id"] == f"is-{uid}" and "legacy" not in made["key"]  # false: omitted
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made


def test_kas_keys_import_key_failure_invalid_wrapping_key(cli, kas, uid):
    r = _import(cli, kas, f"iw-{uid}", "--wrapping-key-id", "root", "--wrapping-key", "not-hex", ok=False)
    assert "--wrapping-key" in r.text


@pytest.mark.parametrize("which", ["--public-key-pem", "--private-key-pem"])
def test_kas_keys_import_key_failure_invalid_pem(cli, kas, uid, which):
    # import key failure - invalid public key PEM, invalid private key PEM
    private = crypto.generate_private_key("rsa:2048")
    pems = {"--public-key-pem": pem_b64_of(private),
            "--private-key-pem": base64.b64encode(crypto.private_pem(private)).decode(), which: "not-base64!"}
    r = cli(*KEY, "import", "--kas", kas["id"], "--key-id", f"ip-{uid}", "-a", "rsa:2048", "-m", "local",
            "--wrapping-key-id", "root", "--wrapping-key", cli.served.root_key_hex,
            *[x for kv in pems.items() for x in kv], ok=False)
    assert "pem" in r.text.lower()
    assert "[not_found]" in cli(*KEY, "get", "--key", f"ip-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_import_key_failure_invalid_algorithm(cli, kas, uid):
    r = cli(*KEY, "import", "--kas", kas["id"], "--key-id", f"ia-{uid}", "-a", "invalid-algorithm", "-m", "local",
            "--public-key-pem", pem_b64(), "--private-key-pem", "x", ok=False)
    assert "invalid-algorithm" in r.text and r.exit_code == 2


def test_kas_keys_import_key_failure_missing_wrapping_key_id(cli, kas, uid):
    r = _import(cli, kas, f"mi-{uid}", "--wrapping-key", cli.served.root_key_hex, ok=False)
    assert 'required flag(s) "wrapping-key-id" not set' in r.text  # otdfctl's words


@pytest.mark.parametrize("missing", ["--id", "--key-id"])
def test_kas_keys_delete_key_failure_missing_id_and_key_id(cli, missing):
    flags = {"--id": "ded32e6d-9fec-4a4c-a391-13158c52e5f2", "--key-id": "kid"}
    args = [x for flag, value in flags.items() if flag != missing for x in (flag, value)]
    r = cli(*KEY, "unsafe", "delete", *args, "--kas-uri", "https://a.example.com", "--force", ok=False)
    assert missing in r.text and r.exit_code == 2


# ---- more of key-base.bats -------------------------------------------------------------

def test_base_key_set_by_key_id_and_kas_id_name_uri_then_get(cli, kas, uid):
    # base-key: set by --key (uuid), by --key(id) and --kas(id|name|uri), get (after setting a base key)
    made = local_key(cli, kas, f"bk-{uid}")
    for ref in ("--key", made["key"]["id"]), ("--kas", kas["id"]), ("--kas", kas["name"]), ("--kas", kas["uri"]):
        args = ("--key", made["key"]["id"]) if ref[0] == "--key" else ("--key", f"bk-{uid}", *ref)
        out = cli.json(*KEY, "base", "set", *args)
        assert out["new_base_key"]["public_key"]["kid"] == f"bk-{uid}" and out["new_base_key"]["kas_uri"] == kas["uri"]
        assert out["new_base_key"]["public_key"]["pem"].startswith("-----BEGIN PUBLIC KEY-----")
        assert cli.json(*KEY, "base", "get") == out["new_base_key"]


def test_base_key_set_missing_key_identifier(cli, kas):
    r = cli(*KEY, "base", "set", "--kas", kas["id"], ok=False)
    assert "--key" in r.text and r.exit_code == 2


def test_kas_keys_create_key_local_mode_hpqt_xwing(cli, kas, uid):
    # Deliberate difference (README, post-quantum keys): X-Wing is not served yet; refused before anything is sent.
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"xw-{uid}", "-a", "hpqt:xwing", "-m", "local",
            "--wrapping-key-id", "root", "--wrapping-key", cli.served.root_key_hex, ok=False)
    assert "hpqt:xwing" in r.text and r.exit_code == 2


# ---- sort and order (kas-registry.bats, kas-keys.bats) ----------------------------------

def test_list_registered_kases_supports_sort_and_order_flags(cli, uid):
    made = [cli.json(*KAS, "create", "--uri", f"https://s{uid}-{n}.example.com", "--name", f"s{uid}-{n}")["id"]
            for n in ("alpha", "bravo", "charlie")]

    def ids(*args):
        listed = cli.json(*KAS, "list", "--limit", "1000", *args)["key_access_servers"]
        return [k["id"] for k in listed if k["id"] in made]

    assert ids("--sort", "name", "--order", "asc") == made
    assert ids("--sort", "name", "--order", "desc") == made[::-1]
    assert ids("--sort", "uri", "--order", "asc") == made
    assert ids("--sort", "created_at", "--order", "asc") == made
    for n, kas_id in enumerate(made[::-1]):  # updated last is alpha
        cli(*KAS, "update", "--id", kas_id, "--label", f"sort={n}")
    assert ids("--sort", "updated_at", "--order", "asc") == made[::-1]
    assert ids("--sort", "name") == made[::-1]  # the direction defaults to desc
    assert ids("--order", "asc") == made  # the field defaults to created_at
    assert ids() == made[::-1]  # newest first
    assert "--sort" in cli(*KAS, "list", "--sort", "nope", ok=False).text


def test_kas_keys_list_keys_supports_sort_and_order_flags(cli, kas, uid):
    made = [cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", f"s{uid}-{n}", "-a", "rsa:2048",
                     "-m", "public_key", "-e", pem_b64())["key"]["id"] for n in ("alpha", "bravo", "charlie")]

    def ids(*args):
        return [k["key"]["id"] for k in cli.json(*KEY, "list", "--kas", kas["id"], *args)["kas_keys"]]

    assert ids("--sort", "key_id", "--order", "desc") == made[::-1]
    assert ids("--sort", "key_id", "--order", "asc") == made
    assert ids("--sort", "created_at", "--order", "asc") == made
    for n, key_id in enumerate(made[::-1]):
        cli(*KEY, "update", "--id", key_id, "--label", f"sort={n}")
    assert ids("--sort", "updated_at", "--order", "asc") == made[::-1]
    assert ids("--sort", "updated_at", "--order", "desc") == made
    assert "--order" in cli(*KEY, "list", "--order", "sideways", ok=False).text


def test_kas_keys_list_keys_sort_by_key_status(cli, kas, uid):
    """otdfctl's `--sort key_status` (SORT_KAS_KEYS_TYPE_KEY_STATUS): ACTIVE before ROTATED ascending."""
    kas_id = cli.json(*KAS, "create", "--uri", f"https://status-{uid}.example.com")["id"]
    old = cli.json(*KEY, "create", "--kas", kas_id, "--key-id", f"st{uid}", "-a", "rsa:2048",
                   "-m", "public_key", "-e", pem_b64())["key"]["id"]
    new = cli.json(*KEY, "rotate", "--kas", kas_id, "--key", old, "--key-id", f"st{uid}-2", "-a", "rsa:2048",
                   "-m", "public_key", "-e", pem_b64())["kas_key"]["key"]["id"]

    def ids(order):
        listed = cli.json(*KEY, "list", "--kas", kas_id, "--sort", "key_status", "--order", order)["kas_keys"]
        return [k["key"]["id"] for k in listed]

    assert ids("asc") == [new, old]
    assert ids("desc") == [old, new]


# ---- more of kas-keys.bats and key-base.bats (import, identifiers, defaults) --------------

def _import_args(kas, kid, private):
    # as otdfctl's import: no --mode (a local key), base64 PEMs
    return (*KEY, "import", "--kas", kas["id"], "--key-id", kid, "-a", "rsa:2048",
            "--public-key-pem", pem_b64_of(private),
            "--private-key-pem", base64.b64encode(crypto.private_pem(private)).decode())


@pytest.mark.parametrize("legacy", ["true", "false"])
def test_kas_keys_import_key_successful_legacy_true_false(cli, kas, uid, legacy):
    private = crypto.generate_private_key("rsa:2048")
    made = cli.json(*_import_args(kas, f"il{legacy}-{uid}", private), "--wrapping-key-id", "test-wrapping-key",
                    "--wrapping-key", cli.served.root_key_hex, "--legacy", legacy)
    assert (made["kas_id"], made["key"]["key_id"], made["key"]["key_mode"]) == \
        (kas["id"], f"il{legacy}-{uid}", MODE["local"])
    assert made["key"]["public_key_ctx"]["pem"] == pem_b64_of(private)
    assert made["key"]["private_key_ctx"]["key_id"] == "test-wrapping-key"
    assert made["key"].get("legacy", False) is (legacy == "true")  # false: omitted


def test_kas_keys_import_key_failure_legacy_invalid(cli, kas, uid):
    r = cli(*_import_args(kas, f"ili-{uid}", crypto.generate_private_key("rsa:2048")), "--wrapping-key-id", "w",
            "--wrapping-key", cli.served.root_key_hex, "--legacy", "invalid", ok=False)
    assert "--legacy" in r.text and r.exit_code == 2
    assert "[not_found]" in cli(*KEY, "get", "--key", f"ili-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_import_key_failure_missing_wrapping_key(cli, kas, uid):
    # As key create: direct mode wraps with the node's own root key; over --host nothing is sent.
    args = (*_import_args(kas, f"imw-{uid}", crypto.generate_private_key("rsa:2048")), "--wrapping-key-id", "root")
    if cli.mode == "host":
        r = cli(*args, ok=False)
        assert 'required flag(s) "wrapping-key" not set' in r.text and r.exit_code == 2  # otdfctl's words
    else:
        assert cli.json(*args)["key"]["private_key_ctx"]["key_id"] == "root"


def test_kas_keys_create_key_remote_mode_missing_wrapping_key_id(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"rnw-{uid}", "-a", "rsa:2048",
            "-m", "remote", "-e", pem_b64(), "-p", pc["id"], ok=False)
    assert "wrapping-key-id is required for mode remote" in r.text  # as otdfctl


def test_kas_keys_create_key_provider_mode_missing_wrapping_key_id(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"pnw-{uid}", "-a", "rsa:2048",
            "-m", "provider", "-p", pc["id"], ok=False)
    assert "wrapping-key-id is required for mode provider" in r.text  # as otdfctl


def test_kas_keys_get_key_failure_only_key_id_missing_kas_identifier(cli, kas, uid):
    made = local_key(cli, kas, f"only-{uid}")
    r = cli(*KEY, "get", "--key", f"only-{uid}", ok=False)
    assert "Flag '--kas' is required" in r.text and "[invalid_argument]" in r.text  # as otdfctl
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made  # a UUID needs no --kas
    assert cli.json(*KEY, "get", "--key", f"only-{uid}", "--kas", kas["id"]) == made


def test_base_key_set_missing_kas_identifier(cli, uid):
    a = cli.json(*KAS, "create", "--uri", f"https://bm-{uid}.example.com")
    local_key(cli, a, f"bm-{uid}")
    def base_key():  # whatever it is (other cases of this module set one), or "No base key found"
        return cli.runner.invoke(main, [*cli.base, *KEY, "base", "get", "--json"], env=cli.env).output

    before = base_key()
    r = cli(*KEY, "base", "set", "--key", f"bm-{uid}", ok=False)
    assert "Flag '--kas' is required" in r.text  # as otdfctl: a key id is only unique on its KAS
    assert base_key() == before


def test_kas_keys_list_keys_default_limit_and_offset(cli, kas, uid):
    rsa, ec = pem_b64(), pem_b64("ec:secp256r1")
    one = cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", f"d1-{uid}", "-a", "rsa:2048", "-m", "public_key",
                   "-e", rsa)
    two = cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", f"d2-{uid}", "-a", "ec:secp256r1",
                   "-m", "public_key", "-e", ec)
    listed = cli.json(*KEY, "list")  # no --kas, no --limit: the newest, first page
    by_id = {k["key"]["id"]: k for k in listed["kas_keys"]}
    assert by_id[one["key"]["id"]] == one and by_id[two["key"]["id"]] == two
    assert (one["key"]["key_algorithm"], two["key"]["key_algorithm"]) == (ALG["rsa:2048"], ALG["ec:secp256r1"])
    assert one["key"]["public_key_ctx"]["pem"] == rsa and "private_key_ctx" not in two["key"]
    assert one["key"]["metadata"]["created_at"]["seconds"] and one["key"]["metadata"]["updated_at"]["seconds"]
    assert "current_offset" not in listed["pagination"] and listed["pagination"]["total"] >= 2


def test_fail_to_get_provider_configuration_no_manager_with_name(cli, uid):
    # Deliberate difference (README): --name alone works when one manager has that name.
    made = cli.json(*P, "create", "--name", f"nm-{uid}", "--manager", "m1", "--config", "{}")
    assert cli.json(*P, "get", "--name", f"nm-{uid}") == made
    cli.json(*P, "create", "--name", f"nm-{uid}", "--manager", "m2", "--config", "{}")
    assert "--manager" in cli(*P, "get", "--name", f"nm-{uid}", ok=False).text


def test_base_key_get_initially_no_base_key_should_be_set_for_a_new_kas(cli, kas, uid):
    # The platform is shared, so "no base key" is made: the base key goes with its key on an unsafe delete.
    made = local_key(cli, kas, f"nb-{uid}")
    cli(*KEY, "base", "set", "--key", made["key"]["id"])
    cli(*KEY, "unsafe", "delete", "--id", made["key"]["id"], "--key-id", f"nb-{uid}", "--kas-uri", kas["uri"],
        "--force")
    r = cli(*KEY, "base", "get", ok=False)
    assert "No base key found" in r.text and "[not_found]" in r.text and r.exit_code == 1
    r = cli(*KEY, "base", "get", "--json", ok=False)  # otdfctl: ExitWithError("No base key found", nil)
    assert r.exception.message == "No base key found" and r.stdout == ""
