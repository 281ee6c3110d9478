"""The Connect protocol, unary RPCs only, as a small ASGI application.

    POST /<package>.<Service>/<Method>      Content-Type: application/json | application/proto
    GET  /<package>.<Service>/<Method>?message=..&encoding=json|proto[&base64=1][&compression=gzip]
                                             (only for methods marked side-effect free)

Why not connect-python's server runtime: it decodes request bodies before any
hook runs, reports malformed JSON/protobuf as `unknown` with the parser's raw
text, checks the size limit only after reading and decompressing the whole
body, and answers unknown procedures with an empty 404. Authentication must
run before the body is read, so this layer owns routing, limits, decoding and
error mapping; the generated OpenTDF message classes are used unchanged.

Order of checks (cheap and revealing-nothing first): route, HTTP method,
authentication/authorization, content type, protocol version, timeout,
content encoding, body size (Content-Length, then counted while reading, then
after decompression), decode, field validation (protovalidate), handler.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable

import protovalidate
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from host import metrics
from host.errors import (DeadlineExceeded, Internal, InvalidArgument, PlatformError, Unauthenticated,
                         Unimplemented)
from host.managers.base import CallContext
from host.server import convert, logs, newer_fields
from host.server.limits import BODY_PIECE_GRACE, ServerLimits
from host.server.rsgi import RequestHeaders

DEFAULT_MAX_BODY_BYTES = 1 << 20
MANAGER_DEADLINE_RESERVE_S = 0.1

# Connect code -> HTTP status (connectrpc.com/docs/protocol, "Error Codes").
HTTP_STATUS = {
    "canceled": 499, "unknown": 500, "invalid_argument": 400, "deadline_exceeded": 504,
    "not_found": 404, "already_exists": 409, "permission_denied": 403, "resource_exhausted": 429,
    "failed_precondition": 400, "aborted": 409, "out_of_range": 400, "unimplemented": 501,
    "internal": 500, "unavailable": 503, "data_loss": 500, "unauthenticated": 401,
}

_CODECS = ("json", "proto")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RpcError(PlatformError):
    """A protocol-level error with an explicit Connect code and, optionally, HTTP status."""

    def __init__(self, code: str, message: str, http_status: int | None = None,
                 headers: Iterable[tuple[bytes, bytes]] = ()):
        super().__init__(message)
        self.code = code
        self.http_status = http_status or HTTP_STATUS.get(code, 500)
        self.headers = list(headers)


@dataclass
class Call:
    """What a handler learns about the call besides its request message."""

    procedure: str
    request_id: str
    identity: Any = None
    deadline: float | None = None   # time.monotonic() value
    headers: dict[str, str] = field(default_factory=dict)
    # The call's one log line: a handler may name it (e.g. "rewrap") and add outcome fields.
    log_event: str = "rpc"
    log_fields: dict | None = None
    # request parameters outside the message (GET /kas/v2/kas_public_key's `kid`), set by a binding
    params: dict[str, str] | None = None

    def context(self) -> CallContext:
        """The CallContext passed down to the key service and plugins: the RPC's deadline less
        MANAGER_DEADLINE_RESERVE_S, so that a manager call that runs out of time fails its own key
        access object (and the others of the request are still answered) before the RPC's own
        deadline fails them all."""
        deadline = None if self.deadline is None else self.deadline - MANAGER_DEADLINE_RESERVE_S
        return CallContext(request_id=self.request_id, deadline=deadline)


Handler = Callable[[Message, Call], Awaitable[Message]]


@dataclass(frozen=True)
class Procedure:
    """One unary RPC: its path, message classes, required role and handler."""

    service: str            # "policy.keymanagement.KeyManagementService"
    method: str             # "CreateProviderConfig"
    input: type[Message]
    output: type[Message]
    handler: Handler
    role: str               # "admin" | "client"
    side_effect_free: bool = False

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"


def procedures_for(service_descriptor, handlers: dict[str, Handler], role: str, message_module,
                   side_effect_free: Iterable[str] = ()) -> list[Procedure]:
    """Procedures for the named methods of a generated service descriptor."""
    out = []
    free = set(side_effect_free)
    for name, handler in handlers.items():
        m = service_descriptor.methods_by_name[name]
        out.append(Procedure(
            service=service_descriptor.full_name, method=name,
            input=_message_class(message_module, m.input_type), output=_message_class(message_module, m.output_type),
            handler=handler, role=role, side_effect_free=name in free))
    return out


def _message_class(module, descriptor) -> type[Message]:
    from google.protobuf import message_factory

    cls = getattr(module, descriptor.name, None)
    if cls is not None and cls.DESCRIPTOR is descriptor:
        return cls
    return message_factory.GetMessageClass(descriptor)


class ConnectApp:
    """ASGI app serving the given procedures; `authorize(headers, role)` -> identity or raises."""

    def __init__(self, procedures: Iterable[Procedure],
                 authorize: Callable[[dict[str, str], str], Awaitable[Any]],
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, limits: ServerLimits | None = None):
        self.routes = {p.path: p for p in procedures}
        self.authorize = authorize
        self.max_body_bytes = max_body_bytes
        self.limits = limits or ServerLimits()
        self._validator = protovalidate.Validator()
        # input types that carry no option at all (so no validation rule) anywhere in their
        # message graph: validating them can find nothing (kas.RewrapRequest, for one)
        self._rule_free = {p.input for p in self.routes.values() if not _has_options(p.input.DESCRIPTOR)}

    def handles(self, path: str) -> bool:
        """True for every path shaped like a procedure, known or not (unknown ones answer `unimplemented`)."""
        return path.count("/") == 2 and "." in path.split("/")[1]

    async def __call__(self, scope, receive, send) -> None:
        await self.serve(scope, receive, send, self.routes.get(scope["path"]), CONNECT)

    async def serve(self, scope, receive, send, proc: Procedure | None, binding: "Binding") -> None:
        """One call of `proc` carried by `binding` (Connect here; OpenTDF's REST routes in
        host.server.rest): the same method check, auth, deadline, body limits, validation,
        handler, metrics and access line whichever way the request came."""
        started = time.perf_counter()
        headers = _headers(scope)
        request_id = headers.get("x-request-id", "")
        if not _REQUEST_ID_RE.match(request_id):
            request_id = logs.new_request_id()
        path = scope["path"]
        label = path if proc else "unknown"
        call = Call(procedure=path, request_id=request_id, headers=headers)
        state = None
        body = None
        try:
            if proc is None:
                raise RpcError("unimplemented", f"unknown procedure {_clip(path)}", http_status=404)
            method = scope.get("method", "")
            allowed = binding.methods(proc)
            if method not in allowed:
                raise RpcError("unimplemented", f"HTTP method {method} not allowed; use {', '.join(allowed)}",
                               http_status=405, headers=[(b"allow", ", ".join(allowed).encode())])
            call.identity = await self.authorize(headers, proc.role)
            binding.check_headers(headers)
            call.deadline = time.monotonic() + self.limits.deadline_seconds(_timeout_ms(headers.get("connect-timeout-ms")))
            # One timer per call: the body timeout while the body is read, then the call's deadline
            # (rescheduled: a second asyncio.timeout costs ~10 us of a served Rewrap's CPU)
            timer = asyncio.timeout(self.limits.body_timeout)
            try:
                async with timer:
                    body, state = await binding.read(self, scope, receive, headers)
                    message = binding.decode(proc, body, state, call)
                    if proc.input not in self._rule_free:
                        self._validate(message)
                    _start_deadline(timer, call)
                    response = await proc.handler(message, call)
            except TimeoutError:
                if body is None:
                    raise RpcError("deadline_exceeded", f"request body not received within "
                                   f"{self.limits.body_timeout_ms} ms", http_status=408) from None
                raise DeadlineExceeded("deadline exceeded") from None
            content_type, payload = binding.encode(response, state)
            await _send(send, 200, [(b"content-type", content_type)], payload, request_id)
            code = "ok"
        except Exception as exc:  # every failure becomes one error answer
            err = _as_rpc_error(exc, request_id, path)
            extra = err.headers
            if body is None and _has_body(headers):
                # refused before the body was read: the rest of it is still on the wire, so the
                # connection cannot carry another request; tell the client rather than let it reuse it
                extra = [*extra, (b"connection", b"close")]
            await _send(send, err.http_status, [(b"content-type", b"application/json"), *extra],
                        binding.error_body(err), request_id)
            code = err.code
        elapsed = time.perf_counter() - started
        metrics.observe_rpc(label, code, elapsed)
        logs.access(request_id=request_id, method=scope.get("method", ""), path=_clip(path), code=code,
                    seconds=elapsed, identity=getattr(call.identity, "subject", None),
                    event=call.log_event, fields=call.log_fields)

    async def read_body(self, headers: dict[str, str], receive) -> bytes:
        """The request body within the body limit (Content-Length, then counted, then after gzip);
        `serve` reads it under the body timeout."""
        encoding = headers.get("content-encoding", "identity").strip().lower() or "identity"
        if encoding not in ("identity", "gzip"):
            raise RpcError("unimplemented", f"unsupported content-encoding {_clip(encoding)!r}; supported: gzip, identity")
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise InvalidArgument("invalid content-length")
            if int(length) > self.max_body_bytes:
                raise _too_large(self.max_body_bytes)
        body = await _read_body(receive, self.max_body_bytes, self.limits.body_min_piece)
        if encoding == "gzip" and body:
            body = _gunzip(body, self.max_body_bytes)
        return body

    def _read_get(self, scope):
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        encoding = query.get("encoding", [""])[0]
        if encoding not in _CODECS:
            raise RpcError("unimplemented", "GET requests need encoding=json or encoding=proto", http_status=415)
        raw = query.get("message", [None])[0]
        if raw is None:
            raise InvalidArgument("GET requests need a message query parameter")
        if query.get("base64", ["0"])[0] == "1":
            try:
                body = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
            except (ValueError, TypeError):
                raise InvalidArgument("message is not valid base64url") from None
        else:
            body = raw.encode("utf-8", "surrogateescape")
        if len(body) > self.max_body_bytes:
            raise _too_large(self.max_body_bytes)
        compression = query.get("compression", ["identity"])[0]
        if compression == "gzip" and body:
            body = _gunzip(body, self.max_body_bytes)
        elif compression not in ("identity", "gzip"):
            raise RpcError("unimplemented", f"unsupported compression {_clip(compression)!r}")
        return body, encoding

    @staticmethod
    def _decode(proc: Procedure, body: bytes, codec: str) -> Message:
        message = proc.input()
        if codec == "proto":
            try:
                message.ParseFromString(body)
            except (DecodeError, RuntimeError, ValueError):
                raise InvalidArgument(f"malformed protobuf body for {proc.input.DESCRIPTOR.full_name}") from None
            return message
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument("request body is not valid UTF-8 JSON") from None
        if not text.strip():
            return message  # an empty body is the empty message
        try:
            json_format.Parse(text, message, ignore_unknown_fields=True)
            newer_fields.merge_json(message, text)  # OpenTDF's `search`, `name_manager`: newer than these protos
        except json_format.ParseError as e:
            raise InvalidArgument(f"malformed JSON body: {_clip(str(e).splitlines()[0] if str(e) else 'parse error', 200)}") from None
        except (ValueError, TypeError, RecursionError):
            raise InvalidArgument("malformed JSON body") from None
        return message

    async def call_in_process(self, path: str, message: Message) -> Message:
        """Run one procedure as a served call runs it (field validation, then the handler), without
        transport or auth: the CLI's direct-database mode, so that it answers as `--host` does."""
        proc = self.routes[path]
        if proc.input not in self._rule_free:
            self._validate(message)
        return await proc.handler(message, Call(procedure=path, request_id=logs.new_request_id()))

    def _validate(self, message: Message) -> None:
        try:
            violations = self._validator.collect_violations(message)
        except Exception:  # a rule that cannot be evaluated is our bug, not the caller's
            raise Internal("request validation failed to evaluate") from None
        violations = [v for v in violations
                      if not (convert.newer_enum_value(v, message) or convert.default_wrapping_key(v, message)
                              or newer_fields.identifies_provider_config(v, message))]
        if violations:
            raise InvalidArgument("; ".join(_violation_text(v) for v in violations))


