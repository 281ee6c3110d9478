"""Isolated plugins (issue 14 item 1): the same .so in a supervised child.

The wild plugin (wild_plugin.c) misbehaves on request; loaded isolated,
each misbehaviour costs the calls in flight (`unavailable`), never the host,
and the next call runs in a fresh child.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading

import pytest

from host import errors
from host.isolation import IsolatedManager, load_isolated
from host.loader import load_plugin
from host.managers.base import CallContext
from host.pinning import PluginSpec
from host.plugin_specs import load_one
from tests.cbuild import ROOT
from tests.isolation.conftest import stop_child

FILE_KEK = ROOT / "build" / "plugins" / "file-kek-manager.so"


def ctx(seconds: float = 10.0, rid: str | None = None) -> CallContext:
    return CallContext.with_timeout(seconds, rid)


@pytest.fixture
def wild(wild_plugin):
    plugin = load_isolated(PluginSpec(str(wild_plugin), isolated=True))
    (factory,) = plugin.factories
    manager = factory.create(b"{}")
    yield manager
    manager.close()
    stop_child(plugin)


def pid_of(manager) -> int:
    return int(manager.unwrap("pid", b"", ctx()))


def test_descriptor_matches_the_in_process_one(wild_plugin):
    isolated = load_isolated(PluginSpec(str(wild_plugin), isolated=True))
    local = load_plugin(str(wild_plugin))
    try:
        assert (isolated.name, isolated.version, isolated.abi_version) == (local.name, local.version, local.abi_version)
        assert [f.describe() for f in isolated.factories] == [f.describe() for f in local.factories]
    finally:
        stop_child(isolated)


def test_create_errors_are_the_plugins_statuses(wild_plugin):
    plugin = load_isolated(PluginSpec(str(wild_plugin), isolated=True))
    try:
        with pytest.raises(errors.InvalidArgument, match="config must be a JSON object"):
            plugin.factories[0].create(b"not json")
    finally:
        stop_child(plugin)


@pytest.mark.parametrize("misbehaviour", ["segv", "abort", "exit", "sleep", "garbage"])
def test_misbehaviour_answers_unavailable_and_the_next_call_works(wild, misbehaviour):
    before = pid_of(wild)
    deadline = 1.0 if misbehaviour == "sleep" else 10.0  # sleep ignores it: the host kills the child
    with pytest.raises(errors.Unavailable) as e:
        wild.unwrap(misbehaviour, b"x", ctx(deadline))
    assert "isolated" in e.value.message
    assert wild.unwrap("", b"after", ctx()) == b"after"
    assert pid_of(wild) != before  # a new child, the manager re-created in it


def test_huge_out_len_is_refused_before_the_buffer_is_read(wild):
    before = pid_of(wild)
    with pytest.raises(errors.Internal, match="output cap"):
        wild.unwrap("huge", b"x", ctx())
    assert pid_of(wild) == before  # refused in the child; no restart needed


def test_a_crash_fails_every_call_in_flight(wild):
    results = {}

    def sleeper():
        try:
            results["sleep"] = wild.unwrap("sleep", b"x", ctx(30))
        except errors.PlatformError as e:
            results["sleep"] = e

    t = threading.Thread(target=sleeper)
    t.start()
    with pytest.raises(errors.Unavailable):
        wild.unwrap("segv", b"x", ctx())
    t.join(timeout=60)
    assert not t.is_alive()
    assert isinstance(results["sleep"], errors.Unavailable)
    assert wild.unwrap("", b"ok", ctx()) == b"ok"


def test_statuses_and_deadlines_as_in_process(wild):
    with pytest.raises(errors.CryptoError, match="authentication failed"):
        wild.unwrap("", b"bad", ctx())
    with pytest.raises(errors.DeadlineExceeded):
        wild.unwrap("", b"x", CallContext(deadline=0.0))
    with pytest.raises(errors.Unimplemented):
        wild.public_key("")
    assert wild.wrap("", b"plain") == b"plain"  # no CallContext: the supervisor's own limit applies
    assert isinstance(wild, IsolatedManager) and "wild" in repr(wild)


def test_log_lines_reach_the_host_log_with_the_request_id(wild, caplog):
    with caplog.at_level(logging.INFO, logger="host.plugin"):
        wild.unwrap("log", b"x", ctx(rid="req-iso-42"))
    (record,) = [r for r in caplog.records if r.getMessage() == "hello from wild"]
    assert record.name == "host.plugin.wild-manager.so"
    assert record.request_id == "req-iso-42" and record.levelno == logging.WARNING


def test_the_child_has_no_new_privs(wild):
    assert wild.unwrap("nnp", b"", ctx()) == b"\x01"


def test_the_child_is_not_dumpable(wild):
    """No ptrace attach or /proc/PID/mem read by other processes of the user (keys pass through)."""
    assert wild.unwrap("dumpable", b"", ctx()) == b"\x00"


def test_memory_limit(wild_plugin, monkeypatch):
    monkeypatch.setenv("PLATFORM_ISOLATED_MEMORY_MB", "256")
    plugin = load_isolated(PluginSpec(str(wild_plugin), isolated=True))
    manager = plugin.factories[0].create(b"{}")
    try:
        with pytest.raises(errors.Unavailable, match="allocation refused"):
            manager.unwrap("alloc", b"", ctx())
    finally:
        manager.close()
        stop_child(plugin)
    monkeypatch.setenv("PLATFORM_ISOLATED_MEMORY_MB", "2048")
    plugin = load_isolated(PluginSpec(str(wild_plugin), isolated=True))
    manager = plugin.factories[0].create(b"{}")
    try:
        assert manager.unwrap("alloc", b"fits", ctx()) == b"fits"  # the limit, not the plugin, refused above
    finally:
        manager.close()
        stop_child(plugin)


def test_concurrent_calls_are_multiplexed(wild):
    errors_seen = []

    def worker(n: int):
        for i in range(200):
            data = f"{n}-{i}".encode()
            try:
                assert wild.unwrap("", data, ctx()) == data
            except Exception as e:  # noqa: BLE001 - collected, asserted below
                errors_seen.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors_seen and not any(t.is_alive() for t in threads)


def test_file_kek_round_trip_isolated():
    plugin = load_one(f"isolated:{FILE_KEK}")
    kek = secrets.token_hex(32)
    manager = plugin.factories[0].create(json.dumps({"keks": {"a": kek}, "default_key_id": "a"}))
    local = load_plugin(str(FILE_KEK)).factories[0].create(json.dumps({"keks": {"a": kek}, "default_key_id": "a"}))
    try:
        dek = secrets.token_bytes(32)
        wrapped = manager.wrap("a", dek, ctx())
        assert manager.unwrap("a", wrapped, ctx()) == dek
        assert local.unwrap("a", wrapped) == dek  # the same format as in-process
        manager.probe(ctx())
        with pytest.raises(errors.CryptoError):
            manager.unwrap("a", wrapped[:-1] + bytes([wrapped[-1] ^ 1]), ctx())
        with pytest.raises(errors.NotFound):
            manager.wrap("nope", dek, ctx())
    finally:
        manager.close()
        local.close()
        stop_child(plugin)


def test_a_factory_without_thread_safe_is_called_by_one_thread_at_a_time(tmp_path):
    from tests.cbuild import build_shared
    from tests.isolation.conftest import HERE

    so = build_shared(HERE / "wild_plugin.c", tmp_path / "wild-serial-manager.so", {"NOT_THREAD_SAFE": None})
    plugin = load_isolated(PluginSpec(str(so), isolated=True))
    (factory,) = plugin.factories
    assert not factory.thread_safe
    manager = factory.create(b"{}")
    failures = []

    def worker():
        for _ in range(5):
            try:
                manager.unwrap("slow", b"x", ctx(30))
            except errors.PlatformError as e:
                failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not failures and manager.unwrap("maxc", b"", ctx()) == b"\x01"
    finally:
        manager.close()
        stop_child(plugin)


def test_a_slow_call_does_not_hold_up_the_others(wild):
    """The child's worker that reads a request runs it itself (no hand-off per call); one that
    is still running after a watcher tick (1-2 ms; "slow" sleeps 20 ms) passes the reading to an
    idle worker, so concurrent slow calls overlap in a thread-safe manager."""
    failures = []

    def worker():
        for _ in range(3):
            try:
                wild.unwrap("slow", b"x", ctx(30))
            except errors.PlatformError as e:
                failures.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not failures and not any(t.is_alive() for t in threads)
    assert wild.unwrap("maxc", b"", ctx())[0] >= 2


def test_a_caller_reading_its_own_reply_forwards_the_log_lines_before_it(wild, caplog):
    """No reader thread: a lone caller reads the socket itself, log frames first, then its reply."""
    with caplog.at_level(logging.INFO, logger="host.plugin"):
        for i in range(50):
            assert wild.unwrap("", f"n{i}".encode(), ctx()) == f"n{i}".encode()
            wild.unwrap("log", b"x", ctx(rid=f"r{i}"))
    assert [r.request_id for r in caplog.records if r.getMessage() == "hello from wild"] == [f"r{i}" for i in range(50)]
