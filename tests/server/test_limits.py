"""host.server.limits: the settings, their validation, and how a client's deadline is bounded."""

from __future__ import annotations

import pytest

from host.errors import InvalidArgument
from host.server.limits import ENV_NAMES, ServerLimits


def test_defaults_when_nothing_is_set():
    limits = ServerLimits.from_env({})
    assert limits == ServerLimits()
    assert limits.deadline_seconds(None) == 10.0          # no Connect-Timeout-Ms: the default
    assert limits.deadline_seconds(250) == 0.25           # a shorter one is the client's
    assert limits.deadline_seconds(10 ** 9) == 60.0       # a longer one is cut to the cap


def test_settings_are_read_and_the_cap_applies():
    limits = ServerLimits.from_env({"PLATFORM_RPC_TIMEOUT_MS": "1500", "PLATFORM_RPC_MAX_TIMEOUT_MS": "2000",
                                    "PLATFORM_HTTP_MAX_CONNECTIONS": "64"})
    assert (limits.rpc_timeout_ms, limits.rpc_max_timeout_ms, limits.max_connections) == (1500, 2000, 64)
    assert limits.deadline_seconds(5000) == 2.0


@pytest.mark.parametrize("name", sorted(ENV_NAMES.values()))
@pytest.mark.parametrize("value", ["-1", "abc", "0", "99999999999", "1e3", " 5 0"])
def test_bad_values_are_a_clear_error_naming_the_setting(name, value):
    with pytest.raises(InvalidArgument, match=name):
        ServerLimits.from_env({name: value})


def test_a_default_deadline_above_the_cap_is_refused():
    with pytest.raises(InvalidArgument, match="PLATFORM_RPC_TIMEOUT_MS must not exceed PLATFORM_RPC_MAX_TIMEOUT_MS"):
        ServerLimits.from_env({"PLATFORM_RPC_TIMEOUT_MS": "5000", "PLATFORM_RPC_MAX_TIMEOUT_MS": "1000"})
