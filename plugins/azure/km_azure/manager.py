"""The `azure` key manager: Azure Key Vault RSA keys through azure-keyvault-keys.

- wrap (provider mode): the plaintext (e.g. a KAS private key, too long for
  one RSA block) is sealed as a JWE compact serialization (RFC 7516):
  a fresh AES-256-GCM content key encrypts it, and Key Vault's wrapKey
  (RSA-OAEP) wraps that content key. The JWE header's `kid` names the exact
  key version, so data wrapped before a key rotation still unwraps after it.
- unwrap: a JWE from wrap -> unwrapKey + AES-GCM; anything else is a DEK a
  TDF client encrypted to the key's public key (remote mode) -> Key Vault
  decrypt with RSA-OAEP (SHA-1, the padding TDF clients use).
- public_key: the key's JWK (n, e; or crv, x, y) as a PEM SubjectPublicKeyInfo.

key_id: "" (the config's key_name, latest version), "name", or
"name/version" (pin a version: remote keys should, since clients encrypt
to the public key the KAS published). Credentials, the challenge-based
auth flow and retries are the SDK's; each call passes its deadline to the
SDK as the operation timeout.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
import time

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceNotFoundError,
                                   ServiceRequestError, ServiceRequestTimeoutError, ServiceResponseError,
                                   ServiceResponseTimeoutError)
from azure.identity import ClientSecretCredential, CredentialUnavailableError, DefaultAzureCredential
from azure.keyvault.keys import KeyClient, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, EncryptionAlgorithm, KeyWrapAlgorithm
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from km_pyembed import (DEBUG, CryptoError, Deadline, DeadlineExceeded, InvalidArgument, ManagerError, NotFound,
                        PermissionDenied, Unavailable, log)

from .config import KEY_NAME_RE, KEY_VERSION_RE, AzureConfig, parse_config


# azure-identity logs every failed token request as a WARNING through the
# host's Python logging (outside the plugin's log channel): in a CLI that is a
# stray second stderr line next to the one error the manager reports itself
# (permission_denied). Keep the SDK's credential chatter to real errors.
_identity_log = logging.getLogger("azure.identity")
if _identity_log.level < logging.ERROR:
    _identity_log.setLevel(logging.ERROR)

_JWE_ALG, _JWE_ENC = "RSA-OAEP", "A256GCM"
_CURVES = {"P-256": ec.SECP256R1, "P-384": ec.SECP384R1, "P-521": ec.SECP521R1}
_CLIENT_CACHE_MAX = 128
_AADSTS_RE = re.compile(r"AADSTS\d+")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AzureKeyVaultManager:
    """One provider configuration's view of an Azure Key Vault."""

    def __init__(self, config: dict | bytes | str):
        self._cfg: AzureConfig = parse_config(config)
        transport = {
            "connection_verify": self._cfg.ca_cert or True,
            "connection_timeout": self._cfg.timeout,
            "read_timeout": self._cfg.timeout,
            "retry_total": 3,
            "retry_backoff_factor": 0.2,
            "retry_backoff_max": 2,
        }
        identity = dict(transport)
        if self._cfg.authority_host:
            identity["authority"] = self._cfg.authority_host
        if self._cfg.disable_instance_discovery:
            identity["disable_instance_discovery"] = True
        if self._cfg.client_secret:
            self._credential = ClientSecretCredential(self._cfg.tenant_id, self._cfg.client_id,
                                                      self._cfg.client_secret, **identity)
        else:
            if self._cfg.client_id:
                identity["managed_identity_client_id"] = self._cfg.client_id
            self._credential = DefaultAzureCredential(**identity)
        self._client_kwargs = dict(transport, verify_challenge_resource=self._cfg.verify_challenge_resource)
        self._keys = KeyClient(self._cfg.vault_url, self._credential, **self._client_kwargs)
        self._crypto: dict[str, CryptographyClient] = {}  # versioned key id -> client
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never show the secret
        return f"AzureKeyVaultManager(vault_url={self._cfg.vault_url!r}, key={self._cfg.key_name!r})"

    # ---- the manager protocol ---------------------------------------------
    def wrap(self, key_id: str, plain: bytes, timeout: float | None = None) -> bytes:
        name, version = self._key_ref(key_id)
        deadline = Deadline(timeout)
        key = self._get_key(name, version, deadline)
        header = _b64url(json.dumps({"alg": _JWE_ALG, "enc": _JWE_ENC, "kid": key.id},
                                    separators=(",", ":")).encode())
        cek, iv = AESGCM.generate_key(256), os.urandom(12)
        sealed = AESGCM(cek).encrypt(iv, bytes(plain), header.encode("ascii"))
        client = self._crypto_client(key.id, key)
        wrapped = self._call("wrapKey", name, deadline,
                             lambda kw: client.wrap_key(KeyWrapAlgorithm.rsa_oaep, cek, **kw)).encrypted_key
        log(DEBUG, f"wrapped {len(plain)} bytes under key {name} version {key.properties.version}")
        return ".".join([header, _b64url(wrapped), _b64url(iv), _b64url(sealed[:-16]), _b64url(sealed[-16:])]
                        ).encode("ascii")

    def unwrap(self, key_id: str, wrapped: bytes, timeout: float | None = None) -> bytes:
        name, version = self._key_ref(key_id)
        deadline = Deadline(timeout)
        wrapped = bytes(wrapped)
        jwe = _parse_jwe(wrapped)
        if jwe is None:
            return self._remote_decrypt(name, version, wrapped, deadline)
        header_b64, kid, encrypted_key, iv, ciphertext, tag = jwe
        kid_name, kid_version = _kid_parts(kid)
        if kid_name != name or (version and kid_version != version):
            self._get_key(name, version, deadline)  # NotFound when the named key does not exist
            raise CryptoError(f"azure: wrapped value was made with key '{kid_name}', not '{key_id or name}'")
        client = self._crypto_client(self._versioned_id(kid_name, kid_version))
        cek = self._call("unwrapKey", name, deadline,
                         lambda kw: client.unwrap_key(KeyWrapAlgorithm.rsa_oaep, encrypted_key, **kw)).key
        try:
            return AESGCM(cek).decrypt(iv, ciphertext + tag, header_b64.encode("ascii"))
        except (InvalidTag, ValueError):
            raise CryptoError("azure: wrapped value failed authentication (tampered or wrong key)") from None

    def public_key(self, key_id: str, timeout: float | None = None) -> str:
        name, version = self._key_ref(key_id)
        key = self._get_key(name, version, Deadline(timeout))
        return _jwk_to_pem(name, key)

    def probe(self, timeout: float | None = None) -> None:
        """Credentials work and the default key can wrap and unwrap."""
        deadline = Deadline(timeout)
        sample = os.urandom(16)
        if self.unwrap("", self.wrap("", sample, deadline.left("azure")), deadline.left("azure")) != sample:
            raise CryptoError(f"azure: probe round trip through key '{self._cfg.key_name}' returned other bytes")

    def close(self) -> None:
        with self._lock:
            clients, self._crypto = list(self._crypto.values()), {}
        for client in clients:
            client.close()
        self._keys.close()
        self._credential.close()

    # ---- helpers -------------------------------------------------------------
    def _key_ref(self, key_id: str) -> tuple[str, str]:
        if not isinstance(key_id, str):
            raise InvalidArgument("azure: key id must be a string")
        if key_id == "":
            return self._cfg.key_name, ""
        name, _, version = key_id.partition("/")
        if not KEY_NAME_RE.match(name) or (version and not KEY_VERSION_RE.match(version)) \
                or (key_id.endswith("/") and not version):
            raise InvalidArgument("azure: key id must be a Key Vault key name, optionally '/version'")
        return name, version

    def _versioned_id(self, name: str, version: str) -> str:
        return f"{self._cfg.vault_url}keys/{name}/{version}"

    def _get_key(self, name: str, version: str, deadline: Deadline) -> KeyVaultKey:
        key = self._call("get key", name, deadline, lambda kw: self._keys.get_key(name, version or None, **kw))
        kty = str(getattr(key.key_type, "value", key.key_type) or "")
        if not kty.startswith(("RSA", "EC")):
            raise InvalidArgument(f"azure: key '{name}' has unsupported key type {kty}")
        return key

    def _crypto_client(self, key_id: str, key: KeyVaultKey | None = None) -> CryptographyClient:
        with self._lock:
            client = self._crypto.get(key_id)
            if client is None:
                if len(self._crypto) >= _CLIENT_CACHE_MAX:
                    for old in self._crypto.values():
                        old.close()
                    self._crypto.clear()
                client = CryptographyClient(key if key is not None else key_id, self._credential,
                                            **self._client_kwargs)
                self._crypto[key_id] = client
            return client

    def _remote_decrypt(self, name: str, version: str, ciphertext: bytes, deadline: Deadline) -> bytes:
        if not version:
            version = self._get_key(name, "", deadline).properties.version
        client = self._crypto_client(self._versioned_id(name, version))
        result = self._call("decrypt", name, deadline,
                            lambda kw: client.decrypt(EncryptionAlgorithm.rsa_oaep, ciphertext, **kw))
        return result.plaintext

    def _call(self, what: str, name: str, deadline: Deadline, request):
        """One SDK operation under the call's deadline; SDK failures become ManagerError."""
        kwargs = {}
        left = deadline.left("azure")
        if left is not None:
            per_request = min(self._cfg.timeout, left)
            kwargs = {"timeout": left, "connection_timeout": per_request, "read_timeout": per_request}
        try:
            return request(kwargs)
        except ManagerError:
            raise
        except Exception as exc:  # noqa: BLE001 - every SDK/transport failure is classified here
            raise self._classify(exc, what, name, deadline) from None

    def _classify(self, exc: Exception, what: str, name: str, deadline: Deadline) -> ManagerError:
        where = f"azure: {what} on key '{name}'"
        if isinstance(exc, CredentialUnavailableError):
            return PermissionDenied(f"{where}: no Azure credential is available (set tenant_id, client_id and "
                                    "client_secret, or configure a managed/workload identity)")
        if isinstance(exc, (ClientAuthenticationError, ServiceRequestError)) \
                and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return Unavailable(f"{where}: TLS verification failed (set 'ca_cert' to the PEM bundle that "
                               "signs the server's certificate)")
        if isinstance(exc, ClientAuthenticationError):
            code = _AADSTS_RE.search(str(exc))
            detail = f" ({code.group(0)})" if code else ""
            return PermissionDenied(f"{where}: authentication failed{detail}; check tenant_id, client_id and "
                                    "client_secret")
        if isinstance(exc, ResourceNotFoundError):
            return NotFound(f"azure: key '{name}' not found in {self._cfg.vault_url}")
        if isinstance(exc, (ServiceRequestTimeoutError, ServiceResponseTimeoutError)):
            if deadline.at is not None and time.monotonic() >= deadline.at - 0.05:
                return DeadlineExceeded(f"{where}: no answer from Key Vault before the deadline")
            return Unavailable(f"{where}: Key Vault did not answer in time")
        if isinstance(exc, HttpResponseError):
            status = exc.status_code or 0
            error_code = getattr(getattr(exc, "error", None), "code", None) or ""
            text = self._scrub(getattr(getattr(exc, "error", None), "message", None) or exc.reason or "")
            if status == 401:
                return PermissionDenied(f"{where}: unauthorized ({text})")
            if status == 403:
                return PermissionDenied(f"{where}: permission denied ({error_code or 'Forbidden'}); grant the "
                                        f"identity the key permission for {what}")
            if status == 404:
                return NotFound(f"azure: key '{name}' not found in {self._cfg.vault_url}")
            if status == 400 and what in ("decrypt", "unwrapKey"):
                return CryptoError(f"{where} failed: {text}")
            if status == 429 or status >= 500:
                return Unavailable(f"{where}: Key Vault unavailable (HTTP {status}) after the SDK's retries")
            return InvalidArgument(f"{where} rejected (HTTP {status} {error_code}): {text}")
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return Unavailable(f"{where}: cannot reach {self._cfg.vault_url}")
        if isinstance(exc, ValueError) and "challenge resource" in str(exc):
            return InvalidArgument(f"{where}: Key Vault's challenge names a resource that does not match "
                                   f"{self._cfg.vault_url}; set 'verify_challenge_resource' to false only for "
                                   "vaults reached under another name (private endpoints, emulators)")
        if isinstance(exc, ValueError):
            return InvalidArgument(f"{where}: {self._scrub(str(exc))[:200]}")
        return Unavailable(f"{where}: {exc.__class__.__name__}")

    def _scrub(self, text: str) -> str:
        for secret in self._cfg.secrets():
            text = text.replace(secret, "***")
        return text[:300]


