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
from tests.server.conftest import ROOT, start_server

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
    assert gone == {"id": made["id"], "name": f"p-{uid}", "manager": "aws-kms"}
    assert "not found" in cli(*P, "get", "--id", made["id"], ok=False).text


def test_fail_to_get_provider_configuration_with_non_existent_name(cli, uid):
    assert "[not_found]" in cli(*P, "get", "--name", f"none-{uid}", ok=False).text


def test_fail_to_update_provider_configuration_missing_id(cli):
    assert "--id" in cli(*P, "update", "--name", "x", ok=False).text


def test_delete_provider_configuration_fail_no_force(cli, uid):
    made = cli.json(*P, "create", "--name", f"nf-{uid}", "--manager", "m", "--config", "{}")
    assert cli(*P, "delete", "--id", made["id"], ok=False).exit_code != 0  # asks, and stdin says no
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

@pytest.mark.parametrize("algorithm", ["rsa:2048", "ec:secp256r1"])
def test_kas_keys_create_key_local_mode(cli, kas, uid, algorithm):
    made = local_key(cli, kas, f"l-{uid}", algorithm=algorithm)
    assert (made["kas_id"], made["key"]["key_mode"], made["key"]["key_algorithm"]) == (kas["id"], "local", algorithm)
    assert made["key"]["private_key_ctx"]["key_id"] == "root" and made["key"]["private_key_ctx"]["wrapped_key"]
    pem = base64.b64decode(made["key"]["public_key_ctx"]["pem"]).decode()
    assert pem.startswith("-----BEGIN PUBLIC KEY-----")


def test_kas_keys_create_key_public_key_mode(cli, kas, uid):
    pem = pem_b64()
    made = cli.json(*KEY, "create", "--kas", kas["name"], "--key-id", f"pk-{uid}", "-a", "rsa:2048",
                    "-m", "public_key", "--public-key-pem", pem)
    assert made["key"]["public_key_ctx"]["pem"] == pem and made["key"]["private_key_ctx"] is None


def test_kas_keys_create_key_with_labels(cli, kas, uid):
    made = local_key(cli, kas, f"lb-{uid}", "--label", "owner=team-a", "--label", "env=prod")
    assert made["key"]["metadata"]["labels"] == {"owner": "team-a", "env": "prod"}


def test_kas_keys_create_key_local_mode_missing_wrapping_key(cli, kas, uid):
    # otdfctl wraps with --wrapping-key. Without it the CLI wraps with the root key of its own process:
    # direct mode has the node's; over --host there is none, so nothing is sent.
    args = (*KEY, "create", "--kas", kas["id"], "--key-id", f"nw-{uid}", "-a", "rsa:2048", "-m", "local")
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
    assert "[provider_config_id_optionally_required]" in r.text


def test_kas_keys_create_key_public_key_mode_ec_key_with_rsa_algorithm(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"ec-{uid}", "-a", "rsa:2048", "-m", "public_key",
            "-e", pem_b64("ec:secp256r1"), ok=False)
    assert "[invalid_argument]" in r.text


def test_kas_keys_create_key_invalid_kas_identifier(cli, uid):
    r = cli(*KEY, "create", "--kas", f"nokas-{uid}", "--key-id", "k", "-a", "rsa:2048", "-m", "public_key",
            "-e", pem_b64(), ok=False)
    assert "[not_found]" in r.text


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
    assert page["kas_keys"] == [a] and page["pagination"] == {"current_offset": 1, "next_offset": 0, "total": 2}
    assert b in cli.json(*KEY, "list", "--kas", kas["id"])["kas_keys"]


def test_kas_keys_list_legacy_keys(cli, kas, uid):
    legacy = local_key(cli, kas, f"lg-{uid}", "--legacy")
    local_key(cli, kas, f"nl-{uid}")
    assert cli.json(*KEY, "list", "--kas", kas["id"], "--legacy", "true")["kas_keys"] == [legacy]


def test_kas_keys_rotate_key(cli, kas, uid):
    old = local_key(cli, kas, f"r1-{uid}")
    out = cli.json(*KEY, "rotate", "--key", f"r1-{uid}", "--kas", kas["id"], "--key-id", f"r2-{uid}",
                   "-a", "rsa:2048", "-m", "local", "--wrapping-key", cli.served.root_key_hex)
    assert out["kas_key"]["key"]["key_id"] == f"r2-{uid}" and out["kas_key"]["key"]["key_status"] == "active"
    rotated = out["rotated_resources"]["rotated_out_key"]
    assert rotated["key"]["id"] == old["key"]["id"] and rotated["key"]["key_status"] == "rotated"


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
            "--wrapping-key", cli.served.root_key_hex, "--public-key-pem", pem_b64(),
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
    assert cli.json(*KEY, "list-mappings", "--key", f"mp-{uid}", "--kas", kas["id"])["key_mappings"] == []


# ---- key-base.bats ----------------------------------------------------------------

def test_base_key_set_get_and_verify_previous_base_key(cli, kas, uid):
    first = local_key(cli, kas, f"b1-{uid}")
    second = local_key(cli, kas, f"b2-{uid}")
    set1 = cli.json(*KEY, "base", "set", "--key", first["key"]["id"])
    assert set1["new_base_key"]["public_key"]["kid"] == f"b1-{uid}"
    set2 = cli.json(*KEY, "base", "set", "--key", f"b2-{uid}", "--kas", kas["name"])
    assert set2["new_base_key"] == {"kas_id": kas["id"], "kas_uri": kas["uri"], "public_key": {
        "algorithm": "rsa:2048", "kid": f"b2-{uid}",
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
    assert made["key"]["key_mode"] == "provider" and made["key"]["provider_config"]["id"] == pc["id"]
    assert made["key"]["private_key_ctx"]["key_id"] == "b"
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made  # stored as sent
    out = json.loads(cli(*KEY, "rotate", "--key", made["key"]["id"], "--key-id", f"pv2-{uid}", "-a", "ec:secp256r1",
                         "-m", "provider", "--json", plugins=[FILE_KEK]).stdout)
    new = out["kas_key"]["key"]
    assert (new["provider_config"]["id"], new["private_key_ctx"]["key_id"]) == (pc["id"], "b")  # the old key's home
    # Without the plugin on the CLI's side nothing can wrap the new key: said so, nothing created.
    r = cli(*KEY, "create", "--key-id", f"pv3-{uid}", *args, ok=False)
    assert "no key manager named 'file-kek'" in r.text and "--key-manager-plugin" in r.text
    assert "[not_found]" in cli(*KEY, "get", "--key", f"pv3-{uid}", "--kas", kas["id"], ok=False).text


def test_kas_keys_create_key_provider_mode_missing_provider_config_id(cli, kas, uid):
    r = cli(*KEY, "create", "--kas", kas["id"], "--key-id", f"pm-{uid}", "-a", "rsa:2048", "-m", "provider",
            "--wrapping-key-id", "b", ok=False)
    assert "[provider_config_id_optionally_required]" in r.text
