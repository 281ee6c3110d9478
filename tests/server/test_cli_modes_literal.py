"""The admin CLI as otdfctl's e2e files call it (issue 15): the `platform` process itself, with
otdfctl's global flags after the subcommand (`policy kas-registry --host H --with-access-token T
create ...`, as cobra's persistent flags), against one real `platform serve`.

These pin what running otdfctl's own bats files through a thin shim showed (docs/parity.md):
cobra's required-flag and flag-group words, stray words ignored, and API errors printed as
otdfctl prints them (`Failed to <action>: <code>: <message>`). Names follow the bats cases.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

from tests.server.conftest import ROOT
from tests.server.test_cli_modes import pem_b64, served, uid  # noqa: F401

P = ("policy", "keymanagement", "provider")
KAS = ("policy", "kas-registry")
KEY = ("policy", "kas-registry", "key")


class Otdfctl:
    """`platform GROUP... --host H --with-access-token T SUBCOMMAND ARGS`, as the bats order them."""

    def __init__(self, served):
        self.served = served
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}

    def __call__(self, group, *args, ok=True):
        argv = [*group, "--host", self.served.url, "--with-access-token", self.served.admin_token, *map(str, args)]
        r = subprocess.run([sys.executable, "-c", "from host.cli import run; run()", *argv], cwd=ROOT, env=self.env,
                           capture_output=True, text=True, timeout=60)
        r.text = r.stdout + r.stderr
        assert (r.returncode == 0) == ok, r.text
        assert self.served.admin_token not in r.text
        return r


@pytest.fixture(scope="module")
def otdfctl(served):
    return Otdfctl(served)


@pytest.fixture(scope="module")
def kas(otdfctl):
    import json

    suffix = os.urandom(3).hex()
    return json.loads(otdfctl(KAS, "create", "--uri", f"https://lit-{suffix}.example.com", "--name", f"lit-{suffix}",
                              "--json").stdout)


# ---- kas-registry.bats -----------------------------------------------------------------

def test_create_kas_registration_with_invalid_uri_fails(otdfctl):
    r = otdfctl(KAS, "create", "--uri", "no-scheme.co", ok=False)
    assert "Failed to create Registered KAS entry: invalid_argument: uri" in r.text


def test_create_kas_registration_with_duplicate_uri_fails(otdfctl, uid):
    otdfctl(KAS, "create", "--uri", f"https://dup-{uid}.example.com")
    r = otdfctl(KAS, "create", "--uri", f"https://dup-{uid}.example.com", ok=False)
    assert "Failed to create Registered KAS entry: already_exists" in r.text


def test_update_registered_kas_with_invalid_uri_fails(otdfctl, kas):
    r = otdfctl(KAS, "update", "--id", kas["id"], "--uri", "https//newuri.com", ok=False)
    assert f"Failed to update Registered KAS entry ({kas['id']}): invalid_argument" in r.text


def test_log_level_is_a_global_flag_anywhere(otdfctl):
    assert otdfctl(KAS, "list", "--log-level", "debug", "--json").stdout.lstrip().startswith("{")
    r = otdfctl(KAS, "list", "--log-level", "loud", ok=False)
    assert "--log-level" in r.text


# ---- provider-config.bats --------------------------------------------------------------

def test_fail_to_create_provider_configuration_without_config(otdfctl):
    r = otdfctl(P, "create", "--name", "no-config", "--manager", "opentdf.io/basic", ok=False)
    assert 'required flag(s) "config" not set' in r.text


def test_fail_to_create_provider_configuration_without_name(otdfctl):
    r = otdfctl(P, "create", "--manager", "opentdf.io/basic", "--config", "{}", ok=False)
    assert 'required flag(s) "name" not set' in r.text


def test_fail_to_get_provider_configuration_no_name_with_manager(otdfctl):
    r = otdfctl(P, "get", "--manager", "opentdf.io/basic", ok=False)
    assert "if any flags in the group [name manager] are set they must all be set; missing [name]" in r.text


def test_fail_to_get_provider_configuration_with_id_name(otdfctl):
    r = otdfctl(P, "get", "--id", "test-id", "--manager", "m", "--name", "a-name", ok=False)
    assert "if any flags in the group [id name] are set none of the others can be; [id name] were all set" in r.text


def test_fail_to_get_provider_configuration_no_required_flags(otdfctl):
    assert "at least one of the flags in the group [id name] is required" in otdfctl(P, "get", ok=False).text


def test_fail_to_get_provider_configuration_with_non_existent_name(otdfctl, uid):
    r = otdfctl(P, "get", "--name", f"absent-{uid}", "--manager", "opentdf.io/basic", ok=False)
    assert "Failed to get provider config: not_found" in r.text


def test_fail_to_get_provider_configuration_with_empty_name_and_manager(otdfctl):
    # by name_manager, as otdfctl sends it: the service's rule on it
    r = otdfctl(P, "get", "--name", "", "--manager", "", ok=False)
    assert "name_manager.name" in r.text and "[string.min_len]" in r.text


def test_fail_to_update_provider_configuration_invalid_config_format(otdfctl, uid):
    import json

    made = json.loads(otdfctl(P, "create", "--name", f"upd-{uid}", "--manager", "opentdf.io/basic",
                              "--config", "{}", "--json").stdout)
    # `--config {invalid: json}` unquoted in sh: a stray word, ignored as cobra does; the config is refused
    r = otdfctl(P, "update", "--id", made["id"], "--config", "{invalid:", "json}", ok=False)
    assert "Failed to update provider config: invalid_argument" in r.text
    r = otdfctl(P, "update", "--id", made["id"], ok=False)
    assert "At least one field (name, manager, config, or metadata labels) must be updated" in r.text


def test_delete_provider_configuration_fail_no_id(otdfctl):
    assert 'required flag(s) "id" not set' in otdfctl(P, "delete", "--force", ok=False).text


# ---- kas-keys.bats ---------------------------------------------------------------------

def _create(otdfctl, kas, kid, *args, ok=False):
    return otdfctl(KEY, "create", "--kas", kas["id"], "--key-id", kid, *args, ok=ok)


def test_kas_keys_create_key_invalid_algorithm_value(otdfctl, kas, uid):
    r = _create(otdfctl, kas, f"ia-{uid}", "--algorithm", "invalid-algorithm-value", "--mode", "public_key",
                "--public-key-pem", pem_b64())
    assert "invalid algorithm" in r.text


def test_kas_keys_create_key_invalid_mode_value(otdfctl, kas, uid):
    r = _create(otdfctl, kas, f"im-{uid}", "--algorithm", "rsa:2048", "--mode", "invalid-mode-value",
                "--public-key-pem", pem_b64())
    assert "invalid mode" in r.text


def test_kas_keys_list_keys_invalid_algorithm_and_legacy(otdfctl):
    assert "Invalid algorithm" in otdfctl(KEY, "list", "--algorithm", "invalid-algorithm", "--json", ok=False).text
    assert "Invalid legacy flag" in otdfctl(KEY, "list", "--legacy", "invalid", "--json", ok=False).text


def test_kas_keys_create_key_public_key_mode_missing_pem(otdfctl, kas, uid):
    r = _create(otdfctl, kas, f"np-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key")
    assert "Flag '--public-key-pem' is required" in r.text


def test_kas_keys_create_key_public_key_mode_pem_not_base64(otdfctl, kas, uid):
    r = _create(otdfctl, kas, f"nb-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key",
                "--public-key-pem", "not-base64-value")
    assert "pem must be base64 encoded" in r.text


def test_kas_keys_create_key_public_key_mode_invalid_pem_content(otdfctl, kas, uid):
    bad = base64.b64encode(b"not a pem\n").decode()
    r = _create(otdfctl, kas, f"ip-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key", "--public-key-pem", bad)
    assert "invalid public key pem" in r.text
    r = _create(otdfctl, kas, f"ec-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key",
                "--public-key-pem", pem_b64("ec:secp256r1"))
    assert "invalid public key pem" in r.text


def test_kas_keys_create_key_remote_mode_missing_provider_config_id(otdfctl, kas, uid):
    r = _create(otdfctl, kas, f"rp-{uid}", "--algorithm", "rsa:2048", "--mode", "remote", "--public-key-pem",
                pem_b64(), "--wrapping-key-id", "wk-1")
    assert "Flag '--provider-config-id' is required" in r.text


def test_kas_keys_create_key_invalid_hex_encoded_wrapping_key(otdfctl, kas, uid):
    r = _create(otdfctl, kas, f"hx-{uid}", "--algorithm", "rsa:2048", "--mode", "local", "--wrapping-key-id", "w",
                "--wrapping-key", "not-hex-encoded")
    assert "wrapping-key must be hex encoded" in r.text


def test_kas_keys_create_key_invalid_kas_identifier(otdfctl, uid):
    r = otdfctl(KEY, "create", "--kas", "invalid-kas-id", "--key-id", f"ik-{uid}", "--algorithm", "rsa:2048",
                "--mode", "public_key", "--public-key-pem", pem_b64(), ok=False)
    assert "Failed to resolve KAS identifier 'invalid-kas-id': not_found: resource not found" in r.text


def test_kas_keys_create_key_duplicate_key_id(otdfctl, kas, uid):
    pem = pem_b64()
    _create(otdfctl, kas, f"dk-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key", "--public-key-pem", pem,
            ok=True)
    r = _create(otdfctl, kas, f"dk-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key", "--public-key-pem", pem)
    assert "Failed to create kas key: already_exists" in r.text


def test_kas_keys_get_key_not_found_by_system_id(otdfctl):
    r = otdfctl(KEY, "get", "--key", "39af808f-6cac-403f-90d7-6b88e865860d", ok=False)
    assert "Failed to get kas key: not_found" in r.text


def test_kas_keys_update_key_not_found(otdfctl):
    r = otdfctl(KEY, "update", "--id", "39af808f-6cac-403f-90d7-6b88e865860d", "--label", "a=b", ok=False)
    assert "Failed to update kas key: not_found" in r.text


def test_kas_keys_rotate_key_public_key_mode_missing_public_key_pem(otdfctl, uid):
    # otdfctl checks the flags before it looks the old key up: the flag, not "not found"
    r = otdfctl(KEY, "rotate", "--key", f"old-{uid}", "--key-id", f"new-{uid}", "--algorithm", "rsa:2048",
                "--mode", "public_key", ok=False)
    assert "Flag '--public-key-pem' is required" in r.text


def test_kas_keys_rotate_key_local_mode_missing_wrapping_key(otdfctl, uid):
    r = otdfctl(KEY, "rotate", "--key", f"old-{uid}", "--key-id", f"new-{uid}", "--algorithm", "rsa:2048",
                "--mode", "local", "--wrapping-key-id", "w", ok=False)
    assert "Flag '--wrapping-key' is required" in r.text


def test_kas_keys_import_key_failure_missing_required_private_key(otdfctl, kas, uid):
    r = otdfctl(KEY, "import", "--key-id", f"imp-{uid}", "--algorithm", "rsa:2048", "--kas", kas["id"],
                "--wrapping-key-id", "w", "--wrapping-key", "00" * 32, "--public-key-pem", pem_b64(), ok=False)
    assert 'required flag(s) "private-key-pem" not set' in r.text


def test_kas_keys_import_key_failure_missing_wrapping_key(otdfctl, kas, uid):
    pem = pem_b64()
    r = otdfctl(KEY, "import", "--key-id", f"imw-{uid}", "--algorithm", "rsa:2048", "--kas", kas["id"],
                "--wrapping-key-id", "w", "--public-key-pem", pem, "--private-key-pem", pem, ok=False)
    assert 'required flag(s) "wrapping-key" not set' in r.text



# ---- --json: what otdfctl prints (Go's encoding/json of the proto structs) ----------------

def _go_text(r) -> dict:
    """The JSON on stdout, checked to be the text Go's encoder writes for it (two-space indent,
    one final newline, the keys in struct order)."""
    import json

    from host.cli.gojson import dumps

    doc = json.loads(r.stdout)
    assert r.stdout == dumps(doc) + "\n"
    return doc


def test_kas_keys_create_key_public_key_mode_json_is_otdfctls(otdfctl, kas, uid):
    pem = pem_b64()
    made = _go_text(_create(otdfctl, kas, f"js-{uid}", "--algorithm", "rsa:2048", "--mode", "public_key",
                            "--public-key-pem", pem, "--label", "b=2", "--label", "a=1", "--json", ok=True))
    assert list(made) == ["kas_id", "key", "kas_uri"] and made["kas_id"] == kas["id"]
    key = made["key"]
    # enums as numbers; legacy false, private_key_ctx and provider_config unset: absent (jq: null)
    assert (key["key_algorithm"], key["key_mode"], key["key_status"]) == (1, 4, 1)
    assert "legacy" not in key and "private_key_ctx" not in key and "provider_config" not in key
    assert key["public_key_ctx"] == {"pem": pem}
    md = key["metadata"]
    assert list(md["labels"]) == ["a", "b"] and set(md["created_at"]) <= {"seconds", "nanos"}
    assert isinstance(md["created_at"]["seconds"], int)
    got = _go_text(otdfctl(KEY, "get", "--key", key["id"], "--json"))
    assert got == made
    listed = _go_text(otdfctl(KEY, "list", "--kas", kas["id"], "--json"))
    assert made in listed["kas_keys"] and listed["pagination"]["total"] >= 1


def test_kas_registry_json_is_otdfctls(otdfctl, uid):
    made = _go_text(otdfctl(KAS, "create", "--uri", f"https://js-{uid}.example.com", "--name", f"js-{uid}",
                            "--json"))
    assert list(made) == ["id", "uri", "name", "metadata"]  # no public_key, no kas_keys: absent
    assert _go_text(otdfctl(KAS, "get", "--id", made["id"], "--json")) == made
    gone = _go_text(otdfctl(KAS, "delete", "--id", made["id"], "--force", "--json"))
    assert gone["id"] == made["id"]


def test_provider_config_delete_json_is_null(otdfctl, uid):
    made = _go_text(otdfctl(P, "create", "--name", f"jsn-{uid}", "--manager", "opentdf.io/basic", "--config", "{}",
                            "--json"))
    assert made["config_json"] == base64.b64encode(b"{}").decode()
    assert otdfctl(P, "delete", "--id", made["id"], "--force", "--json").stdout == "null\n"  # ExitWithJSON(nil)


def _json_error(r) -> str:
    import json

    from host.cli.gojson import dumps

    assert r.stdout == "" and r.returncode == 1
    doc = json.loads(r.stderr)
    assert r.stderr == dumps(doc) + "\n" and list(doc) == ["message", "status"]  # a Go map: sorted keys
    assert doc["status"] == "ERROR"
    return doc["message"]


def test_kas_keys_get_key_failure_only_kas_missing_key_id_or_system_id(otdfctl, kas):
    assert _json_error(otdfctl(KEY, "get", "--kas", kas["id"], "--json", ok=False)) == 'required flag(s) "key" not set'


def test_kas_keys_update_key_missing_id(otdfctl):
    assert _json_error(otdfctl(KEY, "update", "--json", ok=False)) == 'required flag(s) "id" not set'


def test_json_api_error_is_otdfctls_error_json(otdfctl):
    message = _json_error(otdfctl(KEY, "get", "--key", "39af808f-6cac-403f-90d7-6b88e865860d", "--json", ok=False))
    assert message.startswith("Failed to get kas key: not_found: ")



# ---- the persistent flags stay under `policy` ------------------------------------------

def test_serve_keeps_its_own_host_flag(tmp_path):
    """`serve --host ADDR` is the listen address, not otdfctl's --host: only flags after `policy` move.
    (127.0.0.2, not the default 127.0.0.1, so a --host taken by the wrong command shows.)"""
    import time

    import httpx

    from tests.server.conftest import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    env.update({"PLATFORM_STATE_DIR": str(tmp_path / "state"), "PLATFORM_ADMIN_TOKENS": os.urandom(12).hex(),
                "PLATFORM_ROOT_KEY": os.urandom(32).hex(),
                "PLATFORM_DB_URL": f"sqlite:///{tmp_path / 'state' / 'platform.db'}"})
    (tmp_path / "state").mkdir()
    proc = subprocess.Popen([sys.executable, "-c", "from host.cli import run; run()", "serve", "--host", "127.0.0.2",
                             "--port", str(port), "--workers", "1"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.2:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "serve --host 127.0.0.2 did not come up"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
