"""OpenTDF's REST routes for the KAS, as its grpc-gateway mapped them (kas.proto's
google.api.http annotations, up to opentdf/platform a4230a2), served by the Connect
procedures' own handlers through ConnectApp.serve: same auth, limits, deadlines,
validation, metrics and access line.

    GET  /kas/kas_public_key?algorithm=               LegacyPublicKey -> the PEM as a bare JSON string
    GET  /kas/v2/kas_public_key?algorithm=&fmt=&v=&kid=   PublicKey -> {"publicKey": .., "kid": ..}
    POST /kas/v2/rewrap   {"signedRequestToken": ..}  Rewrap -> RewrapResponse JSON

What follows the gateway: query parameters name request fields by JSON or proto
name, unknown ones are ignored (`v=2` on the legacy route); a POST body is JSON
whatever its Content-Type, unknown fields ignored; responses are protojson with
every field present (EmitUnpopulated); errors are google.rpc.Status JSON,
{"code": <gRPC number>, "message": .., "details": []}, with the Connect HTTP
status. `kid` is this KAS's addition to the v2 route (OpenTDF's request has no
such field); it reaches the handler as a call parameter.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import NamedTuple

from google.protobuf import json_format
from google.protobuf.message import Message

from host.errors import InvalidArgument
from host.server.connect import Binding, Call, ConnectApp, Procedure, RpcError

# Connect code -> gRPC status number (google.rpc.Code)
GRPC_CODES = {
    "ok": 0, "canceled": 1, "unknown": 2, "invalid_argument": 3, "deadline_exceeded": 4, "not_found": 5,
    "already_exists": 6, "permission_denied": 7, "resource_exhausted": 8, "failed_precondition": 9,
    "aborted": 10, "out_of_range": 11, "unimplemented": 12, "internal": 13, "unavailable": 14,
    "data_loss": 15, "unauthenticated": 16,
}
_JSON = b"application/json"


class GatewayBinding(Binding):
    """One REST route: its HTTP method, and the request parameters kept outside the message."""

    def __init__(self, method: str, params: tuple[str, ...] = ()):
        self._methods = (method,)
        self._params = params

    def methods(self, proc: Procedure) -> tuple[str, ...]:
        return self._methods

    async def read(self, app: ConnectApp, scope, receive, headers: dict[str, str]) -> tuple[bytes, dict | None]:
        if self._methods[0] == "GET":
            query = scope.get("query_string", b"")
            if len(query) > app.max_body_bytes:
                raise RpcError("resource_exhausted", f"query exceeds the {app.max_body_bytes}-byte limit")
            return b"", urllib.parse.parse_qs(query.decode("latin-1"), keep_blank_values=True)
        return await app.read_body(headers, receive), None

    def decode(self, proc: Procedure, body: bytes, query: dict | None, call: Call) -> Message:
        message = proc.input()
        if query is None:  # a JSON body
            try:
                text = body.decode("utf-8")
                if text.strip():
                    json_format.Parse(text, message, ignore_unknown_fields=True)
            except (UnicodeDecodeError, json_format.ParseError, ValueError, TypeError, RecursionError):
                raise InvalidArgument(f"malformed JSON body for {proc.input.DESCRIPTOR.full_name}") from None
            return message
        fields = proc.input.DESCRIPTOR.fields
        names = {f.json_name: f.json_name for f in fields} | {f.name: f.json_name for f in fields}
        doc = {names[k]: v[0] for k, v in query.items() if k in names}
        try:
            json_format.ParseDict(doc, message)
        except (json_format.ParseError, ValueError, TypeError):
            raise InvalidArgument("malformed query parameters") from None
        extra = {k: query[k][0] for k in self._params if k in query}
        if extra:
            call.params = extra
        return message

    def encode(self, response: Message, state) -> tuple[bytes, bytes]:
        doc = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
        return _JSON, json.dumps(doc, separators=(",", ":")).encode()

    def error_body(self, err: RpcError) -> bytes:
        return json.dumps({"code": GRPC_CODES.get(err.code, 2), "message": err.message, "details": []},
                          separators=(",", ":")).encode()


class Route(NamedTuple):
    procedure: str
    binding: GatewayBinding


ROUTES = {
    "/kas/kas_public_key": Route("/kas.AccessService/LegacyPublicKey", GatewayBinding("GET")),
    "/kas/v2/kas_public_key": Route("/kas.AccessService/PublicKey", GatewayBinding("GET", params=("kid",))),
    "/kas/v2/rewrap": Route("/kas.AccessService/Rewrap", GatewayBinding("POST")),
}


def routes(connect: ConnectApp) -> dict[str, tuple[Procedure, GatewayBinding]]:
    """REST path -> (the Connect procedure that serves it, its binding)."""
    return {path: (connect.routes[r.procedure], r.binding) for path, r in ROUTES.items()}
