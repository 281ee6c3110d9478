"""An HTTP emulator of HashiCorp Vault's transit secrets engine.

Follows Vault's documented HTTP API (https://developer.hashicorp.com/vault/api-docs/secret/transit)
for the endpoints a key manager uses, with real cryptography:

    GET  /v1/sys/health
    POST /v1/auth/approle/login                 {"role_id", "secret_id"} -> auth.client_token
    POST /v1/{mount}/keys/{name}                create (type aes256-gcm96 | rsa-2048 | rsa-3072 | rsa-4096)
    GET  /v1/{mount}/keys/{name}                read (keys[version] = creation time, or {public_key} for RSA)
    POST /v1/{mount}/keys/{name}/rotate         new key version
    POST /v1/{mount}/encrypt/{name}             {"plaintext": b64[, "key_version"]} -> "vault:v<N>:<b64>"
    POST /v1/{mount}/decrypt/{name}             {"ciphertext"} -> {"plaintext": b64}

Ciphertexts are Vault's: `vault:v<version>:<base64(nonce || ciphertext || tag)>`
with AES-256-GCM (96-bit nonce) per key version, or base64 of RSA-OAEP-SHA256
for RSA keys. Errors are Vault's bodies `{"errors": [...]}` with its status
codes: 403 "permission denied" without a valid X-Vault-Token, 404 for reading
a missing key or an unmounted path, 400 for bad input and failed decryption
("cipher: message authentication failed"), and "encryption key not found" (400)
when decrypting with a missing key. Encrypting with a missing key creates it
(Vault's upsert behaviour). Keys live per namespace (X-Vault-Namespace).

Test hooks (Python methods, not HTTP): `fail_next(n, status)` makes the next n
requests fail as an overloaded/down Vault would (429/500/503), `hold()`/`release()`
stall answers as a hung server would, `add_approle`, `revoke_tokens_except_root`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.exceptions import InvalidTag

from tests.emulators import LoopbackEmulator

_NAME_RE = re.compile(r"^\w(?:[\w\-.@]*\w)?$")
_RSA_SIZES = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}
_OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


class _VaultError(Exception):
    def __init__(self, status: int, *errors: str):
        super().__init__(errors)
        self.status = status
        self.errors = list(errors)


@dataclass
class _KeyVersion:
    created: int
    secret: bytes | None = None  # AES-256 key
    private: rsa.RSAPrivateKey | None = None


@dataclass
class _TransitKey:
    name: str
    type: str
    versions: dict[int, _KeyVersion] = field(default_factory=dict)
    min_decryption_version: int = 1

    @property
    def latest(self) -> int:
        return max(self.versions)

    def add_version(self) -> None:
        version = (max(self.versions) + 1) if self.versions else 1
        if self.type == "aes256-gcm96":
            self.versions[version] = _KeyVersion(int(time.time()), secret=AESGCM.generate_key(256))
        else:
            size = _RSA_SIZES[self.type]
            self.versions[version] = _KeyVersion(int(time.time()),
                                                 private=rsa.generate_private_key(65537, size))

    def describe(self) -> dict:
        keys: dict[str, object] = {}
        for version, kv in self.versions.items():
            if kv.private is None:
                keys[str(version)] = kv.created
            else:
                pem = kv.private.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
                keys[str(version)] = {
                    "creation_time": datetime.fromtimestamp(kv.created, timezone.utc).isoformat(),
                    "name": self.type,
                    "public_key": pem,
                }
        is_rsa = self.type in _RSA_SIZES
        return {
            "allow_plaintext_backup": False,
            "auto_rotate_period": 0,
            "deletion_allowed": False,
            "derived": False,
            "exportable": False,
            "imported_key": False,
            "keys": keys,
            "latest_version": self.latest,
            "min_available_version": 0,
            "min_decryption_version": self.min_decryption_version,
            "min_encryption_version": 0,
            "name": self.name,
            "supports_decryption": True,
            "supports_derivation": not is_rsa,
            "supports_encryption": True,
            "supports_signing": is_rsa,
            "type": self.type,
        }

    def encrypt(self, plaintext: bytes, version: int) -> str:
        kv = self.versions[version]
        if kv.secret is not None:
            nonce = os.urandom(12)
            blob = nonce + AESGCM(kv.secret).encrypt(nonce, plaintext, None)
        else:
            try:
                blob = kv.private.public_key().encrypt(plaintext, _OAEP_SHA256)
            except ValueError:
                raise _VaultError(400, "failed to RSA encrypt the plaintext: crypto/rsa: message too long "
                                       "for RSA key size")
        return f"vault:v{version}:" + base64.b64encode(blob).decode()

    def decrypt(self, ciphertext: str) -> bytes:
        if not ciphertext.startswith("vault:v"):
            raise _VaultError(400, "invalid ciphertext: no prefix")
        parts = ciphertext[len("vault:v"):].split(":", 1)
        if len(parts) != 2:
            raise _VaultError(400, "invalid ciphertext: wrong number of fields")
        try:
            version = int(parts[0])
        except ValueError:
            raise _VaultError(400, "invalid ciphertext: version number could not be decoded")
        version = max(version, 1)
        if version > self.latest:
            raise _VaultError(400, "invalid ciphertext: version is too new")
        if version < self.min_decryption_version:
            raise _VaultError(400, "ciphertext or signature version is disallowed by policy (too old)")
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except (binascii.Error, ValueError):
            raise _VaultError(400, "invalid ciphertext: could not decode base64")
        kv = self.versions[version]
        if kv.secret is not None:
            if len(blob) < 12 + 16:
                raise _VaultError(400, "invalid ciphertext length")
            try:
                return AESGCM(kv.secret).decrypt(blob[:12], blob[12:], None)
            except InvalidTag:
                raise _VaultError(400, "cipher: message authentication failed")
        try:
            return kv.private.decrypt(blob, _OAEP_SHA256)
        except ValueError:
            raise _VaultError(400, "failed to RSA decrypt the ciphertext: crypto/rsa: decryption error")


def _envelope(data: dict | None = None, auth: dict | None = None) -> dict:
    return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False, "lease_duration": 0,
            "data": data, "wrap_info": None, "warnings": None, "auth": auth, "mount_type": ""}


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up (deadline tests) is not a failure
        pass


class VaultTransitEmulator(LoopbackEmulator):
    """A Vault server with transit mounted at `mounts`, on 127.0.0.1:<free port>."""

    thread_name = "vault-emulator"

    def __init__(self, root_token: str | None = None, mounts: tuple[str, ...] = ("transit",)):
        self.root_token = root_token or "hvs." + secrets.token_urlsafe(24)
        self._mounts = set(mounts)
        self._tokens: dict[str, float] = {self.root_token: float("inf")}  # token -> expiry
        self._approles: dict[str, str] = {}  # role_id -> secret_id
        self._keys: dict[tuple[str, str, str], _TransitKey] = {}  # (namespace, mount, name)
        self._lock = threading.Lock()
        self._failures: list[int] = []
        self._running = threading.Event()  # cleared by hold(): requests wait, as with a hung Vault
        self._running.set()
        self.requests: list[tuple[str, str]] = []  # (method, path) seen, for assertions
        self._server = _QuietServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ---- lifecycle -----------------------------------------------------
    @property
    def addr(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"


    # ---- test hooks ----------------------------------------------------
    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next `count` requests with `status` (as an overloaded or sealed Vault); 0 clears."""
        with self._lock:
            self._failures = [status] * count

    def hold(self) -> None:
        """Stop answering: requests wait (up to 60 s) until release(), as with a hung Vault."""
        self._running.clear()

    def release(self) -> None:
        self._running.set()

    def add_approle(self, role_id: str, secret_id: str) -> None:
        with self._lock:
            self._approles[role_id] = secret_id

    def revoke_tokens_except_root(self) -> None:
        with self._lock:
            self._tokens = {self.root_token: float("inf")}

    # ---- request handling ----------------------------------------------
    def _handler_class(self):
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "Vault"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

            def do_PUT(self):  # Vault treats PUT and POST alike
                self._dispatch("POST")

            def _dispatch(self, method: str):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    status, body = emulator._handle(method, self.path, self.headers, raw)
                except _VaultError as err:
                    status, body = err.status, {"errors": err.errors}
                payload = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if payload:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _handle(self, method: str, path: str, headers, raw: bytes) -> tuple[int, dict | None]:
        path = path.split("?", 1)[0]
        self._running.wait(60)
        with self._lock:
            self.requests.append((method, path))
            if self._failures:
                status = self._failures.pop(0)
                message = {429: "request path \"" + path + "\": rate limit quota exceeded",
                           503: "Vault is sealed"}.get(status, "internal error")
                raise _VaultError(status, message)
        if not path.startswith("/v1/"):
            raise _VaultError(404, "no handler for route")
        route = path[len("/v1/"):].strip("/")
        body = self._json_body(raw)

        if route == "sys/health" and method == "GET":
            return 200, {"initialized": True, "sealed": False, "standby": False, "performance_standby": False,
                         "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
                         "server_time_utc": int(time.time()), "version": "1.15.6",
                         "cluster_name": "vault-emulator", "cluster_id": "00000000-0000-0000-0000-000000000000"}
        if route == "auth/approle/login" and method == "POST":
            return self._approle_login(body)

        self._authorize(headers)
        namespace = (headers.get("X-Vault-Namespace") or "").strip("/")
        parts = route.split("/")
        if len(parts) < 3 or parts[0] not in self._mounts:
            raise _VaultError(404, f'no handler for route "{route}". route entry not found.')
        mount, op, name = parts[0], parts[1], parts[2]
        rest = parts[3:]
        if not _NAME_RE.match(name):
            raise _VaultError(404, f'no handler for route "{route}". route entry not found.')
        slot = (namespace, mount, name)

        with self._lock:
            if op == "keys" and not rest and method == "GET":
                key = self._keys.get(slot)
                if key is None:
                    raise _VaultError(404)
                return 200, _envelope(key.describe())
            if op == "keys" and not rest and method == "POST":
                key = self._keys.get(slot) or self._create(slot, body.get("type") or "aes256-gcm96")
                return 200, _envelope(key.describe())
            if op == "keys" and rest == ["rotate"] and method == "POST":
                key = self._keys.get(slot)
                if key is None:
                    raise _VaultError(400, "key not found")
                key.add_version()
                return 200, _envelope(key.describe())
            if op == "encrypt" and not rest and method == "POST":
                return self._encrypt(slot, body)
            if op == "decrypt" and not rest and method == "POST":
                return self._decrypt(slot, body)
        raise _VaultError(405 if op in ("keys", "encrypt", "decrypt") else 404,
                          "unsupported operation" if op in ("keys", "encrypt", "decrypt")
                          else f'no handler for route "{route}". route entry not found.')

    @staticmethod
    def _json_body(raw: bytes) -> dict:
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise _VaultError(400, "failed to parse JSON input: invalid character")
        if not isinstance(body, dict):
            raise _VaultError(400, "failed to parse JSON input: json: cannot unmarshal into map")
        return body

    def _authorize(self, headers) -> None:
        token = headers.get("X-Vault-Token") or ""
        if headers.get("Authorization", "").startswith("Bearer "):
            token = token or headers["Authorization"][len("Bearer "):]
        with self._lock:
            expiry = self._tokens.get(token)
        if expiry is None or expiry < time.time():
            raise _VaultError(403, "permission denied")

    def _approle_login(self, body: dict) -> tuple[int, dict]:
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        with self._lock:
            if not role_id or self._approles.get(role_id) != secret_id:
                raise _VaultError(400, "invalid role or secret ID")
            token = "hvs." + secrets.token_urlsafe(24)
            self._tokens[token] = time.time() + 3600
        return 200, _envelope(None, auth={"client_token": token, "accessor": secrets.token_hex(12),
                                          "policies": ["default", "transit"], "token_policies": ["default"],
                                          "metadata": {"role_name": "kas"}, "lease_duration": 3600,
                                          "renewable": True, "entity_id": str(uuid.uuid4()),
                                          "token_type": "service", "orphan": True})

    def _create(self, slot, key_type: str) -> _TransitKey:
        if key_type != "aes256-gcm96" and key_type not in _RSA_SIZES:
            raise _VaultError(400, f"unknown key type {key_type}")
        key = _TransitKey(name=slot[2], type=key_type)
        key.add_version()
        self._keys[slot] = key
        return key

    def _encrypt(self, slot, body: dict) -> tuple[int, dict]:
        plaintext_b64 = body.get("plaintext")
        if not isinstance(plaintext_b64, str):
            raise _VaultError(400, "missing plaintext to encrypt")
        try:
            plaintext = base64.b64decode(plaintext_b64, validate=True)
        except (binascii.Error, ValueError):
            raise _VaultError(400, "failed to base64-decode plaintext")
        key = self._keys.get(slot) or self._create(slot, body.get("type") or "aes256-gcm96")
        version = int(body.get("key_version") or 0) or key.latest
        if version not in key.versions:
            raise _VaultError(400, "invalid key version")
        ciphertext = key.encrypt(plaintext, version)
        return 200, _envelope({"ciphertext": ciphertext, "key_version": version})

    def _decrypt(self, slot, body: dict) -> tuple[int, dict]:
        ciphertext = body.get("ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext:
            raise _VaultError(400, "missing ciphertext to decrypt")
        key = self._keys.get(slot)
        if key is None:
            raise _VaultError(400, "encryption key not found")
        plaintext = key.decrypt(ciphertext)
        return 200, _envelope({"plaintext": base64.b64encode(plaintext).decode()})


if __name__ == "__main__":  # run standalone: python -m tests.emulators.vault_transit
    emu = VaultTransitEmulator(root_token=os.environ.get("VAULT_EMULATOR_TOKEN")).start()
    print(f"VAULT_ADDR={emu.addr}\nVAULT_TOKEN={emu.root_token}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        emu.stop()
