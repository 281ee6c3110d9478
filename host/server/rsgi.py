"""Granian's RSGI interface in front of the ASGI app: a thin adapter, no second implementation.

RSGI skips most of granian's ASGI glue (message dicts built in Rust, a
receive/send round trip through the loop for each message), which is a
measurable share of a Rewrap's CPU. The request is handed to the same ASGI
callable with an ASGI-shaped scope, a `receive` that reads the body from the
RSGI protocol, and a `send` that buffers the response start and answers with
one `response_bytes` call when the (single, complete) body message arrives.

Headers stay text: RSGI gives str names (lower-case) and values, and the
Connect layer wants a str dict, so the scope's `headers` is a `RequestHeaders`
that iterates as ASGI's (bytes, bytes) pairs for any code that wants those
and hands the Connect layer its dict without a bytes round trip.
"""

from __future__ import annotations


class RequestHeaders:
    """The ASGI `headers` of an RSGI request, built from its (name, value) str pairs."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: list[tuple[str, str]]):
        self._pairs = pairs

    def __iter__(self):
        return ((k.encode("latin-1"), v.encode("latin-1")) for k, v in self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def text(self) -> list[tuple[str, str]]:
        """The (name, value) pairs as RSGI gave them: str, names lower-case."""
        return self._pairs


def http_scope(scope) -> dict:
    """The ASGI `http` scope fields the app reads, from an RSGI scope."""
    return {"type": "http", "method": scope.method, "path": scope.path,  # both percent-decoded
            "query_string": scope.query_string.encode("latin-1"),
            "headers": RequestHeaders(scope.headers.items())}  # every pair, repeated names included


async def serve_http(app, scope, protocol) -> None:
    """Run one RSGI HTTP request through the ASGI callable `app`.

    Nothing may escape into granian: an exception leaving an RSGI handler, or builtin
    `anext(iterator, default)` on granian's body iterator (it ends the worker process with no
    Python traceback, found with chunked bodies), takes the worker down with every request on it.
    """
    length = scope.headers.get("content-length")
    chunks = aiter(protocol) if length is None else None
    start: dict = {}
    sent = False

    async def receive() -> dict:
        try:
            if chunks is None:  # the length is known (and checked by the app before it reads): read it whole
                body = await protocol()
                if len(body) != int(length):  # granian ends a body cut short by the client as if complete
                    return {"type": "http.disconnect"}
                return {"type": "http.request", "body": body, "more_body": False}
            try:  # streamed (chunked or length-less), so the app's body limit applies as it arrives
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return {"type": "http.request", "body": b"", "more_body": False}
            return {"type": "http.request", "body": chunk, "more_body": True}
        except Exception:  # the client hung up or sent a malformed body: not an error of ours
            return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        nonlocal sent
        if message["type"] == "http.response.start":
            start.update(message)
            return
        if message.get("more_body"):
            raise RuntimeError("streamed responses are not supported by the RSGI adapter")
        sent = True
        protocol.response_bytes(start["status"],
                                [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", ())],
                                message.get("body", b""))

    try:
        await app(http_scope(scope), receive, send)
    except Exception as exc:
        from host.server import logs

        logs.unexpected(exc, path=scope.path[:120])
        if not sent:
            try:
                protocol.response_bytes(500, [("content-type", "application/json"), ("connection", "close")],
                                        b'{"code":"internal","message":"internal error"}')
            except Exception:  # the connection is already gone
                pass