class Binding:
    """How one HTTP surface carries procedures: what ConnectApp.serve asks of it."""

    def methods(self, proc: Procedure) -> tuple[str, ...]:
        raise NotImplementedError

    def check_headers(self, headers: dict[str, str]) -> None:
        """Checks on headers before the deadline is set and the body read."""

    async def read(self, app: ConnectApp, scope, receive, headers: dict[str, str]) -> tuple[bytes, Any]:
        """(request bytes, state for decode/encode)."""
        raise NotImplementedError

    def decode(self, proc: Procedure, body: bytes, state, call: Call) -> Message:
        raise NotImplementedError

    def encode(self, response: Message, state) -> tuple[bytes, bytes]:
        """(content type, payload)."""
        raise NotImplementedError

    def error_body(self, err: RpcError) -> bytes:
        raise NotImplementedError


class ConnectBinding(Binding):
    """The Connect protocol, unary: POST with a JSON or protobuf body, GET for side-effect-free methods."""

    def methods(self, proc: Procedure) -> tuple[str, ...]:
        return ("GET", "POST") if proc.side_effect_free else ("POST",)

    def check_headers(self, headers: dict[str, str]) -> None:
        version = headers.get("connect-protocol-version")
        if version is not None and version != "1":
            raise InvalidArgument(f"connect-protocol-version must be 1, got {_clip(version)!r}")

    async def read(self, app: ConnectApp, scope, receive, headers: dict[str, str]) -> tuple[bytes, str]:
        if scope.get("method") == "GET":
            return app._read_get(scope)
        codec = _codec_for(headers.get("content-type", ""))
        return await app.read_body(headers, receive), codec

    def decode(self, proc: Procedure, body: bytes, codec: str, call: Call) -> Message:
        return ConnectApp._decode(proc, body, codec)

    def encode(self, response: Message, codec: str) -> tuple[bytes, bytes]:
        return _CONTENT_TYPES[codec], _encode(response, codec)

    def error_body(self, err: RpcError) -> bytes:
        return json.dumps({"code": err.code, "message": err.message}).encode()


