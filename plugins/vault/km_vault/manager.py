"""The `vault` key manager: HashiCorp Vault's transit engine through hvac.

- wrap/unwrap: transit encrypt/decrypt. The wrapped bytes are Vault's own
  ciphertext string `vault:v<N>:...` (ASCII), so data wrapped under an older
  key version still unwraps after `rotate`.
- public_key: the latest version's public key of a transit RSA/ECDSA key.
- Remote mode (decrypting a DEK a TDF client wrapped to the public key) is
  refused: transit decrypts RSA with OAEP-SHA-256 and TDF clients use
  OAEP-SHA-1. Provider mode is the supported one.

Every call runs under the call's deadline: each HTTP request gets the time
left (capped by the config's `timeout`), and throttling/5xx/connection errors
are retried at most 3 times while time remains. Errors carry Vault's own
message (never a token) and map onto the ABI status codes.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import threading
import time

import hvac
import hvac.adapters
import hvac.exceptions
import requests
from cryptography.hazmat.primitives import serialization

from km_pyembed import (DEBUG, WARN, CryptoError, Deadline, DeadlineExceeded, InvalidArgument, ManagerError, NotFound,
                        PermissionDenied, Unavailable, Unimplemented, log)

from .config import KEY_NAME_RE, VaultConfig, parse_config


MAX_ATTEMPTS = 3
_BACKOFF_S = 0.1
_CIPHERTEXT_PREFIX = b"vault:v"
_ASYMMETRIC_PREFIXES = ("rsa-", "ecdsa-")

# Per-request timeout for the HTTP call in flight on this thread.
_request_timeout: contextvars.ContextVar[float | None] = contextvars.ContextVar("vault_request_timeout",
                                                                              default=None)


class _DeadlineAdapter(hvac.adapters.JSONAdapter):
    """hvac's JSON adapter, with each request's timeout taken from the current call's deadline."""

    def request(self, *args, **kwargs):
        timeout = _request_timeout.get()
        if timeout is not None:
            kwargs["timeout"] = timeout
        return super().request(*args, **kwargs)


class _Retryable(Exception):
    """Internal: a failure worth another attempt (wraps the mapped ManagerError)."""

    def __init__(self, error: ManagerError):
        super().__init__(str(error))
        self.error = error


