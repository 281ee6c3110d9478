"""create_ex honours its deadline even when the PKCS#11 module blocks (issue 14: a remote HSM
login can hang). The blocking module is real: OpenSC's pkcs11-spy in front of SoftHSM2, logging
to a FIFO nobody reads yet, so loading it blocks until a reader comes. The plugin runs isolated,
so the spy's process-wide state lives and dies with its child. GUARD_S guards against a hang; it
is not a performance threshold."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

import pytest

from host import errors
from host.isolation import load_isolated
from host.managers.base import CallContext
from host.pinning import PluginSpec
from tests.isolation.conftest import stop_child
from tests.pkcs11.labels import AES_KEY

SPY_PATHS = ("/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so", "/usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so",
             "/usr/lib/pkcs11/pkcs11-spy.so")
GUARD_S = 60


@pytest.fixture
def spy() -> str:
    for path in SPY_PATHS:
        if os.path.exists(path):
            return path
    pytest.fail("OpenSC's pkcs11-spy.so is not installed: run `make sysdeps`")


def bounded(fn):
    """fn() in a thread, joined within GUARD_S; its result or exception."""
    out: list = []

    def run():
        try:
            out.append(fn())
        except Exception as e:  # noqa: BLE001 - handed back to the test
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(GUARD_S)
    assert not t.is_alive(), "create hung past its deadline"
    return out[0]


def drain(fifo: Path) -> None:
    """Read the FIFO until every writer is gone (the child exits): the spy then never blocks."""
    with open(fifo, "rb", buffering=0) as f:
        while f.read(65536):
            pass


def test_create_ends_at_its_deadline_while_the_module_blocks(plugin_path, token, spy, tmp_path, monkeypatch):
    fifo = tmp_path / "spy.fifo"
    os.mkfifo(fifo)
    for name, value in {**token.env, "PKCS11SPY": token.module, "PKCS11SPY_OUTPUT": str(fifo)}.items():
        monkeypatch.setenv(name, value)  # the child inherits them at start
    plugin = load_isolated(PluginSpec(str(plugin_path), isolated=True))
    reader = None
    try:
        (factory,) = plugin.factories
        config = token.config_json(AES_KEY, module=spy)
        result = bounded(lambda: factory.create(config, CallContext.with_timeout(0.3, "p11-hung")))
        # DeadlineExceeded is the plugin's own answer; had it blocked, the supervisor would
        # have killed the child and the call would be Unavailable.
        assert isinstance(result, errors.DeadlineExceeded), result
        assert "did not finish" in result.message and token.user_pin not in result.message

        reader = threading.Thread(target=drain, args=(fifo,), daemon=True)
        reader.start()  # the module unblocks; the abandoned create finishes and cleans up
        manager = bounded(lambda: factory.create(config, CallContext.with_timeout(30)))
        assert not isinstance(manager, Exception), manager
        dek = secrets.token_bytes(32)
        assert manager.unwrap("", manager.wrap("", dek, CallContext.with_timeout(30)),
                              CallContext.with_timeout(30)) == dek
        manager.close()
    finally:
        stop_child(plugin)  # a child still blocked in the spy's open dies with it
        if reader is not None:
            reader.join(GUARD_S)


def test_create_ex_with_a_deadline_logs_in_on_softhsm(factory, token):
    """In-process, create_ex with the caller's deadline builds a working manager."""
    m = factory.create(token.config_json(AES_KEY), CallContext.with_timeout(30))
    try:
        m.probe(CallContext.with_timeout(30))
        dek = secrets.token_bytes(32)
        assert m.unwrap("", m.wrap("", dek)) == dek
    finally:
        m.close()
