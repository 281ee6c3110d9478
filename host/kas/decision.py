"""The access decision: may this caller have the keys of this policy?

Attribute-based access decisions (OpenTDF's authorization service, entity
resolution, attribute definitions) are not part of this project. The KAS asks
one pluggable hook about the policy bound to what it would release: once per
standard-TDF policy of a Rewrap request, once per NanoTDF object (its header's
policy; see host.kas.rewrap and the README on NanoTDF bindings):

    decide(request: DecisionRequest) -> bool     True = permit, False = deny

The default, `allow_authenticated`, permits every caller that got past
authentication with the client role - which the server already requires for
Rewrap - so every authenticated client may unwrap every policy. That is a
deliberate, documented choice, not an access-control system.

To plug in a real one, set PLATFORM_KAS_DECISION to "package.module:function"
(importable in the server's environment). A denied policy fails each of its
key access objects with `permission_denied`; a hook that raises fails them
with `internal` (logged by type only).

A hook says what it needs with two attributes (read with getattr; a plain
function has neither, and gets the safe defaults):

    needs_io      (default True)   it may block (a policy service, a database): the
                                   requests it decides run on a worker thread. False:
                                   it is quick CPU work, and warm requests are decided
                                   and served on the event loop.
    reads_policy  (default True)   it decides on the policy: asked as above, and a
                                   NanoTDF with the unkeyed binding (which does not
                                   bind its policy) is refused. False: it decides on
                                   the caller alone; asked once per policy of a request,
                                   before any unwrap, with policy None and no key ids.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable

from host.errors import InvalidArgument

DECISION_ENV = "PLATFORM_KAS_DECISION"


@dataclass(frozen=True)
class DecisionRequest:
    subject: str                 # the authenticated caller (token digest prefix or the JWT's sub)
    roles: frozenset[str]
    policy_id: str               # the request's id for the policy ("policy" from the SDK)
    policy: Any                  # the bound policy as parsed JSON, or None when it is unreadable
    key_ids: tuple[str, ...]     # the KAS key ids the key access objects decided on name
    container: str               # "ztdf" | "nanotdf"


Decide = Callable[[DecisionRequest], bool]


def allow_authenticated(request: DecisionRequest) -> bool:
    """Permit any caller that holds the client role (authentication already happened)."""
    return has_client_role(request.roles)


allow_authenticated.needs_io = False
allow_authenticated.reads_policy = False


def needs_io(hook) -> bool:
    return bool(getattr(hook, "needs_io", True))


def reads_policy(hook) -> bool:
    return bool(getattr(hook, "reads_policy", True))


def has_client_role(roles) -> bool:
    return "client" in roles


def load(spec: str | None = None) -> Decide:
    """The hook named by `spec` (or PLATFORM_KAS_DECISION), else the default."""
    spec = spec if spec is not None else os.environ.get(DECISION_ENV, "")
    if not spec.strip():
        return allow_authenticated
    module_name, _, attr = spec.strip().partition(":")
    if not module_name or not attr:
        raise InvalidArgument(f"{DECISION_ENV} must be 'package.module:function', got {spec[:80]!r}")
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise InvalidArgument(f"{DECISION_ENV}: cannot load {spec[:80]!r} ({type(e).__name__})") from None
    if not callable(hook):
        raise InvalidArgument(f"{DECISION_ENV}: {spec[:80]!r} is not callable")
    return hook
