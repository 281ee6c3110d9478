"""The rest of otdfctl's e2e cases for the admin CLI (issue 15): `key unsafe update` and the
`--search` flags, in both CLI modes against one real `platform serve` (the fixtures of
test_cli_modes); and `--with-client-creds-file` against a served platform in OIDC mode whose
issuer is a real loopback IdP (discovery, JWKS, a client-credentials token endpoint).

Names follow the bats cases of otdfctl/e2e/kas-keys.bats, kas-registry.bats, kas-keys-mappings.bats
and auth.bats (whose `policy attributes list` is `policy kas-registry list` here: no attributes are
served).
"""

from __future__ import annotations

import http.server
import json
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.server.conftest import ROOT, free_port, start_server
from tests.server.test_cli_modes import (FILE_KEK, KAS, KEY, MODE, P, cli, file_kek_config, kas,  # noqa: F401
                                         local_key, pem_b64, served, uid)


def remote_key(cli, kas, kid, pc_id):
    return json.loads(cli(*KEY, "create", "--kas", kas["id"], "--key-id", kid, "-a", "rsa:2048", "-m", "remote",
                          "-e", pem_b64(), "-p", pc_id, "--wrapping-key-id", "wrapping-key-remote", "--json",
                          plugins=[FILE_KEK]).stdout)


def public_key(cli, kas, kid):
    return cli.json(*KEY, "create", "--kas", kas["id"], "--key-id", kid, "-a", "rsa:2048", "-m", "public_key",
                    "-e", pem_b64())


def stable(doc, *drop):
    """The key document without the parts an unsafe update may change (and updated_at)."""
    key = {k: v for k, v in doc["key"].items() if k not in drop}
    key["metadata"] = {k: v for k, v in key["metadata"].items() if k != "updated_at"}
    return {**doc, "key": key}


def unsafe_update(cli, *args, ok=True):
    return cli(*KEY, "unsafe", "update", *args, "--force", ok=ok)


# ---- kas-keys.bats: unsafe update ---------------------------------------------------------

