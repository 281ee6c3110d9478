"""Shared fixtures for plugin tests: building pyembed plugins, a raw ABI
driver (host.abi's cffi view, no loader in between), and moto's standalone
KMS server on a free loopback port.

Other plugin tests may append their fixtures below the marked section.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.make import make_or_fail

REPO = Path(__file__).resolve().parents[2]
PY = REPO / ".venv" / "bin" / "python"
PYEMBED_BUILD = REPO / "plugins" / "_pyembed" / "build.py"
PLUGIN_DIR = REPO / "build" / "plugins"
TEST_PLUGIN_DIR = REPO / "build" / "test-plugins"


# ---- building plugins -------------------------------------------------------
def _build_pyembed(declaration: Path, out: Path) -> Path:
    """Build a pyembed plugin (same command as pyembed.mk); fail the test on error."""
    tmpdir = REPO / "build" / "pyembed" / out.name.removesuffix("-manager.so")
    proc = subprocess.run([str(PY), str(PYEMBED_BUILD), str(declaration), "--out", str(out),
                           "--tmpdir", str(tmpdir)], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        pytest.fail(f"building {out.name} failed:\n{proc.stderr}")
    return out


@pytest.fixture(scope="session")
def build_pyembed():
    """build_pyembed(plugin.toml, out .so) -> out (fails the test on a build error)."""
    return _build_pyembed


@pytest.fixture(scope="session")
def aws_kms_plugin() -> Path:
    """build/plugins/aws-kms-manager.so, (re)built through make like `make plugins` does."""
    target = "build/plugins/aws-kms-manager.so"
    make_or_fail(target)
    return REPO / target


# ---- a raw ABI driver ---------------------------------------------------------
@dataclass
class Result:
    status: int
    out: bytes | None
    error: str | None


@dataclass
class RawPlugin:
    """Calls a plugin .so through the C ABI exactly as declared in keymanager.h."""

    path: Path
    lib: object
    desc: object
    logs: list = field(default_factory=list)
    _keep: list = field(default_factory=list)

    @property
    def factory(self):
        return self.desc.factories[0]

    def _take(self, status, out, out_len, err) -> Result:
        from host.abi import ffi

        data = bytes(ffi.buffer(out[0], out_len[0])) if out is not None and out[0] != ffi.NULL else None
        message = ffi.string(err[0]).decode("utf-8") if err[0] != ffi.NULL else None
        if out is not None and out[0] != ffi.NULL:
            self.desc.free(out[0])
        if err[0] != ffi.NULL:
            self.desc.free(err[0])
        return Result(status, data if status == 0 else None, message)

    def create(self, config: bytes | dict):
        from host.abi import ffi

        raw = json.dumps(config).encode() if isinstance(config, dict) else config
        mgr, err = ffi.new("km_manager **"), ffi.new("char **")
        status = self.factory.create(raw, len(raw), mgr, err)
        result = self._take(status, None, None, err)
        return (mgr[0] if status == 0 else None), result

    def call(self, mgr, op: str, key_id: str = "", data: bytes = b"", timeout_ms: int = 0,
             request_id: str | None = "test-request") -> Result:
        from host.abi import ffi

        out, out_len, err = ffi.new("uint8_t **"), ffi.new("size_t *"), ffi.new("char **")
        rid = ffi.new("char[]", request_id.encode()) if request_id else ffi.NULL
        ctx = ffi.new("km_call_ctx *", {"struct_size": ffi.sizeof("km_call_ctx"),
                                         "timeout_ms": timeout_ms, "request_id": rid})
        key = key_id.encode()
        ops = self.factory.ops
        if op == "probe":
            status = ops.probe(mgr, ctx, err)
            return self._take(status, None, None, err)
        if op == "public_key":
            status = ops.get_public_key(mgr, ctx, key, out, out_len, err)
        else:
            status = getattr(ops, op)(mgr, ctx, key, data, len(data), out, out_len, err)
        return self._take(status, out, out_len, err)

    def destroy(self, mgr) -> None:
        self.factory.ops.destroy(mgr)


@pytest.fixture(scope="session")
def load_raw():
    """load_raw(path) -> RawPlugin; the plugin's log lines land in .logs."""
    from host.abi import ffi

    loaded: dict[Path, RawPlugin] = {}

    def load(path: Path) -> RawPlugin:
        path = Path(path).resolve()
        if path in loaded:
            return loaded[path]
        logs: list = []

        @ffi.callback("void(void *, int32_t, const char *, const char *)")
        def log(_ctx, level, request_id, message):
            logs.append((level, ffi.string(request_id).decode() if request_id != ffi.NULL else None,
                         ffi.string(message).decode("utf-8", "replace")))

        lib = ffi.dlopen(str(path))
        host = ffi.new("km_host *", {"struct_size": ffi.sizeof("km_host"), "abi_major": 1,
                                     "abi_minor": 0, "log": log, "log_ctx": ffi.NULL})
        desc = lib.km_plugin_init(host)
        if desc == ffi.NULL:
            pytest.fail(f"km_plugin_init({path.name}) returned NULL; log: {logs}")
        plugin = RawPlugin(path, lib, desc, logs, [log, host])
        loaded[path] = plugin
        return plugin

    return load


