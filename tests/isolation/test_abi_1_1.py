"""The isolated runner is the same ABI 1.1 host as the in-process loader: each check runs the
wild plugin both ways and expects the same answer (log threshold, create_ex and its deadline,
FAILED_PRECONDITION, KM_OK after the deadline, a status that is no KM_* code)."""

from __future__ import annotations

import logging

import pytest

from host import errors
from host.isolation import load_isolated
from host.loader import load_plugin, sync_log_levels
from host.managers.base import CallContext
from host.pinning import PluginSpec
from tests.cbuild import build_shared
from tests.isolation.conftest import HERE, stop_child


def ctx(seconds: float = 10.0) -> CallContext:
    return CallContext.with_timeout(seconds)


@pytest.fixture(params=["in-process", "isolated"])
def factory(request, wild_plugin):
    """The wild factory, in-process or isolated."""
    if request.param == "in-process":
        yield load_plugin(str(wild_plugin)).factories[0]
        return
    plugin = load_isolated(PluginSpec(str(wild_plugin), isolated=True))
    yield plugin.factories[0]
    stop_child(plugin)


@pytest.fixture
def manager(factory):
    m = factory.create(b"{}")
    yield m
    m.close()


def text(manager, key: str) -> str:
    return manager.unwrap(key, b"", ctx()).decode()


def test_failed_precondition_reaches_the_host(manager):
    with pytest.raises(errors.FailedPrecondition):
        manager.unwrap("precond", b"x", ctx())


def test_the_log_threshold_is_the_hosts(manager, wild_plugin):
    logger = logging.getLogger(f"host.plugin.{wild_plugin.name}")
    try:
        logger.setLevel(logging.DEBUG)
        sync_log_levels()
        assert text(manager, "loglevel") == str(logging.DEBUG)
        logger.setLevel(logging.ERROR)  # INFO and above always reach the host, which filters them
        sync_log_levels()
        assert text(manager, "loglevel") == str(logging.INFO)
    finally:
        logger.setLevel(logging.NOTSET)
        sync_log_levels()


def test_create_ex_gets_the_callers_deadline(factory):
    m = factory.create(b"{}", ctx(5))
    try:
        assert 0 < int(text(m, "created")) <= 5000
    finally:
        m.close()
    m = factory.create(b"{}")  # no caller deadline: the host's own create limit, never "none"
    try:
        assert int(text(m, "created")) > 5000
    finally:
        m.close()


def test_create_ok_after_the_deadline_is_deadline_exceeded_and_destroyed(factory, manager):
    before = int(text(manager, "destroyed"))
    with pytest.raises(errors.DeadlineExceeded):
        factory.create(b'{"late": 1}', ctx(0.3))
    assert int(text(manager, "destroyed")) == before + 1


def test_ok_after_the_deadline_is_deadline_exceeded(manager):
    before = text(manager, "pid")
    with pytest.raises(errors.DeadlineExceeded):
        manager.unwrap("late", b"x", ctx(0.3))
    assert text(manager, "pid") == before  # answered in time to say so: no restart


def test_a_status_that_is_no_km_code_is_internal(manager):
    with pytest.raises(errors.Internal, match="not a KM_"):
        manager.unwrap("badstatus", b"x", ctx())


@pytest.mark.parametrize("mode", ["in-process", "isolated"])
def test_a_factory_without_create_ex_gets_create(tmp_path, mode):
    so = build_shared(HERE / "wild_plugin.c", tmp_path / "wild-1-0-manager.so", {"NO_CREATE_EX": None})
    plugin = load_plugin(str(so)) if mode == "in-process" else load_isolated(PluginSpec(str(so), isolated=True))
    m = plugin.factories[0].create(b"{}", ctx())
    try:
        assert text(m, "created") == "create"
    finally:
        m.close()
        if mode == "isolated":
            stop_child(plugin)
