"""An HTTPS emulator of Azure Key Vault's keys API and the Microsoft identity platform token endpoint.

One loopback HTTPS server (certificate from a throwaway CA made at start;
`ca_file` is its PEM) plays both hosts:

  identity (authority host):
    GET  /{tenant}/v2.0/.well-known/openid-configuration
    POST /{tenant}/oauth2/v2.0/token       client_credentials (client_id, client_secret, scope)
    GET  /common/discovery/instance        (instance discovery, if a client asks)
  vault (https://learn.microsoft.com/rest/api/keyvault/keys), each with ?api-version=7.x:
    POST /keys/{name}/create                {"kty": "RSA", "key_size", "key_ops"}   (a new version)
    POST /keys/{name}/rotate
    GET  /keys/{name}[/{version}]           KeyBundle with the public JWK (n, e)
    POST /keys/{name}/{version}/wrapkey | unwrapkey | encrypt | decrypt
                                            {"alg": "RSA-OAEP" | "RSA-OAEP-256" | "RSA1_5", "value": b64url}

Authentication is Key Vault's challenge flow: a vault request without a
valid bearer token gets 401 with
`WWW-Authenticate: Bearer authorization="<authority>/<tenant>", resource="https://vault.azure.net"`;
the client fetches a token for scope `https://vault.azure.net/.default` and
retries. Tokens are opaque and bound to the client that got them; a client
registered with a restricted set of key permissions gets 403 Forbidden for
the others, as RBAC/access policies do. Errors use Key Vault's body
`{"error": {"code", "message"}}` (KeyNotFound 404, BadParameter 400, Forbidden 403,
Unauthorized 401, Throttled 429) and the identity platform's OAuth errors
(invalid_client 401 with an AADSTS code).

Test hooks (Python methods, not HTTP): `add_client`, `fail_next(n, status)`,
`hold()`/`release()` (vault requests stall as on a hung service).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import os
import secrets
import ssl
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from tests.emulators import LoopbackEmulator

VAULT_RESOURCE = "https://vault.azure.net"
VAULT_SCOPE = VAULT_RESOURCE + "/.default"
_ALL_KEY_OPS = ["encrypt", "decrypt", "sign", "verify", "wrapKey", "unwrapKey"]
_PADDINGS = {
    "RSA-OAEP": lambda: padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    "RSA-OAEP-256": lambda: padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
    "RSA1_5": lambda: padding.PKCS1v15(),
}
# operation path segment -> (key_ops name, permission name, decrypts?)
_OPERATIONS = {
    "wrapkey": ("wrapKey", "wrapKey", False),
    "unwrapkey": ("unwrapKey", "unwrapKey", True),
    "encrypt": ("encrypt", "encrypt", False),
    "decrypt": ("decrypt", "decrypt", True),
}
ALL_PERMISSIONS = frozenset({"get", "create", "rotate", "wrapKey", "unwrapKey", "encrypt", "decrypt"})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_bytes(n: int) -> bytes:
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


class _HttpError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _kv_error(status: int, code: str, message: str, headers: dict | None = None) -> _HttpError:
    return _HttpError(status, {"error": {"code": code, "message": message}}, headers)


@dataclass
class _KeyVersion:
    version: str
    private: rsa.RSAPrivateKey
    key_ops: list[str]
    created: int


@dataclass
class _Client:
    tenant: str
    client_id: str
    secret: str
    permissions: frozenset[str]


@dataclass
class _Token:
    client: _Client
    expires: float


@dataclass
class _Key:
    name: str
    versions: list[_KeyVersion] = field(default_factory=list)


class _TlsMaterial:
    """A throwaway CA and a server certificate for localhost / 127.0.0.1, written to a temp dir."""

    def __init__(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "km-test throwaway CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                   .sign(ca_key, hashes.SHA256()))
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        self.dir = tempfile.mkdtemp(prefix="azure-kv-emulator-")
        self.ca_file = os.path.join(self.dir, "ca.pem")
        self.cert_file = os.path.join(self.dir, "server.pem")
        self.key_file = os.path.join(self.dir, "server.key")
        with open(self.ca_file, "wb") as f:
            f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
        with open(self.cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(self.key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def cleanup(self) -> None:
        for name in (self.ca_file, self.cert_file, self.key_file):
            try:
                os.unlink(name)
            except FileNotFoundError:
                pass
        os.rmdir(self.dir)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, handler, context: ssl.SSLContext):
        super().__init__(address, handler)
        self._context = context

    def finish_request(self, request, client_address):
        # TLS handshake in the worker thread, so one slow client cannot stall accept().
        try:
            request = self._context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address):  # a client hanging up is not a test failure
        pass


class AzureKeyVaultEmulator(LoopbackEmulator):
    """Key Vault + identity platform on https://127.0.0.1:<free port>."""

    thread_name = "azure-kv-emulator"

    def __init__(self, tenant_id: str | None = None):
        self.tenant_id = tenant_id or str(uuid.uuid4())
        self._tls = _TlsMaterial()
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, _Token] = {}
        self._keys: dict[str, _Key] = {}
        self._failures: list[int] = []
        self._running = threading.Event()  # cleared by hold(): vault requests wait
        self._running.set()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had bearer token)
        self._server = _TlsServer(("127.0.0.1", 0), self._handler_class(), self._tls.server_context())
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def vault_url(self) -> str:
        return self.url + "/"

    @property
    def authority_host(self) -> str:
        return self.url

    @property
    def ca_file(self) -> str:
        return self._tls.ca_file

    def after_stop(self) -> None:
        self._tls.cleanup()

    # ---- test hooks ----------------------------------------------------
    def add_client(self, client_id: str | None = None, secret: str | None = None,
                   permissions: frozenset[str] | set[str] = ALL_PERMISSIONS) -> tuple[str, str]:
        """Register an application (service principal) and its key permissions; returns (id, secret)."""
        client_id = client_id or str(uuid.uuid4())
        secret = secret or secrets.token_urlsafe(30)
        with self._lock:
            self._clients[client_id] = _Client(self.tenant_id, client_id, secret, frozenset(permissions))
        return client_id, secret

    def issued_tokens(self) -> list[str]:
        """Every access token handed out so far (for scanning logs for them)."""
        with self._lock:
            return list(self._tokens)

    def hold(self) -> None:
        """Stop answering vault requests (they wait up to 60 s) until release(), as a hung service would."""
        self._running.clear()

    def release(self) -> None:
        self._running.set()

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` vault requests with `status` (429 throttling, 5xx outage); 0 clears."""
        with self._lock:
            self._failures = [status] * count

    # ---- HTTP ------------------------------------------------------------
    def _handler_class(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def _dispatch(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    status, body, headers = emulator._handle(method, self.path, self.headers, raw)
                except _HttpError as err:
                    status, body, headers = err.status, err.body, err.headers
                payload = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("x-ms-request-id", str(uuid.uuid4()))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _handle(self, method: str, target: str, headers, raw: bytes):
        parts = urlsplit(target)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in path.split("/") if s]
        if segments and segments[0] == "keys":
            return self._vault(method, segments[1:], query, headers, raw)
        if segments == ["common", "discovery", "instance"] and method == "GET":
            return self._instance_discovery(query)
        if len(segments) == 4 and segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            return self._openid_configuration(segments[0])
        if len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
            return self._token(segments[0], raw)
        raise _kv_error(404, "NotFound", "The requested resource was not found.")

    # ---- identity platform ---------------------------------------------
    def _openid_configuration(self, tenant: str):
        if tenant not in (self.tenant_id, "organizations", "common"):
            raise _HttpError(400, {"error": "invalid_tenant",
                                   "error_description": f"AADSTS90002: Tenant '{tenant}' not found."})
        base = f"{self.url}/{tenant}"
        return 200, {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt",
                                                      "client_secret_basic"],
            "jwks_uri": f"{self.url}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{self.url}/{tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.url}/oidc/userinfo",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
            "tenant_region_scope": "NA",
            "cloud_instance_name": "127.0.0.1",
        }, {}

    def _instance_discovery(self, query: dict):
        endpoint = query.get("authorization_endpoint", "")
        tenant = urlsplit(endpoint).path.strip("/").split("/")[0] or self.tenant_id
        host = f"127.0.0.1:{self.port}"
        return 200, {"tenant_discovery_endpoint": f"{self.url}/{tenant}/v2.0/.well-known/openid-configuration",
                     "api-version": "1.1",
                     "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}]}, {}

    def _token(self, tenant: str, raw: bytes):
        form = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        trace = {"timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
                 "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4())}
        if tenant != self.tenant_id:
            raise _HttpError(400, {"error": "invalid_request", "error_codes": [90002],
                                   "error_description": f"AADSTS90002: Tenant '{tenant}' not found.", **trace})
        if form.get("grant_type") != "client_credentials":
            raise _HttpError(400, {"error": "unsupported_grant_type", "error_codes": [70003],
                                   "error_description": "AADSTS70003: The app requested an unsupported grant type.",
                                   **trace})
        with self._lock:
            client = self._clients.get(form.get("client_id", ""))
        if client is None:
            raise _HttpError(400, {"error": "unauthorized_client", "error_codes": [700016],
                                   "error_description": "AADSTS700016: Application with identifier "
                                   f"'{form.get('client_id', '')}' was not found in the directory.", **trace})
        if not secrets.compare_digest(form.get("client_secret", ""), client.secret):
            raise _HttpError(401, {"error": "invalid_client", "error_codes": [7000215],
                                   "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the "
                                   "secret being sent in the request is the client secret value, not the client "
                                   "secret ID.", **trace})
        if VAULT_SCOPE not in form.get("scope", "").split():
            raise _HttpError(400, {"error": "invalid_scope", "error_codes": [70011],
                                   "error_description": "AADSTS70011: The provided value for the input parameter "
                                   "'scope' is not valid.", **trace})
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = _Token(client, time.time() + 3600)
        return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                     "access_token": token}, {}

    # ---- Key Vault keys API ------------------------------------------------
    def _challenge(self) -> _HttpError:
        header = (f'Bearer authorization="{self.url}/{self.tenant_id}", '
                  f'resource="{VAULT_RESOURCE}"')
        return _kv_error(401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.",
                         {"WWW-Authenticate": header})

    def _authenticate(self, headers) -> _Client:
        auth = headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            raise self._challenge()
        with self._lock:
            token = self._tokens.get(auth[len("Bearer "):])
        if token is None or token.expires < time.time():
            error = self._challenge()
            error.body["error"]["message"] = "AKV10032: Invalid issuer or token."
            raise error
        return token.client

    @staticmethod
    def _require(client: _Client, permission: str, name: str) -> None:
        if permission not in client.permissions:
            raise _HttpError(403, {"error": {
                "code": "Forbidden",
                "message": f"The user, group or application 'appid={client.client_id}' does not have keys "
                           f"{permission} permission on key vault. For help resolving this issue, please see "
                           "https://go.microsoft.com/fwlink/?linkid=2125287",
                "innererror": {"code": "AccessDenied"}}})

    def _vault(self, method: str, segments: list[str], query: dict, headers, raw: bytes):
        self._running.wait(60)
        with self._lock:
            self.requests.append((method, "/keys/" + "/".join(segments), "Authorization" in headers))
        client = self._authenticate(headers)
        if "api-version" not in query:
            raise _kv_error(400, "BadParameter", "The 'api-version' query parameter is missing.")
        with self._lock:
            if self._failures:
                status = self._failures.pop(0)
                if status == 429:
                    raise _kv_error(429, "Throttled", "Request was not processed because too many requests "
                                    "were received.", {"Retry-After": "0"})
                raise _kv_error(status, "ServiceUnavailable", "The service is temporarily unavailable.")
        body = {}
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                raise _kv_error(400, "BadParameter", "The request body is not valid JSON.")
            if not isinstance(body, dict):
                raise _kv_error(400, "BadParameter", "The request body must be a JSON object.")
        if not segments:
            raise _kv_error(404, "NotFound", "The requested resource was not found.")
        name = segments[0]
        if method == "POST" and segments[1:] in (["create"], ["rotate"]):
            self._require(client, segments[1], name)
            return 200, self._create(name, body, rotate=segments[1] == "rotate"), {}
        if method == "GET" and len(segments) in (1, 2):
            self._require(client, "get", name)
            with self._lock:
                version = self._find(name, segments[1] if len(segments) == 2 else "")
            return 200, self._bundle(name, version), {}
        if method == "POST" and len(segments) in (2, 3) and segments[-1].lower() in _OPERATIONS:
            op = segments[-1].lower()
            key_op, permission, decrypts = _OPERATIONS[op]
            self._require(client, permission, name)
            with self._lock:
                version = self._find(name, segments[1] if len(segments) == 3 else "")
            return 200, self._crypto(name, version, key_op, decrypts, body), {}
        raise _kv_error(405 if method not in ("GET", "POST") else 404, "NotFound",
                        "The requested resource was not found.")

    def _find(self, name: str, version: str) -> _KeyVersion:
        key = self._keys.get(name)
        if key is not None and key.versions:
            if not version:
                return key.versions[-1]
            for candidate in key.versions:
                if candidate.version == version:
                    return candidate
        shown = f"{name}/{version}" if version else name
        raise _kv_error(404, "KeyNotFound", f"A key with (name/id) {shown} was not found in this key vault. If "
                        "you recently deleted this key you may be able to recover it using the correct recovery "
                        "command. For help resolving this issue, please see https://go.microsoft.com/fwlink/"
                        "?linkid=2125182")

    def _create(self, name: str, body: dict, rotate: bool) -> dict:
        if not rotate:
            kty = body.get("kty")
            if kty not in ("RSA", "RSA-HSM"):
                raise _kv_error(400, "BadParameter", "Key type (kty) is not supported by this emulator; use RSA.")
            size = body.get("key_size") or 2048
            if size not in (2048, 3072, 4096):
                raise _kv_error(400, "BadParameter", "The key size is not supported.")
            ops = body.get("key_ops") or list(_ALL_KEY_OPS)
            if not isinstance(ops, list) or not set(ops) <= set(_ALL_KEY_OPS):
                raise _kv_error(400, "BadParameter", "Invalid key_ops.")
        private_size = None
        with self._lock:
            current = self._keys.get(name)
            if rotate:
                if current is None or not current.versions:
                    self._find(name, "")  # raises KeyNotFound
                private_size = current.versions[-1].private.key_size
                ops = current.versions[-1].key_ops
            else:
                private_size = size
        private = rsa.generate_private_key(65537, private_size)
        version = _KeyVersion(uuid.uuid4().hex, private, list(ops), int(time.time()))
        with self._lock:
            self._keys.setdefault(name, _Key(name)).versions.append(version)
        return self._bundle(name, version)

    def _bundle(self, name: str, version: _KeyVersion) -> dict:
        numbers = version.private.public_key().public_numbers()
        return {
            "key": {"kid": f"{self.url}/keys/{name}/{version.version}", "kty": "RSA",
                    "key_ops": version.key_ops, "n": _b64url(_int_bytes(numbers.n)),
                    "e": _b64url(_int_bytes(numbers.e))},
            "attributes": {"enabled": True, "created": version.created, "updated": version.created,
                           "recoveryLevel": "Recoverable+Purgeable", "recoverableDays": 90,
                           "exportable": False},
        }

    def _crypto(self, name: str, version: _KeyVersion, key_op: str, decrypts: bool, body: dict) -> dict:
        if key_op not in version.key_ops:
            raise _kv_error(400, "BadParameter", f"Operation {key_op} is not permitted on this key.")
        alg = body.get("alg")
        if alg not in _PADDINGS:
            raise _kv_error(400, "BadParameter", "The specified algorithm is not supported for this key.")
        value = body.get("value")
        if not isinstance(value, str):
            raise _kv_error(400, "BadParameter", "Property 'value' is required.")
        try:
            data = _unb64url(value)
        except ValueError:
            raise _kv_error(400, "BadParameter", "Property 'value' is not valid base64url.")
        try:
            if decrypts:
                result = version.private.decrypt(data, _PADDINGS[alg]())
            else:
                result = version.private.public_key().encrypt(data, _PADDINGS[alg]())
        except ValueError:
            raise _kv_error(400, "BadParameter", "The parameter is incorrect.")
        return {"kid": f"{self.url}/keys/{name}/{version.version}", "value": _b64url(result)}


if __name__ == "__main__":  # run standalone: python -m tests.emulators.azure_keyvault
    emu = AzureKeyVaultEmulator().start()
    cid, secret = emu.add_client()
    print(f"vault_url={emu.vault_url}\nauthority_host={emu.authority_host}\ntenant_id={emu.tenant_id}\n"
          f"client_id={cid}\nclient_secret={secret}\nca_cert={emu.ca_file}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emu.stop()