# ---- moto's standalone server (real HTTP, separate process) --------------------
@dataclass
class MotoServer:
    url: str
    proc: subprocess.Popen
    region: str = "us-east-1"
    # moto accepts any credentials until IAM auth is switched on (see enable_auth)
    access_key_id: str = "AKIAMOTOTESTKEY00001"
    secret_access_key: str = "moto-test-secret-0123456789abcdefghijklmn"

    def client(self, service: str = "kms", **credentials):
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.url,
                            aws_access_key_id=credentials.get("access_key_id", self.access_key_id),
                            aws_secret_access_key=credentials.get("secret_access_key", self.secret_access_key))

    @contextlib.contextmanager
    def recording(self):
        """moto's request recorder (/moto-api/recorder/*): yields a list that, on exit, holds the
        (KMS operation, KeyId) of every request the server received inside the block."""
        def post(action: str) -> bytes:
            req = urllib.request.Request(f"{self.url}/moto-api/recorder/{action}", method="POST", data=b"")
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.read()

        seen: list[tuple[str, str | None]] = []
        post("reset-recording")
        post("start-recording")
        try:
            yield seen
        finally:
            post("stop-recording")
            with urllib.request.urlopen(f"{self.url}/moto-api/recorder/download-recording", timeout=10) as resp:
                lines = resp.read().decode().splitlines()
            for line in lines:
                entry = json.loads(line)
                target = {k.lower(): v for k, v in entry["headers"].items()}.get("x-amz-target", "")
                body = entry.get("body") or ""
                if entry.get("body_encoded"):
                    import base64
                    body = base64.b64decode(body).decode("utf-8", "replace")
                key_id = json.loads(body).get("KeyId") if body.startswith("{") else None
                seen.append((target.rpartition(".")[2], key_id))

    def set_auth(self, initial_no_auth_count: float) -> None:
        """moto's /moto-api/reset-auth: authenticate every request after N more (inf = never)."""
        # text/plain: with a form content type Flask would swallow the body
        req = urllib.request.Request(f"{self.url}/moto-api/reset-auth", method="POST",
                                     data=str(initial_no_auth_count).encode(),
                                     headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200


def _start_moto() -> MotoServer:
    exe = shutil.which("moto_server", path=str(PY.parent)) or shutil.which("moto_server")
    if exe is None:
        pytest.skip("moto_server not installed (moto[server])")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # the recorder's log (see MotoServer.recording) goes to a temp dir, not moto's cwd
    env["MOTO_RECORDER_FILEPATH"] = os.path.join(tempfile.mkdtemp(prefix="moto-recording-"), "requests.jsonl")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):  # poll readiness; no timing assumption beyond "eventually"
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=2):
                return MotoServer(url, proc)
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.1)
    proc.kill()
    pytest.fail("moto_server did not start")


def _stop(server: MotoServer) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait()


@pytest.fixture(scope="session")
def moto_server():
    """moto's KMS (and IAM) over real HTTP on 127.0.0.1, one per test session."""
    server = _start_moto()
    yield server
    _stop(server)


@pytest.fixture(scope="module")
def moto_auth_server():
    """A separate moto server for tests that switch IAM authentication on."""
    server = _start_moto()
    yield server
    _stop(server)


# ---- end of pyembed/aws-kms fixtures; other plugins' fixtures follow ----------


# ---- shared by the aws-kms, vault and azure plugin tests ------------------------
def ctx(seconds: float = 60):
    """A call context with a generous deadline (a deadline test passes its own)."""
    from host.managers.base import CallContext

    return CallContext.with_timeout(seconds)


def load_factory(so: Path, plugin_name: str):
    """The one factory of a plugin .so that registers one manager named like the plugin, loaded
    through host.loader and speaking the host's ABI version."""
    from host.abi import ABI_MAJOR, ABI_MINOR
    from host.loader import load_plugin

    loaded = load_plugin(str(so))
    assert (loaded.name, loaded.abi_version) == (plugin_name, f"{ABI_MAJOR}.{ABI_MINOR}")
    (factory,) = loaded.factories
    assert factory.name == plugin_name
    return factory


@pytest.fixture
def make(factory):
    """make(config) -> a live manager from the module's `factory`; closed after the test."""
    made = []

    def build(config: dict | bytes):
        raw = config if isinstance(config, bytes) else json.dumps(config).encode()
        manager = factory.create(raw)
        made.append(manager)
        return manager

    yield build
    for manager in made:
        manager.close()
