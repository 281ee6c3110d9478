"""kas.AccessService/Rewrap (client role) and GET /.well-known/opentdf-configuration (public).

The protocol lives in host.kas (transport-independent); this module only
maps the Connect call to it: the authenticated identity, the bearer token and
DPoP header for the request-token checks, where the key operations run (the
event loop when they need no I/O, else a worker thread), and the result as
kas.RewrapResponse.
"""

from __future__ import annotations

import json

from anyio import CapacityLimiter, to_thread

from host.errors import PlatformError
from host.kas import wellknown
from host.kas.rewrap import STATUS_PERMIT, Caller, Rewrapper
from host.server.connect import Call, procedures_for
from host.server.protos import kas_pb2
from host.service import NEEDS_IO

SERVICE = kas_pb2.DESCRIPTOR.services_by_name["AccessService"]
PATH = f"/{SERVICE.full_name}/Rewrap"
SCHEMA_VERSION = "1.0.0"


class RewrapHandler:
    def __init__(self, platform, kas_ref: str | None = None, threads: int = 64):
        self.platform = platform
        self.kas_ref = kas_ref
        self._rewrapper: Rewrapper | None = None
        self._threads = threads
        self._limiter: CapacityLimiter | None = None

    @property
    def limiter(self) -> CapacityLimiter:
        """Rewrap's own worker threads: a flood of slow Rewraps cannot take the threads that
        PublicKey, admin RPCs and /readyz run on (anyio's default limiter)."""
        if self._limiter is None:
            self._limiter = CapacityLimiter(self._threads)
        return self._limiter

    @property
    def rewrapper(self) -> Rewrapper:
        if self._rewrapper is None:
            self._rewrapper = Rewrapper(self.platform.keys, self.kas_ref)
        return self._rewrapper

    async def rewrap(self, req: kas_pb2.RewrapRequest, call: Call) -> kas_pb2.RewrapResponse:
        identity = call.identity
        caller = Caller(subject=getattr(identity, "subject", ""), roles=frozenset(getattr(identity, "roles", ())),
                        access_token=_bearer(call.headers.get("authorization")),
                        dpop_proof=call.headers.get("dpop") or None, host=call.headers.get("host"),
                        path=call.procedure)  # the path called (Connect or REST): the DPoP proof's htu
        ctx = call.context()
        rewrapper = self.rewrapper
        # Token, DPoP and body checks are CPU only: here. The key work runs here too as long as
        # it needs no I/O (local/provider keys with a warm private key: ~0.1-0.3 ms of crypto,
        # less than the thread hop costs); remote keys, cold caches and decision hooks that need
        # I/O go to a worker thread, so no database, KMS or HSM wait ever blocks the event loop.
        prepared = rewrapper.prepare(req.signed_request_token, caller)
        result = rewrapper.finish(prepared, caller, ctx, now=True)
        if result is NEEDS_IO:  # the rest of the work (prepared keeps what was done here)
            # abandon_on_cancel: at the deadline the client gets its answer; a manager call still
            # running holds its bulkhead slot (host.service.bulkhead) until it returns
            result = await to_thread.run_sync(rewrapper.finish, prepared, caller, ctx, abandon_on_cancel=True,
                                              limiter=self.limiter)
        resp = kas_pb2.RewrapResponse(session_public_key=result.session_public_key, schema_version=SCHEMA_VERSION)
        permitted, failed, codes = [], 0, set()
        for policy in result.responses:
            out = resp.responses.add(policy_id=policy.policy_id)
            for r in policy.results:  # kas_wrapped_key and error are one oneof: set exactly one
                if r.status == STATUS_PERMIT:
                    out.results.add(key_access_object_id=r.key_access_object_id, status=r.status,
                                    kas_wrapped_key=r.wrapped_key)
                    permitted.append(r.wrapped_key)
                else:
                    out.results.add(key_access_object_id=r.key_access_object_id, status=r.status, error=r.error)
                    failed += 1
                if r.error:
                    codes.add(r.error.split(":", 1)[0])
        if len(permitted) == 1 and not failed:  # one object, permitted: v1 clients read entity_wrapped_key
            resp.entity_wrapped_key = permitted[0]
        # the outcome goes into the call's one access line (see host.server.logs.access)
        call.log_event = "rewrap"
        call.log_fields = {"permitted": len(permitted), "failed": failed, "request_token": result.signer,
                           "errors": sorted(codes)}
        return resp


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def procedures(platform, kas_ref: str | None = None, handler: RewrapHandler | None = None, threads: int = 64):
    h = handler or RewrapHandler(platform, kas_ref, threads)
    return procedures_for(SERVICE, {"Rewrap": h.rewrap}, role="client", message_module=kas_pb2)


async def well_known(send, method: str, platform=None) -> None:
    """The public discovery document (GET only), with the KAS's base key as OpenTDF publishes it."""
    if method not in ("GET", "HEAD"):
        status, doc, extra = 405, {"code": "unimplemented", "message": "use GET"}, [(b"allow", b"GET")]
    else:
        status, doc, extra = 200, wellknown.configuration(), []
        if platform is not None:
            from host.server.kasregistry import well_known_base_key

            try:
                base_key = await to_thread.run_sync(well_known_base_key, platform)
            except PlatformError:
                base_key = None  # no base key set (or the database is down): the document without it
            if base_key:
                doc["configuration"]["base_key"] = base_key
    body = json.dumps(doc, separators=(",", ":")).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
