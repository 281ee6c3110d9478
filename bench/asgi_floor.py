"""The HTTP floor for `make bench`: a bare ASGI app on the same server (granian)
doing the same unwrap + rewrap per request, and nothing else -- no Connect,
auth, request token, policy binding, logging or metrics. What `platform
serve` achieves above this floor is the platform's own per-request cost.

    PLATFORM_DB_URL=... PLATFORM_ROOT_KEY=... \
      python -m granian --interface asgi --workers 2 --factory bench.asgi_floor:app_factory

Request body: JSON {"kid": ..., "wrapped": hex, "client_public_key": PEM}.
Not a product endpoint: bench only, bound to loopback by bench/http.py.
"""

from __future__ import annotations

import json
import os

_keys = None


def _service():
    global _keys
    if _keys is None:
        from host.app import Platform, Settings

        _keys = Platform(Settings(db_url=os.environ["PLATFORM_DB_URL"])).keys
    return _keys


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                _service()
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    try:
        req = json.loads(body)
        out = _service().rewrap(req["kid"], bytes.fromhex(req["wrapped"]), req["client_public_key"])
        status, data = 200, json.dumps({"status": "permit", **out}).encode()
    except Exception as e:  # bench endpoint: the type is enough to see what broke
        status, data = 400, json.dumps({"error": type(e).__name__}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": data})


def app_factory():
    return app
