"""The HTTP floor for `make bench`: a bare app on the same server (granian) doing
the same crypto per request, and nothing else -- no Connect, auth, request
token, key access object checks, logging or metrics. What `platform serve`
achieves above this floor is the platform's own per-request cost.

    PLATFORM_DB_URL=... PLATFORM_ROOT_KEY=... \
      python -m granian --interface rsgi --http 1 --loop uvloop --workers 2 --factory bench.asgi_floor:app_factory

bench/http.py serves it on RSGI with the settings `platform serve` uses (HTTP/1,
uvloop), so the floor pays exactly the server's transport; the same app also
answers on granian's ASGI interface.

Request body: JSON {"kid": ..., "wrapped": hex, "client_public_key": PEM}, plus
"ephemeral" (PEM) for an ec-wrapped object: then the work is bench.http's
ec_rewrap_crypto (the client key parsed once per process, as the server does).
Not a product endpoint: bench only, bound to loopback by bench/http.py.
"""

from __future__ import annotations

import base64
import json
import os

_keys = None
_client_keys: dict = {}


def _service():
    global _keys
    if _keys is None:
        from host.app import Platform, Settings

        _keys = Platform(Settings(db_url=os.environ["PLATFORM_DB_URL"])).keys
    return _keys


def _answer(body: bytes) -> tuple[int, bytes]:
    try:
        req = json.loads(body)
        wrapped = bytes.fromhex(req["wrapped"])
        if "ephemeral" in req:
            from bench.http import ec_rewrap_crypto
            from host import crypto

            pem = req["client_public_key"]
            client = _client_keys.get(pem)
            if client is None:
                client = _client_keys[pem] = crypto.load_public_pem(pem, "ec:secp256r1")
            out = ec_rewrap_crypto(_service(), req["kid"], wrapped, req["ephemeral"].encode(), client)
            out["rewrapped_key"] = base64.b64encode(out["rewrapped_key"]).decode()  # as KeyService.rewrap
        else:
            out = _service().rewrap(req["kid"], wrapped, req["client_public_key"])
        return 200, json.dumps({"status": "permit", **out}).encode()
    except Exception as e:  # bench endpoint: the type is enough to see what broke
        return 400, json.dumps({"error": type(e).__name__}).encode()


class FloorApp:
    # granian's RSGI interface
    def __rsgi_init__(self, loop) -> None:
        _service()

    async def __rsgi__(self, scope, protocol) -> None:
        if scope.proto != "http":
            return
        status, data = _answer(await protocol())
        protocol.response_bytes(status, [("content-type", "application/json")], data)

    # ASGI
    async def __call__(self, scope, receive, send) -> None:
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
        status, data = _answer(body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})


app = FloorApp()


def app_factory():
    return app