class VaultTransitManager:
    """One provider configuration's view of a Vault transit mount."""

    def __init__(self, config: dict | bytes | str):
        self._cfg: VaultConfig = parse_config(config)
        self._client = hvac.Client(
            url=self._cfg.vault_addr,
            token=self._cfg.vault_token,
            namespace=self._cfg.namespace,
            verify=self._cfg.ca_cert or True,
            timeout=self._cfg.timeout,
            adapter=_DeadlineAdapter,
        )
        self._login_lock = threading.Lock()
        self._logged_in = not self._cfg.uses_approle
        self._key_types: dict[str, str] = {}  # key name -> transit key type (immutable in Vault)

    def __repr__(self) -> str:  # never show the token
        return f"VaultTransitManager(addr={self._cfg.vault_addr!r}, mount={self._cfg.mount_path!r}, " \
               f"key={self._cfg.key_name!r})"

    # ---- the manager protocol ---------------------------------------------
    def wrap(self, key_id: str, plain: bytes, timeout: float | None = None) -> bytes:
        name = self._key_name(key_id)
        deadline = Deadline(timeout)
        key_type = self._key_type(name, deadline)
        plaintext = base64.b64encode(bytes(plain)).decode()
        data = self._call("encrypt", name, deadline, lambda: self._client.secrets.transit.encrypt_data(
            name, plaintext, mount_point=self._cfg.mount_path))
        ciphertext = data["data"]["ciphertext"]
        log(DEBUG, f"wrapped {len(plain)} bytes under transit key {name} ({key_type}) as "
                   f"{ciphertext[:ciphertext.index(':', 6)]}")
        return ciphertext.encode("ascii")

    def unwrap(self, key_id: str, wrapped: bytes, timeout: float | None = None) -> bytes:
        name = self._key_name(key_id)
        deadline = Deadline(timeout)
        wrapped = bytes(wrapped)
        if not wrapped.startswith(_CIPHERTEXT_PREFIX):
            key_type = self._key_type(name, deadline)
            if key_type.startswith("rsa-"):
                raise Unimplemented(
                    f"vault: remote mode is not supported: transit key '{name}' is {key_type}, and Vault "
                    "decrypts RSA with OAEP-SHA-256 while TDF clients wrap DEKs with OAEP-SHA-1; use "
                    "provider mode (the KAS private key wrapped by a transit key)")
            raise CryptoError("vault: wrapped value is not a Vault transit ciphertext ('vault:v<N>:...')")
        try:
            ciphertext = wrapped.decode("ascii")
        except UnicodeDecodeError:
            raise CryptoError("vault: wrapped value is not a Vault transit ciphertext ('vault:v<N>:...')") \
                from None
        data = self._call("decrypt", name, deadline, lambda: self._client.secrets.transit.decrypt_data(
            name, ciphertext, mount_point=self._cfg.mount_path))
        try:
            return base64.b64decode(data["data"]["plaintext"], validate=True)
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise Unavailable("vault: decrypt returned a malformed response") from None

    def public_key(self, key_id: str, timeout: float | None = None) -> str:
        name = self._key_name(key_id)
        info = self._read_key(name, Deadline(timeout))
        key_type = info.get("type", "")
        if not key_type.startswith(_ASYMMETRIC_PREFIXES):
            raise InvalidArgument(f"vault: transit key '{name}' is {key_type or 'of unknown type'} and has no "
                                  "public key (use an rsa-2048/3072/4096 or ecdsa key)")
        try:
            version = str(info["latest_version"])
            pem = info["keys"][version]["public_key"]
            public = serialization.load_pem_public_key(pem.encode())
        except (KeyError, TypeError, ValueError, AttributeError):
            raise Unavailable(f"vault: transit key '{name}' has no readable public key") from None
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def probe(self, timeout: float | None = None) -> None:
        """Credentials work and the default key is usable: a round trip, or a public-key fetch."""
        name = self._cfg.key_name
        deadline = Deadline(timeout)
        key_type = self._key_type(name, deadline, refresh=True)
        if key_type.startswith("rsa-"):
            self.public_key("", deadline.left("vault"))
            return
        sample = b"km-vault-probe"
        if self.unwrap("", self.wrap("", sample, deadline.left("vault")), deadline.left("vault")) != sample:
            raise CryptoError(f"vault: probe round trip through transit key '{name}' returned other bytes")

    def close(self) -> None:
        self._client.adapter.close()

    # ---- helpers -------------------------------------------------------------
    def _key_name(self, key_id: str) -> str:
        if not isinstance(key_id, str):
            raise InvalidArgument("vault: key id must be a string")
        if key_id == "":
            return self._cfg.key_name
        if not KEY_NAME_RE.match(key_id):
            raise InvalidArgument("vault: key id must be a transit key name (letters, digits, '_', '-', '.', '@')")
        return key_id

    def _read_key(self, name: str, deadline: Deadline) -> dict:
        data = self._call("read key", name, deadline, lambda: self._client.secrets.transit.read_key(
            name, mount_point=self._cfg.mount_path))
        info = data.get("data") if isinstance(data, dict) else None
        if not isinstance(info, dict):
            raise Unavailable(f"vault: reading transit key '{name}' returned a malformed response")
        self._key_types[name] = str(info.get("type", ""))
        return info

    def _key_type(self, name: str, deadline: Deadline, refresh: bool = False) -> str:
        """The key's type; reading it first also keeps encrypt from silently creating a missing key."""
        key_type = None if refresh else self._key_types.get(name)
        if key_type is None:
            info = self._read_key(name, deadline)
            key_type = str(info.get("type", ""))
            if not info.get("supports_encryption", False):
                raise InvalidArgument(f"vault: transit key '{name}' ({key_type}) does not support encryption")
        return key_type

    def _login(self) -> None:
        with self._login_lock:
            if self._logged_in:
                return
            try:
                self._client.auth.approle.login(role_id=self._cfg.role_id, secret_id=self._cfg.secret_id)
            except (hvac.exceptions.InvalidRequest, hvac.exceptions.Forbidden,
                    hvac.exceptions.Unauthorized, hvac.exceptions.InvalidPath):
                raise PermissionDenied("vault: AppRole login refused (check role_id/secret_id)") from None
            self._logged_in = True

    def _call(self, what: str, name: str, deadline: Deadline, request):
        """Run one Vault request with deadline-bounded retries; map failures to ManagerError."""
        attempt = 0
        relogged = False
        while True:
            attempt += 1
            left = deadline.left("vault")
            token = _request_timeout.set(self._cfg.timeout if left is None else min(self._cfg.timeout, left))
            try:
                if not self._logged_in:
                    self._login()
                return request()
            except hvac.exceptions.Forbidden:
                if self._cfg.uses_approle and not relogged:
                    # An AppRole token may have expired: log in again once.
                    relogged = True
                    with self._login_lock:
                        self._logged_in = False
                    continue
                raise PermissionDenied(f"vault: permission denied for {what} on transit key '{name}' in mount "
                                       f"'{self._cfg.mount_path}' (check the token's policy)") from None
            except ManagerError:
                raise
            except Exception as exc:  # noqa: BLE001 - every SDK/transport failure is classified here
                error = self._classify(exc, what, name, deadline)
                if not isinstance(error, _Retryable):
                    raise error from None
                if attempt >= MAX_ATTEMPTS:
                    raise error.error from None
                pause = _BACKOFF_S * (2 ** (attempt - 1))
                left = deadline.left("vault")
                if left is not None and left <= pause:
                    raise DeadlineExceeded(f"vault: {what} on transit key '{name}' ran out of time after "
                                           f"{attempt} attempt(s): {error.error}") from None
                log(WARN, f"{error.error}; retrying ({attempt + 1}/{MAX_ATTEMPTS})")
                time.sleep(pause)
            finally:
                _request_timeout.reset(token)

    def _classify(self, exc: Exception, what: str, name: str, deadline: Deadline):
        where = f"{what} on transit key '{name}'"
        if isinstance(exc, hvac.exceptions.VaultError):
            text = self._scrub("; ".join(str(e) for e in (exc.errors or [])) or exc.__class__.__name__)
            if isinstance(exc, hvac.exceptions.Unauthorized):
                return PermissionDenied(f"vault: {where}: unauthorized ({text})")
            if isinstance(exc, hvac.exceptions.InvalidPath):
                self._key_types.pop(name, None)
                return NotFound(f"vault: transit key '{name}' not found in mount '{self._cfg.mount_path}'")
            if isinstance(exc, hvac.exceptions.InvalidRequest):
                lowered = text.lower()
                if "key not found" in lowered:
                    self._key_types.pop(name, None)
                    return NotFound(f"vault: transit key '{name}' not found in mount '{self._cfg.mount_path}'")
                if what == "decrypt" and ("ciphertext" in lowered or "cipher:" in lowered
                                          or "decrypt" in lowered):
                    return CryptoError(f"vault: {where} failed: {text}")
                return InvalidArgument(f"vault: {where} rejected: {text}")
            if isinstance(exc, (hvac.exceptions.RateLimitExceeded, hvac.exceptions.InternalServerError,
                                hvac.exceptions.BadGateway, hvac.exceptions.VaultDown,
                                hvac.exceptions.VaultNotInitialized, hvac.exceptions.UnexpectedError)):
                return _Retryable(Unavailable(f"vault: {where}: Vault unavailable ({text})"))
            return Unavailable(f"vault: {where}: {text}")
        if isinstance(exc, requests.exceptions.SSLError):
            return Unavailable(f"vault: {where}: TLS verification of {self._cfg.vault_addr} failed "
                               "(set 'ca_cert' to the PEM bundle that signs Vault's certificate)")
        if isinstance(exc, requests.exceptions.Timeout):
            if deadline.expired():
                return DeadlineExceeded(f"vault: {where}: no answer from Vault before the deadline")
            return _Retryable(Unavailable(f"vault: {where}: Vault did not answer in time"))
        if isinstance(exc, requests.exceptions.ConnectionError):
            return _Retryable(Unavailable(f"vault: {where}: cannot connect to {self._cfg.vault_addr}"))
        if isinstance(exc, (KeyError, TypeError, ValueError)):
            return Unavailable(f"vault: {where}: malformed response from Vault")
        return Unavailable(f"vault: {where}: {exc.__class__.__name__}")

    def _scrub(self, text: str) -> str:
        for secret in self._cfg.secrets():
            text = text.replace(secret, "***")
        return text[:300]
