"""The cffi loader: descriptor validation, buffers, status codes, threading."""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from host import errors
from host.loader import load_plugin, load_plugins
from host.managers.base import CallContext
from tests.cbuild import build_shared

SRC = Path(__file__).parent / "fixtures" / "misbehaving_plugin.c"
PLATFORM = Path(sys.executable).parent / "platform"


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("plugins")
    cache = {}

    def _build(name="good", **defines):
        if name not in cache:
            cache[name] = build_shared(SRC, out_dir / f"{name}.so", defines)
        return cache[name]

    return _build


def test_good_plugin_round_trip_and_destroy(build):
    plugin = load_plugin(str(build()))
    assert plugin.name == "misbehaving" and plugin.abi_version == "1.1"
    (factory,) = plugin.factories
    assert factory.name == "echo" and factory.thread_safe
    m = factory.create(b"{}")
    assert m.wrap("k", b"hello") == b"hello"
    assert m.unwrap("k", b"") == b""
    with pytest.raises(errors.CryptoError, match="authentication failed"):
        m.unwrap("k", b"bad")
    with pytest.raises(errors.NotFound, match="no key named missing"):
        m.wrap("missing", b"x")
    with pytest.raises(errors.Unimplemented):
        m.public_key("k")
    lib = ctypes.CDLL(plugin.path)
    before = lib.test_destroyed()
    m.close()
    m.close()  # destroy exactly once
    assert lib.test_destroyed() == before + 1
    with pytest.raises(errors.Unavailable):
        m.wrap("k", b"x")


def test_create_error_is_reported(build):
    (factory,) = load_plugin(str(build())).factories
    with pytest.raises(errors.InvalidArgument, match="config must be a JSON object"):
        factory.create(b"[1]")


def test_deadline_is_passed(build):
    (factory,) = load_plugin(str(build())).factories
    m = factory.create(b"{}")
    expired = CallContext(deadline=0.0)
    with pytest.raises(errors.DeadlineExceeded):
        m.unwrap("k", b"x", expired)
    assert m.unwrap("k", b"x", CallContext.with_timeout(30)) == b"x"


@pytest.mark.parametrize("variant,defines,match", [
    ("abi2", {"BAD_ABI_MAJOR": None}, r"built for key-manager ABI 2\.0; this host supports ABI 1\.x"),
    ("initnull", {"INIT_NULL": None}, "km_plugin_init returned NULL"),
    ("capfn", {"CAP_WITHOUT_FN": None}, "capability PUBLIC_KEY is set but ops.get_public_key is NULL"),
])
def test_bad_descriptors(build, variant, defines, match):
    path = build(variant, **defines)
    with pytest.raises(errors.PluginLoadError, match=match) as e:
        load_plugin(str(path))
    assert str(e.value).startswith(str(path))


def test_missing_and_non_elf_and_libc(tmp_path):
    with pytest.raises(errors.PluginLoadError, match="no such file"):
        load_plugin(str(tmp_path / "nope.so"))
    text = tmp_path / "plugin.so"
    text.write_text("#!/bin/sh\n")
    with pytest.raises(errors.PluginLoadError, match="not a shared library"):
        load_plugin(str(text))
    with pytest.raises(errors.PluginLoadError, match="does not export km_plugin_init"):
        load_plugin("/lib/x86_64-linux-gnu/libc.so.6" if Path("/lib/x86_64-linux-gnu/libc.so.6").exists()
                    else ctypes.util.find_library("c"))
    with pytest.raises(errors.PluginLoadError, match="is a directory"):
        load_plugin(str(tmp_path))


def test_plugin_return_values_are_checked(build):
    m = load_plugin(str(build("badstatus", BAD_STATUS=None))).factories[0].create(b"{}")
    with pytest.raises(errors.PluginError, match="status 99, which is not a KM_"):
        m.unwrap("k", b"x")
    m = load_plugin(str(build("oknull", OK_NULL_OUTPUT=None))).factories[0].create(b"{}")
    with pytest.raises(errors.PluginError, match="returned OK with a NULL output"):
        m.unwrap("k", b"x")
    m = load_plugin(str(build("badutf8", BAD_UTF8_ERROR=None))).factories[0].create(b"{}")
    with pytest.raises(errors.Internal, match="not valid UTF-8"):
        m.unwrap("k", b"x")


def test_duplicate_manager_names_and_paths(build, tmp_path):
    a = build()
    b = build("other", MANAGER='"echo"')
    with pytest.raises(errors.PluginLoadError, match=f"already registered by {a}"):
        load_plugins([str(a), str(b)])
    with pytest.raises(errors.PluginLoadError, match="given twice"):
        load_plugins([str(a), str(a)])


def _hammer(manager, threads=8, calls=50):
    failures = []

    def work():
        try:
            for i in range(calls):
                data = bytes([i]) * 16
                assert manager.wrap("k", data) == data
        except Exception as e:  # pragma: no cover - reported below
            failures.append(e)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not failures


def test_not_thread_safe_manager_is_serialized(build):
    path = build("serial", NOT_THREAD_SAFE=None)
    m = load_plugin(str(path)).factories[0].create(b"{}")
    _hammer(m)
    assert ctypes.CDLL(str(path)).test_max_concurrent() == 1


def test_thread_safe_manager_runs_in_parallel(build):
    path = build("parallel", MANAGER='"parallel"')
    m = load_plugin(str(path)).factories[0].create(b"{}")
    _hammer(m)
    # cffi releases the GIL around the call: calls overlap inside the plugin.
    assert ctypes.CDLL(str(path)).test_max_concurrent() > 1


