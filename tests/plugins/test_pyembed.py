"""The pyembed adapter: a Python manager class compiled to a C-ABI plugin.

Uses tests/plugins/echo_plugin (a tiny manager whose special key ids raise
each error kind) built into build/test-plugins/, driven three ways: through
the raw ABI (host.abi's cffi view), through host.loader, and from a plain C
program that dlopens the plugin RTLD_LOCAL.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from host.abi import ffi

REPO = Path(__file__).resolve().parents[2]
TEST_PLUGIN_DIR = REPO / "build" / "test-plugins"
ECHO_DIR = REPO / "tests" / "plugins" / "echo_plugin"
SECRET = "pyembed-secret-5d0c9e1b7a"

H = ffi.dlopen(None)  # keymanager.h's #define constants, through host.abi's declarations of the header
KM_OK, KM_INVALID, KM_NOT_FOUND, KM_DENIED, KM_UNAVAILABLE = (
    H.KM_OK, H.KM_ERR_INVALID_ARGUMENT, H.KM_ERR_NOT_FOUND, H.KM_ERR_PERMISSION_DENIED, H.KM_ERR_UNAVAILABLE)
KM_DEADLINE, KM_UNIMPLEMENTED, KM_INTERNAL, KM_CRYPTO = (
    H.KM_ERR_DEADLINE_EXCEEDED, H.KM_ERR_UNIMPLEMENTED, H.KM_ERR_INTERNAL, H.KM_ERR_CRYPTO)


@pytest.fixture(scope="module")
def echo_so(build_pyembed) -> Path:
    return build_pyembed(ECHO_DIR / "plugin.toml", TEST_PLUGIN_DIR / "echo-test-manager.so")


@pytest.fixture(scope="module")
def serial_so(build_pyembed) -> Path:
    return build_pyembed(ECHO_DIR / "serial.toml", TEST_PLUGIN_DIR / "echo-serial-test-manager.so")


@pytest.fixture(scope="module")
def broken_so(build_pyembed) -> Path:
    return build_pyembed(ECHO_DIR / "broken.toml", TEST_PLUGIN_DIR / "echo-broken-test-manager.so")


@pytest.fixture(scope="module")
def c_host() -> Path:
    exe = TEST_PLUGIN_DIR / "c_host"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-std=c11", f"-I{REPO / 'include'}",
                    "-o", str(exe), str(ECHO_DIR / "c_host.c"), "-ldl", "-lpthread"], check=True)
    return exe


@pytest.fixture
def echo(load_raw, echo_so):
    plugin = load_raw(echo_so)
    mgr, result = plugin.create({"secret": SECRET})
    assert result.status == KM_OK, result
    plugin.logs.clear()
    yield plugin, mgr
    plugin.destroy(mgr)


# ---- the build --------------------------------------------------------------------
def test_only_km_plugin_init_is_exported(echo_so):
    out = subprocess.run(["nm", "-D", "--defined-only", str(echo_so)], capture_output=True,
                         text=True, check=True).stdout
    symbols = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert symbols == {"km_plugin_init"}


def test_make_rule_builds_the_declared_output(tmp_path):
    # pyembed.mk's rule for aws-kms, with the rule's command as make prints it
    out = subprocess.run(["make", "-n", "-B", "build/plugins/aws-kms-manager.so"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    assert ".venv/bin/python plugins/_pyembed/build.py plugins/aws_kms/plugin.toml" in out
    assert "--out build/plugins/aws-kms-manager.so --tmpdir build/pyembed/aws-kms" in out


@pytest.mark.parametrize("body, needle", [
    ('plugin = "x"\nversion = "1"\nmanager = "x"\ncapabilities = ["wrap"]\n', "'class' must be"),
    ('plugin = "x"\nversion = "1"\nmanager = "x"\nclass = "m:C"\ncapabilities = ["fly"]\n', "'capabilities'"),
    ('plugin = "x"\nversion = "1"\nmanager = "X Y"\nclass = "m:C"\ncapabilities = ["wrap"]\n', "'manager' must"),
    ('plugin = "x"\nversion = "1"\nmanager = "x"\nclass = "m.C"\ncapabilities = ["wrap"]\n', "module:Class"),
    ('plugin = "x"\nversion = "1"\nmanager = "x"\nclass = "m:C"\ncapabilities = ["wrap"]\ncolour = 1\n',
     "unknown keys"),
    ('plugin = "x"\nversion = "1"\nmanager = "x"\nclass = "m:C"\ncapabilities = ["wrap"]\nthread_safe = "yes"\n',
     "'thread_safe'"),
    ('plugin = "x\n', "plugin.toml"),
])
def test_bad_declarations_fail_with_one_line(tmp_path, body, needle):
    decl = tmp_path / "plugin.toml"
    decl.write_text(body)
    proc = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "plugins/_pyembed/build.py"), str(decl),
                           "--out", str(tmp_path / "x-manager.so")], capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_output_name_must_match_the_manager(tmp_path):
    proc = subprocess.run([str(REPO / ".venv/bin/python"), str(REPO / "plugins/_pyembed/build.py"),
                           str(ECHO_DIR / "plugin.toml"), "--out", str(tmp_path / "other-manager.so")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "echo-test-manager.so" in proc.stderr


# ---- descriptor and create ------------------------------------------------------------
def test_descriptor_comes_from_the_declaration(load_raw, echo_so, serial_so):
    from host.abi import ffi

    echo = load_raw(echo_so)
    assert ffi.string(echo.desc.plugin_name) == b"echo-test"
    assert ffi.string(echo.desc.plugin_version) == b"0.0.1"
    assert (echo.desc.abi_major, echo.desc.abi_minor) == (1, 1)
    assert ffi.string(echo.factory.manager_name) == b"echo-test"
    assert echo.factory.capabilities == (H.KM_CAP_THREAD_SAFE | H.KM_CAP_WRAP | H.KM_CAP_UNWRAP
                                         | H.KM_CAP_PUBLIC_KEY | H.KM_CAP_PROBE)
    serial = load_raw(serial_so)
    assert serial.factory.capabilities == H.KM_CAP_WRAP | H.KM_CAP_UNWRAP  # not thread-safe
    assert serial.factory.ops.get_public_key == ffi.NULL and serial.factory.ops.probe == ffi.NULL


@pytest.mark.parametrize("config, needle", [
    (b"", "empty"),
    (b"   ", "empty"),
    (b'{"secret": "' + SECRET.encode() + b'"', "not valid JSON (line 1"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"secret": "\xff\xfe"}', "not valid UTF-8"),
    (json.dumps({"secret": SECRET, "bogus": 1}).encode(), "unknown config keys: ['bogus']"),
])
def test_bad_configs_are_invalid_argument_without_echo(load_raw, echo_so, config, needle):
    plugin = load_raw(echo_so)
    mgr, result = plugin.create(config)
    assert mgr is None
    assert result.status == KM_INVALID
    assert needle in result.error and SECRET not in result.error


# ---- calls and error mapping ----------------------------------------------------------
def test_round_trip_and_buffers(echo):
    plugin, mgr = echo
    for data in (b"", b"x", bytes(range(256)) * 40):
        wrapped = plugin.call(mgr, "wrap", "", data)
        assert wrapped.status == KM_OK and wrapped.out == b"ECHO:" + data and wrapped.error is None
        back = plugin.call(mgr, "unwrap", "", wrapped.out)
        assert back.status == KM_OK and back.out == data


@pytest.mark.parametrize("key_id, status, message", [
    ("missing", KM_NOT_FOUND, "key 'missing' does not exist"),
    ("denied", KM_DENIED, "credentials refused"),
    ("down", KM_UNAVAILABLE, "backend unavailable"),
    ("notimpl", KM_UNIMPLEMENTED, "operation not supported by this manager"),
    ("host-unavailable", KM_UNAVAILABLE, "host error host-unavailable"),
    ("host-notfound", KM_NOT_FOUND, "host error host-notfound"),
    ("host-crypto", KM_CRYPTO, "host error host-crypto"),
    ("badtype", KM_INTERNAL, "manager returned str, expected bytes"),
])
def test_exceptions_map_to_status_codes(echo, key_id, status, message):
    plugin, mgr = echo
    result = plugin.call(mgr, "wrap", key_id, b"data")
    assert (result.status, result.error, result.out) == (status, message, None)


def test_crypto_error_on_bad_ciphertext(echo):
    plugin, mgr = echo
    result = plugin.call(mgr, "unwrap", "", b"not-echo")
    assert result.status == KM_CRYPTO and "not produced by this manager" in result.error


def test_unknown_exception_is_internal_generic_and_logged_by_type_only(echo):
    plugin, mgr = echo
    result = plugin.call(mgr, "unwrap", "boom", b"ECHO:x", request_id="req-boom")
    assert result.status == KM_INTERNAL
    assert result.error == "internal error in echo-test manager (unwrap); see the host log"
    errors = [entry for entry in plugin.logs if entry[0] == 40]
    assert errors and errors[-1][1] == "req-boom"
    assert "RuntimeError at echo_manager.py:" in errors[-1][2]
    assert all(SECRET not in entry[2] and "Traceback" not in entry[2] for entry in plugin.logs)


def test_timeout_and_request_id_reach_the_manager(echo):
    plugin, mgr = echo
    result = plugin.call(mgr, "wrap", "log", b"x", timeout_ms=1500, request_id="req-42")
    assert result.status == KM_OK
    assert (30, "req-42", "echo-test: request req-42 timeout=1.5") in plugin.logs
    plugin.call(mgr, "wrap", "log", b"x", timeout_ms=0, request_id=None)
    assert (30, None, "echo-test: request None timeout=None") in plugin.logs


def test_manager_gives_up_at_the_deadline(echo):
    plugin, mgr = echo
    result = plugin.call(mgr, "wrap", "wait-deadline", b"x", timeout_ms=30)
    assert result.status == KM_DEADLINE and result.error == "gave up at the deadline"


def test_public_key_probe_and_probe_failure(load_raw, echo_so, echo):
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    plugin, mgr = echo
    pem = plugin.call(mgr, "public_key", "")
    assert pem.status == KM_OK and load_pem_public_key(pem.out).key_size == 256
    assert plugin.call(mgr, "probe").status == KM_OK
    bad, result = plugin.create({"secret": "fail-probe"})
    assert result.status == KM_OK
    probe = plugin.call(bad, "probe")
    assert (probe.status, probe.error) == (KM_UNAVAILABLE, "probe failed")
    plugin.destroy(bad)


def test_close_failure_is_logged_not_raised(load_raw, echo_so):
    plugin = load_raw(echo_so)
    mgr, result = plugin.create({"secret": "fail-close"})
    assert result.status == KM_OK
    plugin.destroy(mgr)
    assert any(level == 30 and "close failed: RuntimeError at echo_manager.py" in msg
               for level, _rid, msg in plugin.logs)
    assert all("fail-close" not in msg for _l, _r, msg in plugin.logs)


def test_destroyed_handles_are_refused(load_raw, echo_so):
    from host.abi import ffi

    plugin = load_raw(echo_so)
    mgr, _ = plugin.create({})
    # a second manager struct pointing at a destroyed handle: build one by hand
    handle = ffi.cast("uint64_t *", mgr)[0]
    plugin.destroy(mgr)
    fake = ffi.new("uint64_t *", handle)
    result = plugin.call(ffi.cast("km_manager *", fake), "wrap", "", b"x")
    assert result.status == KM_INVALID and "unknown or destroyed manager" in result.error


# ---- threads ----------------------------------------------------------------------------
def test_thread_safe_manager_runs_calls_concurrently(echo):
    # The manager's "barrier" key only returns once 4 calls are inside it at once.
    plugin, mgr = echo
    results = []

    def worker():
        results.append(plugin.call(mgr, "wrap", "barrier", b"x"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status for r in results] == [KM_OK] * 4


def test_not_thread_safe_manager_is_serialized_by_the_adapter(load_raw, serial_so):
    # Called straight through the ABI from 4 threads (no host serialization):
    # the adapter's per-manager lock keeps at most one call inside.
    plugin = load_raw(serial_so)
    mgr, result = plugin.create({})
    assert result.status == KM_OK

    def worker():
        for _ in range(5):
            assert plugin.call(mgr, "wrap", "count", b"x").status == KM_OK

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert plugin.call(mgr, "wrap", "max-active", b"").out == b"1"
    plugin.destroy(mgr)


# ---- through the Python host's loader -------------------------------------------------
def test_loaded_by_the_host_loader(echo_so, caplog):
    from host import errors
    from host.loader import load_plugin
    from host.managers.base import CallContext, Capability

    plugin = load_plugin(str(echo_so))
    assert (plugin.name, plugin.version, plugin.abi_version) == ("echo-test", "0.0.1", "1.1")
    (factory,) = plugin.factories
    assert factory.name == "echo-test" and Capability.THREAD_SAFE in factory.capabilities
    manager = factory.create(json.dumps({"secret": SECRET}).encode())
    try:
        ctx = CallContext.with_timeout(10)
        assert manager.unwrap("", manager.wrap("", b"dek", ctx), ctx) == b"dek"
        with pytest.raises(errors.CryptoError):
            manager.unwrap("", b"garbage")
        with pytest.raises(errors.NotFound):
            manager.wrap("missing", b"x")
        with pytest.raises(errors.Internal) as excinfo:
            manager.wrap("boom", b"x")
        assert SECRET not in str(excinfo.value)
        with pytest.raises(errors.DeadlineExceeded):
            manager.wrap("wait-deadline", b"x", CallContext.with_timeout(0.05))
        results, failures = [], []

        def worker():
            try:
                results.append(manager.wrap("barrier", b"x"))
            except Exception as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures and results == [b"ECHO:x"] * 4
    finally:
        manager.close()
    assert SECRET not in caplog.text


def test_plugin_that_cannot_import_its_class_refuses_to_load(broken_so, caplog):
    from host import errors
    from host.loader import load_plugin

    with pytest.raises(errors.PluginLoadError) as excinfo:
        load_plugin(str(broken_so))
    assert "km_plugin_init returned NULL" in str(excinfo.value)
    assert "cannot import echo_no_such_module:Nothing: ModuleNotFoundError" in caplog.text


# ---- a plain C host (dlopen RTLD_LOCAL, Python not running) ------------------------------
def _run_c_host(c_host, so, config, threads, calls, **env):
    base = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH, no venv activation
    return subprocess.run([str(c_host), str(so), config, str(threads), str(calls)], cwd="/tmp",
                          env={**base, **env}, capture_output=True, text=True, timeout=120)


def test_plain_c_host_starts_python_and_calls_from_threads(c_host, echo_so):
    proc = _run_c_host(c_host, echo_so, json.dumps({"secret": SECRET}), 4, 25)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "ok 100"
    assert "echo-test: echo manager created" in proc.stderr and SECRET not in proc.stderr


def test_plain_c_host_with_unusable_python_refuses_to_load(c_host, echo_so):
    proc = _run_c_host(c_host, echo_so, "{}", 1, 1, PYTHONHOME="/nonexistent")
    assert proc.stdout.strip() == "init NULL"
    assert "pyembed: Python failed to start" in proc.stderr


def test_plain_c_host_with_unimportable_class_refuses_to_load(c_host, broken_so):
    proc = _run_c_host(c_host, broken_so, "{}", 1, 1)
    assert proc.stdout.strip() == "init NULL"
    assert "No module named 'echo_no_such_module'" in proc.stderr


def test_plain_c_host_honours_km_pyembed_path(c_host, echo_so, tmp_path):
    # A module on KM_PYEMBED_PATH shadows the baked plugin dir: the override works.
    (tmp_path / "echo_manager.py").write_text(
        "class EchoManager:\n"
        "    def __init__(self, config):\n"
        "        raise ValueError('shadow')\n"
        "    wrap = unwrap = public_key = probe = close = None\n")
    proc = _run_c_host(c_host, echo_so, "{}", 1, 1, KM_PYEMBED_PATH=str(tmp_path))
    assert proc.stdout.strip() == "init NULL"  # declared methods missing: refused at load
    assert "lacks declared methods ['wrap', 'unwrap', 'public_key', 'probe']" in proc.stderr
    (tmp_path / "echo_manager.py").write_text(
        "class EchoManager:\n"
        "    def __init__(self, config):\n"
        "        raise ValueError('shadow')\n"
        "    def wrap(self): pass\n"
        "    unwrap = public_key = probe = close = wrap\n")
    proc = _run_c_host(c_host, echo_so, "{}", 1, 1, KM_PYEMBED_PATH=str(tmp_path))
    assert proc.stdout.strip() == f"create {KM_INTERNAL} internal error in echo-test manager (create); see the host log"
    assert "ValueError at echo_manager.py:3 in __init__" in proc.stderr


def test_status_codes_match_the_header(monkeypatch):
    # km_pyembed runs inside plugins without the host package, so it carries its own copy of the
    # KM_* numbers; the header (read by host.abi) is the truth they must equal.
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "plugins" / "_pyembed"))
    pyerrors = importlib.import_module("km_pyembed.errors")
    assert pyerrors.__file__.startswith(str(Path(__file__).resolve().parents[2])) and "km_pyembed" in sys.modules

    names = [n for n in dir(pyerrors) if n == "KM_OK" or n.startswith("KM_ERR_")]
    assert len(names) == 10
    for name in names:
        assert getattr(pyerrors, name) == getattr(H, name), name
