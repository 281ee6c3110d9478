"""OpenTDF's official JavaScript client (@opentdf/client, pinned) against a real `platform serve`,
configured as its README says: a kasEndpoint and an AuthProvider (a static bearer token), no
public key handed in, no path rewriting. Node runs tests/jsclient/tdf.mjs once per operation.

The client is installed with npm into build/jsclient on first use and reused while the pinned
version is there; without node or npm on the machine the module is skipped (saying so).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from tests.plugins.conftest import moto_server  # noqa: F401  (the aws-kms group of Groups)
from tests.server.conftest import ROOT
from tests.tdf.conftest import start_kas_platform
from tests.tdf.test_roundtrip import CASES, Groups

JS_CLIENT = "@opentdf/client"
JS_CLIENT_VERSION = "2.0.0-beta.1412"
JS_DIR = ROOT / "build" / "jsclient"
DRIVER = Path(__file__).with_name("tdf.mjs")
NODE_TIMEOUT_S = 120


def _installed_version() -> str | None:
    try:
        return json.loads((JS_DIR / "node_modules" / JS_CLIENT / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


@pytest.fixture(scope="session")
def js_client() -> Path:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the JavaScript client cannot run")
    if _installed_version() != JS_CLIENT_VERSION:
        if shutil.which("npm") is None:
            pytest.skip(f"npm is not installed: cannot install {JS_CLIENT}@{JS_CLIENT_VERSION}")
        JS_DIR.mkdir(parents=True, exist_ok=True)
        (JS_DIR / "package.json").write_text(json.dumps(
            {"name": "platform-jsclient-tests", "private": True, "type": "module",
             "dependencies": {JS_CLIENT: JS_CLIENT_VERSION}}, indent=1) + "\n")
        proc = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--save-exact"], cwd=JS_DIR,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0 or _installed_version() != JS_CLIENT_VERSION:
            pytest.fail(f"npm install {JS_CLIENT}@{JS_CLIENT_VERSION} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return JS_DIR


class JsClient:
    def __init__(self, kp, js_dir: Path, tmp: Path):
        self.kp, self.tmp = kp, tmp
        self.env = dict(os.environ, KAS_ENDPOINT=kp.kas_url, CLIENT_TOKEN=kp.server.client_token,
                        JS_CLIENT_DIR=str(js_dir))
        self.n = 0

    def run(self, op: str, fmt: str, data: bytes) -> subprocess.CompletedProcess:
        self.n += 1
        src, dst = self.tmp / f"in-{self.n}", self.tmp / f"out-{self.n}"
        src.write_bytes(data)
        proc = subprocess.run(["node", str(DRIVER), op, fmt, str(src), str(dst)], env=self.env,
                              capture_output=True, text=True, timeout=NODE_TIMEOUT_S)
        proc.output = dst.read_bytes() if proc.returncode == 0 else None
        return proc

    def ok(self, op: str, fmt: str, data: bytes) -> bytes:
        proc = self.run(op, fmt, data)
        assert proc.returncode == 0, f"node {op} {fmt} failed:\n{proc.stderr[-3000:]}"
        return proc.output

    def encrypt(self, fmt: str, data: bytes) -> bytes:
        return self.ok("encrypt", fmt, data)

    def decrypt(self, fmt: str, data: bytes) -> bytes:
        return self.ok("decrypt", fmt, data)


@pytest.fixture(scope="module")
def basic(tmp_path_factory, js_client):
    kp = start_kas_platform(tmp_path_factory.mktemp("js-basic"))
    kp.activate("rsa:2048", "local", key_id="r1")
    kp.activate("ec:secp256r1", "local", key_id="e1")
    yield JsClient(kp, js_client, tmp_path_factory.mktemp("js-files"))
    kp.stop()


@pytest.mark.parametrize("fmt", ["tdf", "nano"])
def test_roundtrip(basic, fmt):
    data = os.urandom(2048) + b"through the official JavaScript client\n"
    sealed = basic.encrypt(fmt, data)
    assert data not in sealed
    assert basic.decrypt(fmt, sealed) == data
    log = basic.kp.server.wait_for_log('"path":"/kas/v2/rewrap"', '"path":"/kas/kas_public_key"')
    assert '"path":"/kas/v2/rewrap"' in log  # the REST routes, as the client calls them


def _with_policy(tdf: bytes, policy_b64: str) -> bytes:
    """The same TDF with another policy in its manifest (the key access object is unchanged)."""
    src = zipfile.ZipFile(io.BytesIO(tdf))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            body = src.read(item.filename)
            if item.filename.endswith("manifest.json"):
                manifest = json.loads(body)
                manifest["encryptionInformation"]["policy"] = policy_b64
                body = json.dumps(manifest).encode()
            dst.writestr(item.filename, body)
    return out.getvalue()


def test_tampered_policy_is_refused(basic):
    data = b"policy-bound\n" * 50
    sealed = basic.encrypt("tdf", data)
    original = json.loads(zipfile.ZipFile(io.BytesIO(sealed)).read("0.manifest.json"))
    policy_b64 = original["encryptionInformation"]["policy"]
    assert basic.decrypt("tdf", _with_policy(sealed, policy_b64)) == data  # rewriting the zip alone: fine
    forged = base64.b64encode(json.dumps({"uuid": "forged", "body": {"dataAttributes": []}}).encode()).decode()
    proc = basic.run("decrypt", "tdf", _with_policy(sealed, forged))
    assert proc.returncode != 0
    log = basic.kp.server.wait_for_log('"failed":1')
    (line,) = [json.loads(x) for x in log.splitlines() if '"failed":1' in x]
    assert line["msg"] == "rewrap" and line["errors"] == ["permission_denied"]


def test_kidless_tdf_decrypts_after_rotations(basic):
    """This client writes no kid (it fetches the key from /kas/kas_public_key, which names none)."""
    data = b"written before the rotation\n" * 20
    sealed = basic.encrypt("tdf", data)
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(sealed)).read("0.manifest.json"))
    assert not manifest["encryptionInformation"]["keyAccess"][0].get("kid")
    for i in range(3):
        basic.kp.activate("rsa:2048", "local", key_id=f"js-rotated-{i}")
        assert basic.decrypt("tdf", sealed) == data
    fresh = basic.encrypt("tdf", data)  # and new ones go to the new active key
    assert basic.decrypt("tdf", fresh) == data


@pytest.fixture(scope="module")
def groups(tmp_path_factory, request):
    g = Groups(tmp_path_factory, request)
    yield g
    g.close()


@pytest.mark.parametrize("manager, mode, algorithm", CASES, ids=[f"{m}-{mo}-{a}" for m, mo, a in CASES])
def test_every_manager(groups, js_client, tmp_path, manager, mode, algorithm):
    """Each manager the Python-SDK round trip covers, through this client: RSA keys with standard
    TDF, P-256 keys with NanoTDF; a kid-less TDF written before a rotation still decrypts."""
    kp, providers, _ = groups.get(manager)
    choice = providers.get(f"{mode}:{algorithm}", providers.get(mode))
    provider, wrapping_key_id = choice if isinstance(choice, tuple) else (choice, "")
    kp.activate(algorithm, mode, provider=provider, wrapping_key_id=wrapping_key_id)
    js = JsClient(kp, js_client, tmp_path)
    fmt = "tdf" if algorithm.startswith("rsa:") else "nano"
    data = os.urandom(1024) + f"{manager}/{mode}/{algorithm}\n".encode()
    sealed = js.encrypt(fmt, data)
    assert js.decrypt(fmt, sealed) == data
    if fmt == "tdf":
        kp.activate(algorithm, "local")  # rotated out: the manager's key still serves the old TDF
        assert js.decrypt(fmt, sealed) == data