CONNECT = ConnectBinding()
_CONTENT_TYPES = {c: f"application/{c}".encode() for c in _CODECS}


def _codec_for(content_type: str) -> str:
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    codec = media.removeprefix("application/") if media.startswith("application/") else ""
    if codec not in _CODECS:
        raise RpcError("unimplemented", f"unsupported content-type {_clip(media) or '(none)'!r}; "
                       "use application/json or application/proto", http_status=415,
                       headers=[(b"accept-post", b"application/json, application/proto")])
    charset = params.strip().lower()
    if codec == "json" and charset and charset.replace(" ", "") not in ("charset=utf-8",):
        raise RpcError("unimplemented", "application/json must be UTF-8", http_status=415)
    return codec


def _timeout_ms(value: str | None) -> int | None:
    """The client's Connect-Timeout-Ms, or None when it sent none."""
    if value is None:
        return None
    if not value.isdigit() or len(value) > 10:
        raise InvalidArgument("connect-timeout-ms must be a positive integer of at most 10 digits")
    return int(value)


def _start_deadline(timer: asyncio.Timeout, call: Call) -> None:
    """The call's timer from now on runs to its deadline (a timer on the task, not a new task as
    asyncio.wait_for would make: cheap on the Rewrap path)."""
    remaining = call.deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded("deadline exceeded before the call started")
    timer.reschedule(asyncio.get_running_loop().time() + remaining)