def _platform(*args, env=None):
    return subprocess.run([str(PLATFORM), *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_plugins_list_and_inspect(build):
    path = str(build())
    r = _platform("--key-manager-plugin", path, "plugins", "list", "--json")
    assert r.returncode == 0, r.stderr
    import json
    names = {m["name"]: m for m in json.loads(r.stdout)["managers"]}
    assert names["echo"]["path"] == path and names["echo"]["abi_version"] == "1.1"
    assert names["echo"]["thread_safe"] is True and "wrap" in names["echo"]["capabilities"]
    assert "opentdf.io/basic" in names
    r = _platform("plugins", "inspect", path, "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["plugin"] == "misbehaving"


def test_cli_legacy_flag_warns_once(build):
    path = str(build())
    r = _platform("--key-manager-factories", f"echo={path}", "plugins", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("deprecated") == 1 and f"--key-manager-plugin={path}" in r.stderr
    assert '"echo"' in r.stdout


def test_cli_load_errors_are_one_line(build, tmp_path):
    for bad, why in [("/lib/x86_64-linux-gnu/libc.so.6", "does not export km_plugin_init"),
                     (str(tmp_path / "missing.so"), "no such file"),
                     (str(build("abi2b", BAD_ABI_MAJOR=None)), "ABI 2.0")]:
        r = _platform("--key-manager-plugin", bad, "plugins", "list")
        assert r.returncode != 0
        assert why in r.stderr and bad in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_loading_a_file_twice_initializes_it_once(build):
    path = str(build())
    first = load_plugin(path)
    assert load_plugin(path) is first
    assert load_plugin(str(Path(path).parent / "." / Path(path).name)) is first


def test_huge_out_len_is_refused_before_the_buffer_is_read(build, caplog):
    m = load_plugin(str(build("huge", HUGE_OUT_LEN=None))).factories[0].create(b"{}")
    with caplog.at_level("ERROR", logger="host.plugin"):
        with pytest.raises(errors.Internal, match=r"returned 1099511627776 bytes, more than the 1048576"):
            m.unwrap("k", b"x", CallContext(request_id="rid-huge"))
    (record,) = [r for r in caplog.records if "exceeds the host's limit" in r.getMessage()]
    assert record.fields == {"manager": "echo", "request_id": "rid-huge"}


def test_outputs_are_wiped_before_the_plugin_frees_them(build):
    path = build("wipe", MANAGER='"wipe"')
    lib = ctypes.CDLL(str(path))
    lib.test_nonzero_at_free.restype = ctypes.c_long
    m = load_plugin(str(path)).factories[0].create(b"{}")
    secret = bytes(range(1, 256)) * 16  # 4080 bytes, none of them zero
    assert m.unwrap("k", secret) == secret
    assert lib.test_nonzero_at_free() == 0
    assert m.wrap("k", secret, CallContext.with_timeout(30)) == secret
    assert lib.test_nonzero_at_free() == 0
    with pytest.raises(errors.Unavailable, match="failed after writing an output"):
        m.wrap("out-on-error", secret)  # a failing call that set *out: wiped and freed all the same
    assert lib.test_nonzero_at_free() == 0


def test_abi_1_1_rules_on_the_host_side(build):
    path = build("v11", MANAGER='"v11"')
    lib = ctypes.CDLL(str(path))
    lib.test_create_timeout_ms.restype = ctypes.c_long
    m = load_plugin(str(path)).factories[0].create(b"{}")
    # create_ex is used, with a deadline even when the caller gave none
    assert 0 < lib.test_create_timeout_ms() <= 30_000
    with pytest.raises(errors.FailedPrecondition, match="this key cannot wrap"):
        m.wrap("precondition", b"x")
    with pytest.raises(errors.Internal) as e:
        m.wrap("long-error", b"x")
    assert str(e.value).count("e") >= 1000 and len(str(e.value)) < 1100  # truncated at KM_MAX_ERROR_LEN
    # KM_OK after the deadline is deadline exceeded (the plugin answers 30 ms late)
    with pytest.raises(errors.DeadlineExceeded, match="after the call's deadline"):
        m.wrap("late", b"x", CallContext.with_timeout(0.02))
    assert m.wrap("late", b"x") == b"x"  # no deadline: nothing is late


def test_v1_0_factory_without_create_ex_still_works(build):
    path = build("v10create", MANAGER='"v10create"', NO_CREATE_EX=None)
    lib = ctypes.CDLL(str(path))
    lib.test_create_timeout_ms.restype = ctypes.c_long
    m = load_plugin(str(path)).factories[0].create(b"{}")
    assert m.wrap("k", b"x") == b"x" and lib.test_create_timeout_ms() == -1


def test_log_level_threshold_follows_the_host_logger(build):
    import logging
    from host.loader import sync_log_levels
    path = build("loglevel", MANAGER='"loglevel"')
    load_plugin(str(path))
    lib = ctypes.CDLL(str(path))
    logger = logging.getLogger(f"host.plugin.{Path(path).name}")
    try:
        logger.setLevel(logging.ERROR)
        sync_log_levels()
        assert lib.test_host_log_level() == logging.INFO  # plugins skip DEBUG; the logger filters the rest
        logger.setLevel(logging.DEBUG)
        sync_log_levels()
        assert lib.test_host_log_level() == logging.DEBUG
    finally:
        logger.setLevel(logging.NOTSET)
        sync_log_levels()