def _parse_jwe(wrapped: bytes):
    """(protected header b64, kid, encrypted key, iv, ciphertext, tag) if `wrapped` is our JWE, else None."""
    if wrapped.count(b".") != 4:
        return None
    try:
        parts = wrapped.decode("ascii").split(".")
        header = json.loads(_unb64url(parts[0]))
        if not isinstance(header, dict) or header.get("alg") != _JWE_ALG or header.get("enc") != _JWE_ENC \
                or not isinstance(header.get("kid"), str):
            return None
        encrypted_key, iv, ciphertext, tag = (_unb64url(p) for p in parts[1:])
    except (UnicodeDecodeError, ValueError, binascii.Error):
        return None
    if len(iv) != 12 or len(tag) != 16:
        raise CryptoError("azure: wrapped value is a malformed JWE")
    return parts[0], header["kid"], encrypted_key, iv, ciphertext, tag


def _kid_parts(kid: str) -> tuple[str, str]:
    """Key name and version from a Key Vault key id https://vault/keys/<name>/<version>."""
    segments = [s for s in kid.split("?")[0].split("/") if s]
    if len(segments) >= 5 and segments[-3] == "keys" and KEY_NAME_RE.match(segments[-2]) \
            and KEY_VERSION_RE.match(segments[-1]):
        return segments[-2], segments[-1]
    raise CryptoError("azure: wrapped value names no Key Vault key version")


def _jwk_to_pem(name: str, key: KeyVaultKey) -> str:
    jwk = key.key
    try:
        if jwk.n and jwk.e:
            public = rsa.RSAPublicNumbers(int.from_bytes(jwk.e, "big"), int.from_bytes(jwk.n, "big")).public_key()
        elif jwk.crv and jwk.x and jwk.y:
            curve = _CURVES[str(getattr(jwk.crv, "value", jwk.crv))]
            public = ec.EllipticCurvePublicNumbers(int.from_bytes(jwk.x, "big"), int.from_bytes(jwk.y, "big"),
                                                   curve()).public_key()
        else:
            raise ValueError("no public components")
    except (KeyError, ValueError, TypeError):
        raise Unavailable(f"azure: key '{name}' returned no usable public key") from None
    return public.public_bytes(serialization.Encoding.PEM,
                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
