"""Live managers by lease: a retired manager is destroyed exactly once, when its last call returns."""

from __future__ import annotations

import ctypes
import dataclasses
import datetime as dt
import threading
import time
from pathlib import Path

import pytest

from host import errors
from host.loader import load_plugin
from host.registry import ManagerRegistry
from host.store.records import ProviderConfig
from tests.cbuild import build_shared

SRC = Path(__file__).parent / "fixtures" / "misbehaving_plugin.c"
BUMPS = 150          # revision changes in the hammer test
MAX_CALLS = 200_000  # per unwrap thread, a bound only: threads stop when the bumps are done
JOIN_LIMIT_S = 60    # a guard against hanging forever, not a performance assertion


@pytest.fixture(scope="module")
def lease_plugin(tmp_path_factory):
    # destroyed managers are poisoned, not freed: a call reaching one fails instead of corrupting memory
    path = build_shared(SRC, tmp_path_factory.mktemp("lease") / "lease.so",
                        {"MANAGER": '"lease-echo"', "KEEP_DESTROYED": None})
    lib = ctypes.CDLL(str(path))
    return load_plugin(str(path)), lib


def _config(revision: int, config_id: str = "cfg-lease") -> ProviderConfig:
    now = dt.datetime.now(dt.timezone.utc)
    return ProviderConfig(id=config_id, name="lease", manager="lease-echo", config_json=b"{}", labels={},
                          created_at=now, updated_at=now, revision=revision)


def test_revision_bumps_under_load_destroy_each_retired_manager_once(lease_plugin):
    plugin, lib = lease_plugin
    reg = ManagerRegistry.with_builtins([plugin])
    created0, destroyed0 = lib.test_created(), lib.test_destroyed()
    current = [_config(1)]
    stop = threading.Event()
    failures: list[BaseException] = []
    calls = [0] * 4

    def unwrapper(i: int) -> None:
        data = bytes([i + 1]) * 32
        for n in range(MAX_CALLS):
            if stop.is_set():
                break
            try:
                assert reg.manager_for(current[0]).unwrap("k", data) == data
            except BaseException as e:  # reported below
                failures.append(e)
                break
            calls[i] = n + 1

    def bumper() -> None:
        for revision in range(2, BUMPS + 2):
            current[0] = dataclasses.replace(current[0], revision=revision)
            if revision % 2:
                reg.manager_for(current[0])  # builds from this thread too, racing the unwrappers
            time.sleep(0.0005)
        stop.set()

    threads = [threading.Thread(target=unwrapper, args=(i,)) for i in range(4)] + [threading.Thread(target=bumper)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_LIMIT_S)
    stop.set()
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[:3]
    assert all(calls), calls
    created = lib.test_created() - created0
    assert created >= 2  # the revision did change under the unwrappers
    # every manager but the live one is destroyed as soon as its last call returned, each exactly once
    assert lib.test_destroyed() - destroyed0 == created - 1 == reg.destroyed
    assert lib.test_bad_destroys() == 0
    reg.close()
    assert lib.test_destroyed() - destroyed0 == created == reg.destroyed
    assert lib.test_bad_destroys() == 0


def test_a_held_lease_defers_destroy_until_it_returns(lease_plugin):
    plugin, lib = lease_plugin
    reg = ManagerRegistry.with_builtins([plugin])
    before = lib.test_destroyed()
    with reg.lease(_config(1, "cfg-held")) as manager:
        reg.manager_for(_config(2, "cfg-held"))  # retires revision 1 while it is leased
        assert lib.test_destroyed() == before
        assert manager.unwrap("k", b"still alive") == b"still alive"
        reg.close()  # shutdown: revision 2 (idle) goes now, revision 1 when this lease returns
        assert lib.test_destroyed() == before + 1
    assert lib.test_destroyed() == before + 2 == before + reg.destroyed
    assert lib.test_bad_destroys() == 0


def test_stale_handle_moves_to_the_current_manager_and_shutdown_refuses(lease_plugin):
    plugin, lib = lease_plugin
    reg = ManagerRegistry.with_builtins([plugin])
    old = reg.manager_for(_config(1, "cfg-stale"))
    new = reg.manager_for(_config(2, "cfg-stale"))
    assert new is not old and reg.manager_for(_config(1, "cfg-stale")) is new  # revisions only grow
    assert old.unwrap("k", b"x") == b"x"  # destroyed already: the call runs on revision 2
    reg.close()
    with pytest.raises(errors.Unavailable, match="shut down"):
        new.unwrap("k", b"x")
    assert lib.test_bad_destroys() == 0
