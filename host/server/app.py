"""The platform's ASGI application: Connect RPCs, the legacy KAS endpoint and ops endpoints.

    POST /policy.keymanagement.KeyManagementService/*       admin
    POST /policy.kasregistry.KeyAccessServerRegistryService/* admin (subset)
    POST|GET /kas.AccessService/PublicKey, LegacyPublicKey  public (PLATFORM_KAS_PUBLIC_KEY_REQUIRES_AUTH: client)
    POST /kas.AccessService/Rewrap                          client (host.kas)
    GET  /kas/kas_public_key  /kas/v2/kas_public_key        the same, as OpenTDF's REST routes (host.server.rest)
    POST /kas/v2/rewrap
    GET  /.well-known/opentdf-configuration                 no credentials (discovery)
    GET  /healthz  /readyz  /metrics                        no credentials

Every request writes one access line: RPCs and REST routes in ConnectApp.serve,
everything else (ops endpoints, discovery, unknown paths) in `_plain`.

One app per process: each worker process builds its own Platform (plugins,
registry, database pool) in `app_from_env`, from the settings the `platform
serve` command put in PLATFORM_SERVE_SETTINGS.
"""

from __future__ import annotations

import json
import os
import time

import anyio
from anyio import CapacityLimiter, to_thread

from host import metrics
from host.app import Platform, Settings
from host.errors import FailedPrecondition, InvalidArgument, NotFound, PlatformError
from host.server import auth, kas, kas_rewrap, kasregistry, keymanagement, logs, rest, rsgi
from host.server.connect import DEFAULT_MAX_BODY_BYTES, ConnectApp, _clip
from host.server.limits import ServerLimits
from host.server.protos import kas_pb2  # noqa: F401  (the shim must load before handlers)

SETTINGS_ENV = "PLATFORM_SERVE_SETTINGS"
# /readyz's "kas" check while no KAS is registered: reported, not unready (the admin API that
# registers one must be reachable through the load balancer); an ambiguous or unknown one is unready.
NO_KAS = "no KAS registered yet"
READY_CACHE_S = 1.0         # /readyz checks the database at most this often
READY_CHECK_TIMEOUT_S = 2.0
MAX_BODY_ENV = "PLATFORM_MAX_BODY_BYTES"
# HTTP status -> the Connect code the access line reports for the plain routes
_STATUS_CODES = {200: "ok", 404: "not_found", 405: "unimplemented", 503: "unavailable", 500: "internal"}