def _has_body(headers: dict[str, str]) -> bool:
    length = headers.get("content-length")
    return length != "0" if length is not None else "transfer-encoding" in headers


def _too_large(limit: int) -> RpcError:
    return RpcError("resource_exhausted", f"request body exceeds the {limit}-byte limit")


async def _read_body(receive, limit: int, min_piece: int) -> bytes:
    """The body's pieces joined, refused once over `limit` bytes, or once it arrives in more
    pieces than its size warrants (the piece rule in host.server.limits)."""
    chunks, size = [], 0
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            raise RpcError("canceled", "client disconnected")
        chunk = event.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not event.get("more_body", False):
            return b"".join(chunks)
        if (len(chunks) - BODY_PIECE_GRACE) * min_piece > size:  # past the grace, min_piece bytes a piece
            raise RpcError("resource_exhausted", f"request body arrives in too many small pieces ({len(chunks)} "
                           f"for {size} bytes; past the first {BODY_PIECE_GRACE}, at most one per {min_piece} bytes)")


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress with a bound on the output, so a small gzip bomb cannot exhaust memory."""
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise _too_large(limit)
        out += d.flush()
        if not d.eof:
            raise InvalidArgument("truncated gzip body")
    except zlib.error:
        raise InvalidArgument("malformed gzip body") from None
    if len(out) > limit:
        raise _too_large(limit)
    return out


def _encode(message: Message, codec: str) -> bytes:
    if codec == "proto":
        return message.SerializeToString()
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def _has_options(descriptor, seen=None) -> bool:
    """True when the message, one of its fields or oneofs, or a message type it contains
    (recursively) sets any option, such as a buf.validate rule."""
    seen = set() if seen is None else seen
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    if descriptor.GetOptions().ByteSize() or any(o.GetOptions().ByteSize() for o in descriptor.oneofs):
        return True
    for f in descriptor.fields:
        if f.GetOptions().ByteSize():
            return True
        if f.message_type is not None and _has_options(f.message_type, seen):
            return True
    return False


def _violation_text(v) -> str:
    proto = v.proto
    path = _field_path(proto.field)
    text = proto.message or proto.rule_id or "invalid value"
    if proto.rule_id and proto.message:  # as OpenTDF's messages read: "... [string.uuid]"
        text = f"{text} [{proto.rule_id}]"
    return f"{path}: {text}" if path else text


def _field_path(fp) -> str:
    """buf.validate.FieldPath -> "name_and_manager.name", "labels["k"]", "keys[0].pem"."""
    parts = []
    for el in (fp.elements if fp is not None else ()):
        name = el.field_name or str(el.field_number)
        sub = el.subscript  # a oneof of index / bool_key / int_key / uint_key / string_key, or None
        if sub is None:
            parts.append(name)
        elif isinstance(sub.value, str):
            parts.append(f"{name}[{json.dumps(sub.value)}]")
        else:
            parts.append(f"{name}[{sub.value}]")
    return ".".join(parts)


def _as_rpc_error(exc: Exception, request_id: str, path: str) -> RpcError:
    if isinstance(exc, RpcError):
        return exc
    if isinstance(exc, PlatformError):
        retry_after = getattr(exc, "retry_after", None)
        if exc.source is not None:
            logs.warning("key manager call failed", manager=exc.source, code=exc.code, request_id=request_id,
                         path=_clip(path), error=exc.message[:1024])
        return RpcError(exc.code, exc.client_message(request_id),
                        headers=[(b"retry-after", str(retry_after).encode())] if retry_after else ())
    # Unexpected: log the type and where, never the message (it may echo input or secrets).
    logs.unexpected(exc, request_id=request_id, path=_clip(path))
    return RpcError("internal", f"internal error (request id {request_id})")


async def _send(send, status: int, headers: list, body: bytes, request_id: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode()),
                            (b"x-request-id", request_id.encode())]})
    await send({"type": "http.response.body", "body": body})


def _headers(scope) -> dict[str, str]:
    """name (lower-case) -> value, a repeated header's values joined with ", " (RFC 9110 5.3)."""
    raw = scope.get("headers", ())
    if type(raw) is RequestHeaders:  # granian RSGI: already text
        pairs = raw.text()
    else:
        pairs = ((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw)
    out: dict[str, str] = {}
    for k, v in pairs:
        out[k] = f"{out[k]}, {v}" if k in out else v
    return out


def _clip(text: str, n: int = 120) -> str:
    if len(text) <= n and text.isprintable():  # the common case, without a per-character pass
        return text
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= n else text[: n - 3] + "..."


__all__ = ["ConnectApp", "Binding", "CONNECT", "Procedure", "Call", "RpcError", "procedures_for", "HTTP_STATUS",
           "DEFAULT_MAX_BODY_BYTES", "Unauthenticated", "Unimplemented"]
