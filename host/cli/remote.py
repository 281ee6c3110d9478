"""How `platform policy ...` reaches the policy services: over Connect, or in this process.

    --host URL [--with-access-token T | --with-client-creds-file F]   a running platform, as otdfctl
    --db URL (or neither)                                             the database, for bootstrap/offline

Both send the same request messages to the same procedures: over the network
to `platform serve`, or straight into the server's own handlers (with the same
field validation) on a Platform built in this process. So the two modes give
the same answers and the same errors, and no rule lives in the CLI.

A token never appears in output, errors or repr: it goes into one header.
"""

from __future__ import annotations

import json

import anyio
import click

from host import errors

SERVICES = {
    "km": "policy.keymanagement.KeyManagementService",
    "kr": "policy.kasregistry.KeyAccessServerRegistryService",
    "unsafe": "policy.unsafe.UnsafeService",
}
REMOTE_TIMEOUT_MS = 30_000  # per call; a hung server ends the command instead of hanging it
_ERRORS = {cls.code: cls for cls in (errors.InvalidArgument, errors.NotFound, errors.AlreadyExists,
                                     errors.FailedPrecondition, errors.PermissionDenied, errors.Unauthenticated,
                                     errors.Unavailable, errors.DeadlineExceeded, errors.Unimplemented,
                                     errors.Internal)}


def error_for(code: str, message: str) -> errors.PlatformError:
    """A Connect error as the PlatformError the in-process call would have raised."""
    cls = _ERRORS.get(code)
    if cls is None:
        err = errors.PlatformError(message)
        err.code = code
        return err
    return cls(message)


class InProcess:
    """The server's procedures on a Platform of this process (direct database mode)."""

    def __init__(self, platform):
        from host.server import kasregistry, keymanagement
        from host.server.connect import ConnectApp

        self._app = ConnectApp(keymanagement.procedures(platform) + kasregistry.procedures(platform),
                               authorize=None)

    def call(self, service: str, method: str, request):
        return anyio.run(self._app.call_in_process, f"/{SERVICES[service]}/{method}", request)


class OverConnect:
    """A running platform, through otdf-python's generated Connect clients."""

    def __init__(self, host: str, token: str | None):
        from host.server import kasregistry  # noqa: F401  (loads the generated messages the way the server does)
        from otdf_python_proto.policy.kasregistry import KeyAccessServerRegistryServiceClientSync
        from otdf_python_proto.policy.keymanagement import KeyManagementServiceClientSync
        from otdf_python_proto.policy.unsafe.unsafe_connect import UnsafeServiceClientSync

        self.host = host.rstrip("/")
        self._headers = {"authorization": f"Bearer {token}"} if token else {}
        self._clients = {
            "km": KeyManagementServiceClientSync(self.host, timeout_ms=REMOTE_TIMEOUT_MS),
            "kr": KeyAccessServerRegistryServiceClientSync(self.host, timeout_ms=REMOTE_TIMEOUT_MS),
            "unsafe": UnsafeServiceClientSync(self.host, timeout_ms=REMOTE_TIMEOUT_MS),
        }

    def __repr__(self) -> str:  # never the token
        return f"OverConnect({self.host!r})"

    def call(self, service: str, method: str, request):
        from connectrpc.errors import ConnectError

        client = self._clients[service]
        fn = getattr(client, _snake(method), None)
        if fn is None:  # an RPC newer than the generated clients (host.server.newer_fields)
            fn = _newer_method(client, SERVICES[service], method)
        try:
            return fn(request, headers=self._headers)
        except ConnectError as e:
            code = str(getattr(e.code, "value", str(e.code))).lower()
            if code == "unavailable" and e.message.startswith("Request failed:"):  # the transport's, not the server's
                reason = e.message.rsplit(": ", 1)[-1]
                raise errors.Unavailable(f"cannot reach the platform at {self.host}: {reason}") from None
            raise error_for(code, e.message) from None
        except OSError as e:  # refused, reset, DNS: say where, not what was sent
            raise errors.Unavailable(f"cannot reach the platform at {self.host}: {e.strerror or type(e).__name__}") \
                from None