def test_kas_keys_unsafe_update_key_mode_remote_to_public_key(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    made = remote_key(cli, kas, f"ur-{uid}", pc["id"])
    assert (made["key"]["key_mode"], made["key"]["provider_config"]["id"]) == (MODE["remote"], pc["id"])
    time.sleep(0.01)  # updated_at must move
    up = json.loads(unsafe_update(cli, "--id", made["key"]["id"], "--mode", "public_key", "--json").stdout)
    assert up["key"]["key_mode"] == MODE["public_key"] and "provider_config" not in up["key"]
    assert up["key"]["metadata"]["updated_at"] != made["key"]["metadata"]["updated_at"]
    assert stable(up, "key_mode", "provider_config") == stable(made, "key_mode", "provider_config")
    got = cli.json(*KEY, "get", "--key", made["key"]["id"])
    assert got == up  # persisted


def test_kas_keys_unsafe_update_public_key_to_remote(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    made = public_key(cli, kas, f"up-{uid}")
    assert made["key"]["key_mode"] == MODE["public_key"] and "provider_config" not in made["key"]
    time.sleep(0.01)
    up = json.loads(unsafe_update(cli, "--id", made["key"]["id"], "--mode", "remote", "--provider-config-id",
                                  pc["id"], "--json").stdout)
    assert (up["key"]["key_mode"], up["key"]["provider_config"]["id"]) == (MODE["remote"], pc["id"])
    assert up["key"]["metadata"]["updated_at"] != made["key"]["metadata"]["updated_at"]
    assert stable(up, "key_mode", "provider_config") == stable(made, "key_mode", "provider_config")
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == up


def test_kas_keys_unsafe_update_remote_key_provider_config_only(cli, kas, uid):
    first, second = file_kek_config(cli, f"{uid}a"), file_kek_config(cli, f"{uid}b")
    made = remote_key(cli, kas, f"uc-{uid}", first["id"])
    time.sleep(0.01)
    up = json.loads(unsafe_update(cli, "--id", made["key"]["id"], "-p", second["id"], "--json").stdout)
    assert (up["key"]["key_mode"], up["key"]["provider_config"]["id"]) == (MODE["remote"], second["id"])
    assert up["key"]["metadata"]["updated_at"] != made["key"]["metadata"]["updated_at"]
    assert stable(up, "provider_config") == stable(made, "provider_config")
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == up
    # the old provider config is no longer used by the key, so it can go
    cli(*P, "delete", "--id", first["id"], "--force")


def test_kas_keys_unsafe_update_key_failure_invalid_provider_config_not_uuid(cli, kas, uid):
    made = public_key(cli, kas, f"un-{uid}")
    r = unsafe_update(cli, "--id", made["key"]["id"], "--mode", "remote", "--provider-config-id", "not-a-uuid",
                      ok=False)
    assert "Optional flag '--provider-config-id' received value 'not-a-uuid' and must be a valid UUID if used" \
        in r.text
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made  # unchanged


def test_kas_keys_unsafe_update_key_failure_missing_id(cli):
    r = unsafe_update(cli, "--mode", "public_key", ok=False)
    assert 'required flag(s) "id" not set' in r.text and r.exit_code == 2  # cobra's words


def test_kas_keys_unsafe_update_key_failure_missing_provider_configuration(cli, kas, uid):
    made = remote_key(cli, kas, f"um-{uid}", file_kek_config(cli, uid)["id"])
    r = unsafe_update(cli, "--id", made["key"]["id"], ok=False)
    assert "provider_config_id is required for requested key mode [invalid_argument]" in r.text


def test_kas_keys_unsafe_update_key_failure_remote_mode_missing_provider_config(cli, kas, uid):
    made = public_key(cli, kas, f"urm-{uid}")
    r = unsafe_update(cli, "--id", made["key"]["id"], "--mode", "remote", ok=False)
    assert "provider_config_id is required for requested key mode [invalid_argument]" in r.text


def test_kas_keys_unsafe_update_key_failure_public_key_mode_with_provider_config(cli, kas, uid):
    pc = file_kek_config(cli, uid)
    made = remote_key(cli, kas, f"upp-{uid}", pc["id"])
    r = unsafe_update(cli, "--id", made["key"]["id"], "--mode", "public_key", "-p", pc["id"], ok=False)
    assert "provider_config_id must be empty for requested key mode [invalid_argument]" in r.text
    assert cli.json(*KEY, "get", "--key", made["key"]["id"])["key"]["key_mode"] == MODE["remote"]


def test_kas_keys_unsafe_update_key_failure_existing_key_mode_unsupported(cli, kas, uid):
    made = local_key(cli, kas, f"ul-{uid}")
    r = unsafe_update(cli, "--id", made["key"]["id"], "--mode", "public_key", ok=False)
    assert "existing key mode cannot be updated [invalid_argument]" in r.text
    assert cli.json(*KEY, "get", "--key", made["key"]["id"]) == made


def test_kas_keys_unsafe_update_key_failure_unsupported_mode(cli):
    r = unsafe_update(cli, "--id", "ded32e6d-9fec-4a4c-a391-13158c52e5f2", "--mode", "local", ok=False)
    assert 'mode must be "remote" or "public_key"' in r.text


def test_kas_keys_unsafe_update_key_not_found_and_unknown_provider_config(cli, kas, uid):
    # (not a bats case) the server's answers for an unknown key and an unknown provider config
    r = unsafe_update(cli, "--id", "ded32e6d-9fec-4a4c-a391-13158c52e5f2", "--mode", "public_key", ok=False)
    assert "[not_found]" in r.text
    made = public_key(cli, kas, f"uu-{uid}")
    r = unsafe_update(cli, "--id", made["key"]["id"], "--mode", "remote", "-p",
                      "ded32e6d-9fec-4a4c-a391-13158c52e5f2", ok=False)
    assert "provider_config_id does not reference an existing provider config [not_found]" in r.text


def test_kas_keys_unsafe_update_without_force_asks(cli, kas, uid):
    made = public_key(cli, kas, f"uf-{uid}")
    pc = file_kek_config(cli, uid)
    r = cli(*KEY, "unsafe", "update", "--id", made["key"]["id"], "--mode", "remote", "-p", pc["id"], ok=False)
    assert "Unsafely update key" in r.output and "Aborted" in r.output  # stdin says no
    assert cli.json(*KEY, "get", "--key", made["key"]["id"])["key"]["key_mode"] == MODE["public_key"]


# ---- search (kas-registry.bats, kas-keys.bats) -------------------------------------------

def test_list_registered_kases_supports_search_flag(cli, uid):
    prefix = f"search-kas-{uid}"
    match = cli.json(*KAS, "create", "--name", f"{prefix}-match", "--uri", f"https://{prefix}-match.example.com")
    other = cli.json(*KAS, "create", "--name", f"{prefix}-other", "--uri", f"https://{prefix}-other.example.com")

    def ids(term):
        return {k["id"] for k in cli.json(*KAS, "list", "--search", term, "--limit", "1000").get("key_access_servers", [])}

    assert match["id"] in ids(f"{prefix}-match") and other["id"] not in ids(f"{prefix}-match")
    assert {match["id"], other["id"]} <= ids(prefix.upper())  # any case, name or URI
    assert ids(f"{prefix}-other.example") == {other["id"]}  # a part of the URI only
    assert ids("%") == set()  # no wildcard
    page = cli.json(*KAS, "list", "--search", prefix)
    assert page["pagination"]["total"] == 2
    for kas_ in (match, other):
        cli(*KAS, "delete", "--id", kas_["id"], "--force")


def test_kas_keys_list_keys_supports_search_flag(cli, kas, uid):
    prefix = f"search-key-{uid}"
    match = public_key(cli, kas, f"{prefix}-match")
    other = public_key(cli, kas, f"{prefix}-other")

    def ids(*args):
        return [k["key"]["id"] for k in cli.json(*KEY, "list", "--kas", kas["id"], *args).get("kas_keys", [])]

    assert ids("--search", f"{prefix}-match") == [match["key"]["id"]]
    assert ids("--search", f"{prefix}-MATCH") == [match["key"]["id"]]
    assert ids("--search", prefix, "--sort", "key_id", "--order", "asc") == [match["key"]["id"], other["key"]["id"]]
    assert ids("--search", "_") == [] and ids("--search", "no-such-key") == []  # `_` is no wildcard
    assert set(ids("--search", "")) >= {match["key"]["id"], other["key"]["id"]}  # as otdfctl: no search sent
    for made, kid in ((match, f"{prefix}-match"), (other, f"{prefix}-other")):
        cli(*KEY, "unsafe", "delete", "--id", made["key"]["id"], "--kas-uri", kas["uri"], "--key-id", kid, "--force")


def test_search_on_the_wire_as_opentdf_sends_it(served, uid):
    # OpenTDF's field 12 (policy.Search) of the List requests: in JSON, as otdfctl-era clients send it,
    # and past OpenTDF's length rule.
    h = {**served.admin(), "content-type": "application/json"}
    made = httpx.post(f"{served.url}/policy.kasregistry.KeyAccessServerRegistryService/CreateKeyAccessServer",
                      json={"uri": f"https://wire-search-{uid}.example.com"}, headers=h, timeout=30).json()
    listed = httpx.post(f"{served.url}/policy.kasregistry.KeyAccessServerRegistryService/ListKeyAccessServers",
                        json={"search": {"term": f"WIRE-search-{uid}"}}, headers=h, timeout=30)
    assert listed.status_code == 200, listed.text
    assert [k["id"] for k in listed.json()["keyAccessServers"]] == [made["keyAccessServer"]["id"]]
    too_long = httpx.post(f"{served.url}/policy.kasregistry.KeyAccessServerRegistryService/ListKeys",
                          json={"search": {"term": "x" * 254}}, headers=h, timeout=30)
    assert too_long.status_code == 400 and too_long.json()["code"] == "invalid_argument"
    unsafe = httpx.post(f"{served.url}/policy.unsafe.UnsafeService/UnsafeUpdateKey",
                        json={"id": "not-a-uuid", "targetKeyMode": "KEY_MODE_REMOTE"}, headers=h, timeout=30)
    assert unsafe.status_code == 400 and "id: value must be a valid UUID" in unsafe.json()["message"]
    # admin only, as every unsafe RPC
    r = httpx.post(f"{served.url}/policy.unsafe.UnsafeService/UnsafeUpdateKey", json={},
                   headers={**served.client(), "content-type": "application/json"}, timeout=30)
    assert r.status_code == 403


# ---- kas-keys-mappings.bats ---------------------------------------------------------------
# OpenTDF's cases first map the keys to a namespace, an attribute and a value; this platform
# serves none of those, so every key has no mappings (README): the listing succeeds, empty.

@pytest.mark.parametrize("ref", ["id", "name", "uri"])
def test_kas_keys_mappings_list_key_mappings_for_a_specific_key_by_kas_DeliberateDifference(cli, kas, uid, ref):
    local_key(cli, kas, f"mp-{uid}")
    out = cli.json(*KEY, "list-mappings", "--kas", kas[ref], "--key-id", f"mp-{uid}")
    assert out == {"pagination": {}}  # no mappings, zero offsets and total: omitted (Go's omitempty)
    made = cli.json(*KEY, "get", "--key", f"mp-{uid}", "--kas", kas["id"])
    assert "key_mappings" not in cli.json(*KEY, "list-mappings", "--id", made["key"]["id"])
    # a key that does not exist is not found (not an empty list)
    r = cli(*KEY, "list-mappings", "--kas", kas[ref], "--key-id", f"none-{uid}", ok=False)
    assert "[not_found]" in r.text


def test_kas_keys_mappings_list_key_mappings_with_pagination_DeliberateDifference(cli, kas, uid):
    local_key(cli, kas, f"pg-{uid}")
    out = cli.json(*KEY, "list-mappings", "--limit", "1", "--offset", "0")
    assert out == {"pagination": {}}  # no mappings, total 0 (OpenTDF: >= 3, next_offset 1)
    assert "--limit" in cli(*KEY, "list-mappings", "--limit", "0", ok=False).text


def test_kas_keys_mappings_list_key_mappings_required_together_are_missing(cli, kas):
    r = cli(*KEY, "list-mappings", "--key-id", "nonexistent-key", "--json", ok=False)
    assert "if any flags in the group [key-id kas] are set they must all be set; missing [kas]" in r.text
    r = cli(*KEY, "list-mappings", "--kas", kas["name"], "--json", ok=False)
    assert "if any flags in the group [key-id kas] are set they must all be set; missing [key-id]" in r.text


def test_kas_keys_mappings_list_key_mappings_mutually_exclusive_flags(cli, kas, uid):
    r = cli(*KEY, "list-mappings", "--kas", kas["name"], "--key-id", "nonexistent-key",
            "--id", "ded32e6d-9fec-4a4c-a391-13158c52e5f2", "--json", ok=False)
    assert "if any flags in the group [kas id] are set none of the others can be; [id kas] were all set" in r.text


# ---- --with-client-creds-file against a real issuer ---------------------------------------

AUDIENCE = "http://platform.test"
CLIENT_ID, REALM = "opentdf-admin-client", "/realms/opentdf"


class LoopbackIdP:
    """Discovery, JWKS and a client-credentials token endpoint on 127.0.0.1 (one RSA key)."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.secret = secrets.token_urlsafe(24)
        self.grants: list[str] = []
        idp = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _json(self, code, doc):
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path == f"{REALM}/.well-known/openid-configuration":
                    self._json(200, {"issuer": idp.issuer, "jwks_uri": f"{idp.issuer}/protocol/openid-connect/certs",
                                     "token_endpoint": f"{idp.issuer}/protocol/openid-connect/token"})
                elif self.path == f"{REALM}/protocol/openid-connect/certs":
                    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(idp.key.public_key()))
                    self._json(200, {"keys": [{**jwk, "kid": "k1", "use": "sig"}]})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
                one = {k: v[0] for k, v in form.items()}
                if self.path != f"{REALM}/protocol/openid-connect/token":
                    return self._json(404, {"error": "not_found"})
                if one.get("grant_type") != "client_credentials" or one.get("client_id") != CLIENT_ID \
                        or one.get("client_secret") != idp.secret:
                    return self._json(401, {"error": "invalid_client"})
                now = int(time.time())
                token = jwt.encode({"iss": idp.issuer, "aud": AUDIENCE, "sub": CLIENT_ID, "azp": CLIENT_ID,
                                    "iat": now, "exp": now + 300, "realm_access": {"roles": ["opentdf-admin"]}},
                                   idp.key, algorithm="RS256", headers={"kid": "k1"})
                idp.grants.append(token)
                self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.httpd.server_port}{REALM}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def oidc_platform(tmp_path_factory):
    idp = LoopbackIdP()
    tmp = tmp_path_factory.mktemp("cli-creds")
    s = start_server(tmp, f"sqlite:///{tmp / 'state' / 'platform.db'}", env_extra={
        "PLATFORM_OIDC_ISSUER": idp.issuer, "PLATFORM_OIDC_AUDIENCE": AUDIENCE,
        "PLATFORM_OIDC_JWKS": f"{idp.issuer}/protocol/openid-connect/certs",
        "PLATFORM_OIDC_ROLE_CLAIM": "realm_access.roles"})
    yield s, idp, tmp
    s.stop()
    idp.httpd.shutdown()


def platform_cli(*args):
    """`platform ...` as a user runs it: its own process, the real entry point."""
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PLATFORM_")}
    return subprocess.run([sys.executable, "-c", "from host.cli import run; run()", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_with_client_creds_file_gets_a_token_and_lists_kases(oidc_platform, uid):
    s, idp, tmp = oidc_platform
    creds = tmp / f"creds-{uid}.json"
    creds.write_text(json.dumps({"clientId": CLIENT_ID, "clientSecret": idp.secret}))
    base = ("--host", s.url, "--with-client-creds-file", str(creds))
    made = platform_cli(*base, *KAS, "create", "--uri", f"https://creds-{uid}.example.com", "--json")
    assert made.returncode == 0, made.stderr
    listed = platform_cli(*base, *KAS, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(made.stdout)["id"] in [k["id"] for k in json.loads(listed.stdout)["key_access_servers"]]
    assert len(idp.grants) >= 2  # a client-credentials grant for each command, then the JWT was accepted
    assert "CreateKeyAccessServer" in s.wait_for_log("CreateKeyAccessServer")
    for out in (made, listed):
        assert idp.secret not in out.stdout + out.stderr and idp.grants[-1] not in out.stdout + out.stderr
    # The platform checks the issued JWT: a token of another key is refused.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode({"iss": idp.issuer, "aud": AUDIENCE, "exp": int(time.time()) + 60,
                         "realm_access": {"roles": ["opentdf-admin"]}}, other, algorithm="RS256",
                        headers={"kid": "k1"})
    r = platform_cli("--host", s.url, "--with-access-token", forged, *KAS, "list")
    assert r.returncode == 1 and "[unauthenticated]" in r.stderr


def one_line_error(r, *secret_parts):
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for part in secret_parts:
        assert part not in r.stderr + r.stdout
    return lines[0]


@pytest.mark.parametrize("content", [None, "{not json", '{"clientId": "x"}', '["a", "b"]',
                                     '{"clientId": 7, "clientSecret": "SECRET"}', ""])
def test_with_client_creds_file_missing_or_malformed(oidc_platform, uid, content):
    s, idp, tmp = oidc_platform
    path = tmp / f"bad-{uid}.json"
    if content is not None:
        # the secret in a file that does not parse, too
        path.write_text(content.replace("SECRET", idp.secret) if content != "{not json" else
                        '{"clientId": "' + CLIENT_ID + '", "clientSecret": "' + idp.secret + '"')
    r = platform_cli("--host", s.url, "--with-client-creds-file", str(path), *KAS, "list")
    line = one_line_error(r, idp.secret)
    assert "--with-client-creds-file" in line and "clientId and clientSecret" in line and "[invalid_argument]" in line


def test_with_client_creds_file_wrong_secret_is_refused_by_the_issuer(oidc_platform, uid):
    s, idp, tmp = oidc_platform
    wrong = secrets.token_urlsafe(16)
    path = tmp / f"wrong-{uid}.json"
    path.write_text(json.dumps({"clientId": CLIENT_ID, "clientSecret": wrong}))
    line = one_line_error(platform_cli("--host", s.url, "--with-client-creds-file", str(path), *KAS, "list"),
                          wrong, idp.secret)
    assert f"the issuer refused client '{CLIENT_ID}' (HTTP 401)" in line and "[unauthenticated]" in line


def test_with_client_creds_file_and_access_token_together_is_a_usage_error(oidc_platform, tmp_path):
    s, _, _ = oidc_platform
    r = platform_cli("--host", s.url, "--with-access-token", "t", "--with-client-creds-file", str(tmp_path / "c"),
                     *KAS, "list")
    assert r.returncode == 2 and "not both" in r.stderr



def test_with_client_creds_inline_as_otdfctl(oidc_platform):
    s, idp, _ = oidc_platform
    creds = json.dumps({"clientId": CLIENT_ID, "clientSecret": idp.secret})
    r = platform_cli("--host", s.url, "--with-client-creds", creds, *KAS, "list", "--json")
    assert r.returncode == 0, r.stderr
    assert "key_access_servers" in json.loads(r.stdout) and idp.secret not in r.stdout + r.stderr


# ---- auth.bats ----------------------------------------------------------------------------

def test_auth_helpful_error_if_wrong_platform_endpoint_host(oidc_platform, uid):
    s, idp, tmp = oidc_platform
    creds = tmp / f"ok-{uid}.json"
    creds.write_text(json.dumps({"clientId": CLIENT_ID, "clientSecret": idp.secret}))
    nothing = f"http://127.0.0.1:{free_port()}"
    line = one_line_error(platform_cli("--host", nothing, "--with-client-creds-file", str(creds), *KAS, "list"),
                          idp.secret)
    assert f"cannot reach the platform at {nothing}" in line and "[unavailable]" in line
    # with a token, the call itself says the same
    line = one_line_error(platform_cli("--host", nothing, "--with-access-token", "t", *KAS, "list"))
    assert f"cannot reach the platform at {nothing}" in line and "[unavailable]" in line


def test_auth_helpful_error_if_bad_credentials(oidc_platform, uid):
    s, idp, tmp = oidc_platform
    bad = tmp / f"bad-creds-{uid}.json"
    bad.write_text('{"clientId":"badClient","clientSecret":"badSecret"}')
    line = one_line_error(platform_cli("--host", s.url, "--with-client-creds-file", str(bad), *KAS, "list"),
                          "badSecret")
    assert "the issuer refused client 'badClient'" in line
    # malformed JSON given inline
    line = one_line_error(platform_cli("--host", s.url, "--with-client-creds",
                                       '{clientId:"badClient",clientSecret:"badSecret"}', *KAS, "list"), "badSecret")
    assert "--with-client-creds: expected a JSON object with clientId and clientSecret" in line


def test_auth_helpful_error_if_missing_client_credentials(oidc_platform):
    s, _, _ = oidc_platform
    r = platform_cli("--host", s.url, *KAS, "list")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "with --host, give one of --with-access-token, --with-client-creds-file or --with-client-creds" \
        in r.stderr


def test_auth_helpful_error_if_missing_host(oidc_platform, tmp_path):
    r = platform_cli("--with-client-creds-file", str(tmp_path / "creds.json"), *KAS, "list")
    assert r.returncode == 2 and "need --host" in r.stderr and "Traceback" not in r.stderr