class PlatformApp:
    def __init__(self, platform: Platform, authenticator: auth.Authenticator,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, kas_ref: str | None = None,
                 limits: ServerLimits | None = None):
        self.platform = platform
        self.authenticator = authenticator
        self.limits = limits or ServerLimits()
        self.kas = kas.KasHandlers(platform, kas_ref)
        procedures = (keymanagement.procedures(platform) + kasregistry.procedures(platform)
                      + kas.procedures(platform, self.kas)
                      + kas_rewrap.procedures(platform, self.kas.kas_ref, threads=self.limits.rewrap_threads))
        self.connect = ConnectApp(procedures, self.authorize, max_body_bytes, self.limits)
        self.rest = rest.routes(self.connect)
        self.started = False
        self._ready_cache: tuple[float, str] | None = None   # (valid until, database check result)
        self._health_limiter: CapacityLimiter | None = None

    async def authorize(self, headers: dict[str, str], role: str) -> auth.Identity:
        header = headers.get("authorization")
        if self.authenticator.may_block:
            return await to_thread.run_sync(self.authenticator.authorize, header, role)
        return self.authenticator.authorize(header, role)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        path = scope["path"]
        if self.connect.handles(path) and path != kas_rewrap.wellknown.PATH:  # it looks like a procedure
            return await self.connect(scope, receive, send)
        route = self.rest.get(path)
        if route is not None:
            return await self.connect.serve(scope, receive, send, *route)
        return await self._plain(scope, send, path, scope["method"])

    async def _plain(self, scope, send, path: str, method: str) -> None:
        """Ops endpoints, discovery and unknown paths, each with its access line."""
        started = time.perf_counter()
        status = 0

        async def sent(event) -> None:
            nonlocal status
            if event["type"] == "http.response.start":
                status = event["status"]
            await send(event)

        if path == "/healthz":
            await _json(sent, 200, {"status": "ok"})
        elif path == "/readyz":
            await self._readyz(sent)
        elif path == "/metrics":
            body, content_type = metrics.render()
            await _send(sent, 200, content_type, body)
        elif path == kas_rewrap.wellknown.PATH:
            await kas_rewrap.well_known(sent, method, self.platform)
        else:
            await _json(sent, 404, {"code": "not_found", "message": "not found"})
        logs.access(request_id=logs.new_request_id(), method=method, path=_clip(path),
                    code=_STATUS_CODES.get(status, str(status)), seconds=time.perf_counter() - started,
                    identity=None)

    # granian's RSGI interface (`platform serve` on granian): the same app behind a thin adapter.
    def __rsgi_init__(self, loop) -> None:
        self.warm_up()

    def __rsgi_del__(self, loop) -> None:
        logs.flush_access()  # the lines and counts of the loop's last pass
        metrics.flush_rpcs()
        self.platform.close()

    async def __rsgi__(self, scope, protocol) -> None:
        if scope.proto == "http":
            await rsgi.serve_http(self, scope, protocol)

    async def _lifespan(self, receive, send) -> None:
        while True:
            event = await receive()
            if event["type"] == "lifespan.startup":
                try:
                    await to_thread.run_sync(self.warm_up)
                except PlatformError as e:
                    logs.warning("startup failed", error=e.message)
                    await send({"type": "lifespan.startup.failed", "message": e.message})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif event["type"] == "lifespan.shutdown":
                await to_thread.run_sync(self.platform.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    def warm_up(self) -> None:
        """Open the database, load plugins and check keys before taking traffic."""
        p = self.platform
        p.store
        p.registry
        keys = p.keys
        if hasattr(keys, "check_startup"):
            keys.check_startup()
        self.started = True
        logs.info("platform ready", pid=os.getpid(), db=p.store.url, managers=p.registry.names(),
                  plugins=[getattr(pl, "path", str(pl)) for pl in p.plugins])

    async def _readyz(self, send) -> None:
        """Ready when plugins are loaded, the database answers a query now and the KAS routes know
        which KAS they are (checked at most once per READY_CACHE_S, each check bounded by
        READY_CHECK_TIMEOUT_S; no KAS at all is reported, not unready: NO_KAS); each live
        manager's health is reported beside it without deciding readiness (its keys fail
        alone, the rest still serve)."""
        now = time.monotonic()
        if self._ready_cache is None or now >= self._ready_cache[0]:
            database = await self._check_database()
            kas_identity = await self._check(self._kas_identity) if database == "ok" else "needs the database"
            self._ready_cache = (time.monotonic() + READY_CACHE_S, database, kas_identity)
        _, database, kas_identity = self._ready_cache
        checks = {"plugins": "ok" if self.started else "not loaded", "database": database, "kas": kas_identity}
        ready = self.started and database == "ok" and kas_identity in ("ok", NO_KAS)
        doc = {"status": "ready" if ready else "not ready", "checks": checks}
        if self.started:
            doc["managers"] = self.platform.keys.unwrap_path.health.snapshot()
        await _json(send, 200 if ready else 503, doc)

    async def _check_database(self) -> str:
        return await self._check(self.platform.store.db.check)

    def _kas_identity(self) -> None:
        """Raise unless the KAS routes know which registered KAS they answer for; worded for the
        operator reading /readyz (the client of a KAS route only learns that it cannot answer)."""
        ref = self.kas.kas_ref
        try:
            self.platform.keys.lifecycle.kas(ref)
        except NotFound:
            raise FailedPrecondition(f"PLATFORM_KAS={ref!r} names no registered KAS") from None
        except FailedPrecondition:  # none registered: a new server, bootstrapped through its admin API
            raise FailedPrecondition(NO_KAS) from None
        except InvalidArgument:  # several, and no PLATFORM_KAS to choose
            raise FailedPrecondition("several KAS are registered and PLATFORM_KAS does not say which this "
                                     "server is; set it to the id, uri or name of one") from None

    async def _check(self, fn) -> str:
        if self._health_limiter is None:  # its own threads: a busy server still answers probes
            self._health_limiter = CapacityLimiter(2)
        try:
            with anyio.fail_after(READY_CHECK_TIMEOUT_S):
                await to_thread.run_sync(fn, abandon_on_cancel=True, limiter=self._health_limiter)
            return "ok"
        except TimeoutError:
            return f"no answer within {READY_CHECK_TIMEOUT_S:g} s"
        except PlatformError as e:
            return e.message
        except Exception as e:  # the driver's own error text may name hosts: report only its type
            return f"unreachable ({type(e).__name__})"


async def _send(send, status: int, content_type: str, body: bytes, request_id: str | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if request_id:
        headers.append((b"x-request-id", request_id.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send, status: int, doc, request_id: str | None = None) -> None:
    await _send(send, status, "application/json", json.dumps(doc, separators=(",", ":")).encode(), request_id)


def build_app(platform: Platform, env=None) -> PlatformApp:
    """The app for one process, configured from the environment (auth, body limit, KAS)."""
    env = os.environ if env is None else env
    authenticator = auth.Authenticator.from_env(env)
    if not authenticator.configured:
        raise _no_credentials()
    raw_limit = env.get(MAX_BODY_ENV) or str(DEFAULT_MAX_BODY_BYTES)
    if not raw_limit.isdigit() or int(raw_limit) < 1024:
        raise InvalidArgument(f"{MAX_BODY_ENV} must be an integer of at least 1024, got {raw_limit[:20]!r}")
    return PlatformApp(platform, authenticator, int(raw_limit), env.get("PLATFORM_KAS") or None,
                       ServerLimits.from_env(env))


def _no_credentials() -> PlatformError:
    return FailedPrecondition(
        "no credentials configured: set PLATFORM_ADMIN_TOKENS / PLATFORM_ADMIN_TOKEN_FILE (and/or "
        "PLATFORM_CLIENT_TOKENS), or PLATFORM_OIDC_ISSUER, PLATFORM_OIDC_AUDIENCE and PLATFORM_OIDC_JWKS")


def settings_to_env(settings: Settings) -> str:
    return json.dumps({"plugin_paths": list(settings.plugin_paths), "db_url": settings.db_url,
                       "root_key_file": settings.root_key_file, "verbosity": settings.verbosity,
                       "state_dir": settings.state_dir})


def app_from_env() -> PlatformApp:
    """App factory for worker processes (uvicorn ASGI / granian RSGI, `factory=True`)."""
    doc = json.loads(os.environ.get(SETTINGS_ENV) or "{}")
    settings = Settings(plugin_paths=tuple(doc.get("plugin_paths") or ()), db_url=doc.get("db_url"),
                        root_key_file=doc.get("root_key_file"), verbosity=int(doc.get("verbosity") or 0),
                        **({"state_dir": doc["state_dir"]} if doc.get("state_dir") else {}))
    logs.configure(settings.verbosity)
    metrics.WORKER_STARTS.inc()
    return build_app(Platform(settings))