def _newer_method(client, service_name: str, method: str):
    from connectrpc.method import IdempotencyLevel, MethodInfo

    from host.server import newer_fields

    if (service_name, method) != (newer_fields.UNSAFE_SERVICE_NAME, "UnsafeUpdateKey"):
        raise errors.Unimplemented(f"{service_name}/{method} is not known to this CLI")
    info = MethodInfo(name=method, service_name=service_name, input=newer_fields.UnsafeUpdateKeyRequest,
                      output=newer_fields.UnsafeUpdateKeyResponse, idempotency_level=IdempotencyLevel.UNKNOWN)
    return lambda request, headers: client.execute_unary(request=request, method=info, headers=headers)


def _snake(method: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in method).lstrip("_")


def client_credentials_token(host: str, path: str | None, inline: str | None = None) -> str:
    """An access token for the client in otdfctl's credentials file ({"clientId", "clientSecret"}),
    or the same JSON inline (--with-client-creds), from the token endpoint of the issuer the
    platform names (PLATFORM_OIDC_ISSUER, via discovery)."""
    import httpx

    source = f"--with-client-creds-file {path}" if inline is None else "--with-client-creds"
    try:
        if inline is None:
            with open(path, encoding="utf-8") as f:
                creds = json.load(f)
        else:
            creds = json.loads(inline)
        client_id, secret = creds["clientId"], creds["clientSecret"]
        if not (isinstance(client_id, str) and isinstance(secret, str) and client_id and secret):
            raise TypeError
    except (OSError, ValueError, KeyError, TypeError):
        raise errors.InvalidArgument(f"{source}: expected a JSON object with clientId and clientSecret") from None
    try:
        doc = httpx.get(f"{host.rstrip('/')}/.well-known/opentdf-configuration", timeout=10).json()
    except httpx.HTTPError as e:  # otdfctl: "Failed to connect to the platform"
        raise errors.Unavailable(f"cannot reach the platform at {host}: {type(e).__name__}") from None
    except ValueError:
        raise errors.Unavailable(f"{host} answers no OpenTDF discovery document; is it the platform?") from None
    try:
        conf = doc.get("configuration", doc)
        idp = conf.get("idp") or {}
        token_endpoint = idp.get("token_endpoint")
        issuer = idp.get("issuer") or conf.get("platform_issuer")
        if not token_endpoint and not issuer:
            raise errors.FailedPrecondition(f"the platform at {host} names no OIDC issuer; use --with-access-token")
        if not token_endpoint:
            token_endpoint = httpx.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration",
                                       timeout=10).json()["token_endpoint"]
        r = httpx.post(token_endpoint, timeout=10,
                       data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    except (httpx.HTTPError, ValueError, KeyError, AttributeError):
        raise errors.Unavailable(f"cannot get a token for client {client_id!r} from the platform's issuer") from None
    try:
        token = r.json().get("access_token") if r.status_code == 200 else None
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise errors.Unauthenticated(f"the issuer refused client {client_id!r} (HTTP {r.status_code})")
    return token


def api():
    """The transport of this command (built once per invocation)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if "policy_api" not in root.meta:
        target = root.meta.get("api_target") or {}
        if target.get("host"):
            token = target.get("token")
            if token is None and (target.get("creds_file") or target.get("creds_json") is not None):
                token = client_credentials_token(target["host"], target.get("creds_file"), target.get("creds_json"))
            if token is None:  # as otdfctl: nothing would authenticate the calls
                raise click.UsageError("with --host, give one of --with-access-token, --with-client-creds-file or "
                                       "--with-client-creds")
            root.meta["policy_api"] = Api(OverConnect(target["host"], token), remote=True)
        else:
            root.meta["policy_api"] = Api(InProcess(root.obj), remote=False)
    return root.meta["policy_api"]


class Api:
    """`api.kr("GetKey", request)`: one procedure call, whichever way it travels."""

    def __init__(self, transport, remote: bool):
        self._transport = transport
        self.remote = remote

    def km(self, method: str, request):
        return self._transport.call("km", method, request)

    def kr(self, method: str, request):
        return self._transport.call("kr", method, request)

    def unsafe(self, method: str, request):
        return self._transport.call("unsafe", method, request)
