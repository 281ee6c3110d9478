"""Decision hooks the served app loads in tests (PLATFORM_KAS_DECISION=tests.tdf.decisions:NAME)."""

from __future__ import annotations

import json

SECRET = "https://example.com/attr/classification/value/secret"


def deny_secret(request) -> bool:
    """Permit every client-role caller, except for policies naming the secret attribute."""
    return "client" in request.roles and SECRET not in json.dumps(request.policy)
