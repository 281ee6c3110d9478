"""aws-kms: a key manager on AWS KMS (boto3), built into a C-ABI plugin by _pyembed.

Config (the provider config's config_json, as in the seed document):

    region             AWS region (or taken from a kms_key_id ARN / the profile)
    access_key_id      static credentials; with secret_access_key, or neither
    secret_access_key
    session_token      optional, with static credentials
    profile            optional shared-config profile
    kms_key_id         default key (id, ARN or alias) when a call's key_id is ""
    endpoint           optional endpoint URL (e.g. a VPC endpoint, or moto in tests)

Without static credentials boto3's default chain applies (env, profile, IMDS...).

Operations: wrap/unwrap with symmetric keys (Encrypt/Decrypt), public_key of
RSA keys (GetPublicKey, DER -> PEM), unwrap with RSA keys (remote mode:
Decrypt with RSAES_OAEP_SHA_1, the padding TDF clients use). Which one is
decided by DescribeKey's KeySpec, cached per key id.

Errors: SDK errors map to km_pyembed kinds by error code; messages carry the
operation, the key id and the AWS error code, never AWS's message text
(which can echo principals), credentials or data. A disabled or pending-
deletion key (DisabledException, KMSInvalidStateException) is reported as
Unavailable: the request is fine, the key's state must change first.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from urllib.parse import urlsplit

import boto3
import botocore.exceptions
from botocore.config import Config
from cryptography.hazmat.primitives import serialization

import km_pyembed
from km_pyembed import (CryptoError, Deadline, DeadlineExceeded, Internal, InvalidArgument, NotFound,
                        PermissionDenied, Unavailable, Unimplemented)

CONFIG_KEYS = {"region", "access_key_id", "secret_access_key", "session_token", "profile",
               "kms_key_id", "endpoint"}
RSA_OAEP = "RSAES_OAEP_SHA_1"
ARN_REGION = re.compile(r"^arn:aws[\w-]*:kms:([a-z0-9-]+):")
MAX_KEY_ID = 2048
# KMS limits: Encrypt takes 1..4096 bytes, Decrypt 1..6144 bytes of ciphertext.
MAX_PLAINTEXT = 4096
MAX_CIPHERTEXT = 6144

# Per-attempt timeouts are picked from these buckets (seconds) so that a
# handful of cached clients serve every deadline.
TIMEOUT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 3
# Below this much time left, retries (and their backoff sleeps) cannot fit.
RETRY_MIN_SECONDS = 10.0

PERMISSION_CODES = {
    "AccessDenied", "AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
    "SignatureDoesNotMatch", "InvalidClientTokenId", "ExpiredToken", "ExpiredTokenException",
    "IncompleteSignature", "MissingAuthenticationToken", "AuthFailure", "InvalidAccessKeyId",
}
NOT_FOUND_CODES = {"NotFoundException"}
CRYPTO_CODES = {"InvalidCiphertextException", "IncorrectKeyException"}
STATE_CODES = {"DisabledException", "KMSInvalidStateException", "KeyUnavailableException"}
UNAVAILABLE_CODES = {"ThrottlingException", "LimitExceededException", "KMSInternalException",
                     "DependencyTimeoutException", "ServiceUnavailable", "InternalFailure",
                     "RequestTimeout", "RequestTimeoutException"}
INVALID_CODES = {"ValidationException", "InvalidKeyUsageException", "InvalidArnException",
                 "InvalidGrantTokenException", "InvalidParameterValue", "InvalidParameterCombination",
                 "UnsupportedOperationException", "DryRunOperationException"}


def _quiet_sdk_debug_logs() -> None:
    """botocore's DEBUG records carry request headers and bodies (session
    tokens, base64 plaintext). In the Python host the plugin shares the
    host's logging, so a root logger at DEBUG would leak them: pin the SDK's
    loggers at INFO or above."""
    for name in ("botocore", "boto3"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET or logger.level < logging.INFO:
            logger.setLevel(logging.INFO)


_quiet_sdk_debug_logs()


def _optional_str(config: dict, key: str) -> str | None:
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"aws-kms config: '{key}' must be a string")
    return value or None


class AwsKmsManager:
    def __init__(self, config: dict):
        unknown = sorted(set(config) - CONFIG_KEYS)
        if unknown:
            raise InvalidArgument(f"aws-kms config: unknown keys {unknown}")
        values = {key: _optional_str(config, key) for key in CONFIG_KEYS}
        access_key, secret_key = values["access_key_id"], values["secret_access_key"]
        if bool(access_key) != bool(secret_key):
            raise InvalidArgument("aws-kms config: access_key_id and secret_access_key go together")
        if values["session_token"] and not access_key:
            raise InvalidArgument("aws-kms config: session_token needs access_key_id and secret_access_key")
        self._default_key = values["kms_key_id"]
        if self._default_key is not None:
            self._check_key_id(self._default_key)
        self._endpoint = values["endpoint"]
        if self._endpoint is not None:
            parts = urlsplit(self._endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise InvalidArgument("aws-kms config: endpoint must be an http(s) URL")
            if parts.username or parts.password:
                raise InvalidArgument("aws-kms config: endpoint must not contain credentials")
        region = values["region"]
        if region is None and self._default_key:
            match = ARN_REGION.match(self._default_key)
            region = match.group(1) if match else None
        try:
            # Credentials live only inside the boto3 session, never on self.
            self._session = boto3.session.Session(
                aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                aws_session_token=values["session_token"], region_name=region,
                profile_name=values["profile"])
        except botocore.exceptions.ProfileNotFound:
            raise InvalidArgument(f"aws-kms config: AWS profile {values['profile']!r} not found") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise InvalidArgument(f"aws-kms config: {type(exc).__name__}") from None
        self._region = self._session.region_name
        if not self._region:
            raise InvalidArgument("aws-kms config: 'region' is required (or a kms_key_id ARN / profile region)")
        if not re.fullmatch(r"[a-z0-9-]{1,64}", self._region):
            raise InvalidArgument("aws-kms config: 'region' is not a valid AWS region name")
        self._credential_source = ("static" if access_key else
                                   f"profile {values['profile']}" if values["profile"] else "default chain")
        self._lock = threading.Lock()
        self._clients: dict[tuple[float, float, int], object] = {}
        self._key_specs: dict[str, str] = {}
        self._client(None)  # builds the default client now: a bad endpoint fails at create
        km_pyembed.log(km_pyembed.INFO,
                       f"aws-kms manager: region {self._region}, endpoint {self._endpoint or 'default'}, "
                       f"credentials {self._credential_source}")

    def __repr__(self) -> str:
        return f"AwsKmsManager(region={self._region!r}, kms_key_id={self._default_key!r})"

    # ---- clients and deadlines ----------------------------------------------
    def _client(self, deadline: Deadline | None):
        """(client, deadline_bound): a KMS client whose timeouts and retries fit
        the time left; deadline_bound says the deadline shortened them."""
        remaining = deadline.remaining() if deadline is not None else None
        default = (DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT, MAX_ATTEMPTS)
        if remaining is None:
            shape = default
        else:
            if remaining <= 0:
                raise DeadlineExceeded("aws-kms: deadline exceeded before calling KMS")
            attempts = MAX_ATTEMPTS if remaining >= RETRY_MIN_SECONDS else 1
            # leave room for the retry backoff sleeps when retrying
            per_attempt = (remaining - 6.0) / attempts if attempts > 1 else remaining
            fitting = [b for b in TIMEOUT_BUCKETS if b <= per_attempt]
            timeout = fitting[-1] if fitting else TIMEOUT_BUCKETS[0]
            shape = (min(timeout, DEFAULT_CONNECT_TIMEOUT), min(timeout, DEFAULT_READ_TIMEOUT), attempts)
        with self._lock:  # boto3 sessions are not thread-safe; their clients are
            client = self._clients.get(shape)
            if client is None:
                connect, read, attempts = shape
                config = Config(connect_timeout=connect, read_timeout=read,
                                retries={"mode": "standard", "max_attempts": attempts},
                                user_agent_extra="kas-keymanager-aws-kms")
                try:
                    client = self._session.client("kms", endpoint_url=self._endpoint, config=config)
                except (ValueError, botocore.exceptions.BotoCoreError) as exc:
                    raise InvalidArgument(f"aws-kms config: cannot build a KMS client ({type(exc).__name__})") from None
                self._clients[shape] = client
        return client, shape != default

    def _call(self, operation: str, deadline: Deadline, key_id: str, **params):
        """One KMS API call with errors mapped to km_pyembed kinds."""
        client, deadline_bound = self._client(deadline)
        try:
            return getattr(client, operation)(**params)
        except botocore.exceptions.ClientError as exc:
            raise self._map_client_error(exc, operation, key_id) from None
        except (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.HTTPClientError) as exc:
            timed_out = isinstance(exc, (botocore.exceptions.ConnectTimeoutError,
                                         botocore.exceptions.ReadTimeoutError))
            # A timeout cut short by the call's deadline is the deadline's doing.
            if deadline.expired() or (timed_out and deadline_bound):
                raise DeadlineExceeded(f"aws-kms: {operation} did not finish before the deadline") from None
            raise Unavailable(f"aws-kms: KMS endpoint unreachable or timed out during {operation} "
                              f"({type(exc).__name__})") from None
        except botocore.exceptions.NoCredentialsError:
            raise PermissionDenied("aws-kms: no AWS credentials found (config or default chain)") from None
        except botocore.exceptions.PartialCredentialsError:
            raise InvalidArgument("aws-kms: incomplete AWS credentials in the default chain") from None
        except botocore.exceptions.ParamValidationError:
            raise InvalidArgument(f"aws-kms: invalid parameters for {operation}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise Unavailable(f"aws-kms: {operation} failed ({type(exc).__name__})") from None

    def _map_client_error(self, exc: botocore.exceptions.ClientError, operation: str, key_id: str):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
        where = f"{operation} on key {key_id!r}" if key_id else operation
        km_pyembed.log(km_pyembed.DEBUG, f"aws-kms: {where} failed with {code} (HTTP {status})")
        if code in PERMISSION_CODES or status in (401, 403):  # any 401/403 is an auth refusal
            return PermissionDenied(f"aws-kms: KMS refused {where}: {code}")
        if code in NOT_FOUND_CODES:
            return NotFound(f"aws-kms: KMS key {key_id!r} not found")
        if code in CRYPTO_CODES:
            return CryptoError(f"aws-kms: KMS could not decrypt with key {key_id!r}: {code}")
        if code in STATE_CODES:
            return Unavailable(f"aws-kms: KMS key {key_id!r} is disabled or not usable now: {code}")
        if code in UNAVAILABLE_CODES or status >= 500:
            return Unavailable(f"aws-kms: KMS unavailable for {where}: {code}")
        if code in INVALID_CODES:
            return InvalidArgument(f"aws-kms: KMS rejected {where}: {code}")
        if code == "UnsupportedOperation":
            return Unimplemented(f"aws-kms: KMS does not support {where}")
        return Internal(f"aws-kms: unexpected KMS error for {where}: {code}")

    # ---- keys -----------------------------------------------------------------
    @staticmethod
    def _check_key_id(key_id: str) -> None:
        if len(key_id) > MAX_KEY_ID or any(ord(c) < 0x20 for c in key_id):
            raise InvalidArgument("aws-kms: key id is too long or contains control characters")

    def _key(self, key_id: str) -> str:
        key = key_id or self._default_key
        if not key:
            raise InvalidArgument("aws-kms: no key id given and the config has no kms_key_id")
        self._check_key_id(key)
        return key

    def _key_spec(self, key: str, deadline: Deadline, refresh: bool = False) -> str:
        with self._lock:
            spec = None if refresh else self._key_specs.get(key)
        if spec is None:
            meta = self._call("describe_key", deadline, key, KeyId=key)["KeyMetadata"]
            spec = meta.get("KeySpec") or meta.get("CustomerMasterKeySpec") or "SYMMETRIC_DEFAULT"
            if meta.get("KeyState") not in (None, "Enabled"):
                raise Unavailable(f"aws-kms: KMS key {key!r} is {meta.get('KeyState')}")
            with self._lock:
                self._key_specs[key] = spec
        return spec

    # ---- the manager protocol -------------------------------------------------
    def wrap(self, key_id: str, plain: bytes, timeout: float | None) -> bytes:
        deadline = Deadline(timeout)
        key = self._key(key_id)
        if not 1 <= len(plain) <= MAX_PLAINTEXT:
            raise InvalidArgument(f"aws-kms: KMS encrypts 1..{MAX_PLAINTEXT} bytes, got {len(plain)}")
        spec = self._key_spec(key, deadline)
        params = {"KeyId": key, "Plaintext": plain}
        if spec.startswith("RSA_"):
            params["EncryptionAlgorithm"] = RSA_OAEP
        elif spec != "SYMMETRIC_DEFAULT":
            raise InvalidArgument(f"aws-kms: key {key!r} ({spec}) cannot encrypt")
        return self._call("encrypt", deadline, key, **params)["CiphertextBlob"]

    def unwrap(self, key_id: str, wrapped: bytes, timeout: float | None) -> bytes:
        deadline = Deadline(timeout)
        key = self._key(key_id)
        if not 1 <= len(wrapped) <= MAX_CIPHERTEXT:
            raise CryptoError(f"aws-kms: ciphertext must be 1..{MAX_CIPHERTEXT} bytes, got {len(wrapped)}")
        spec = self._key_spec(key, deadline)
        params = {"KeyId": key, "CiphertextBlob": wrapped}
        if spec.startswith("RSA_"):
            # remote mode: a DEK that a TDF client wrapped to this key's public key
            params["EncryptionAlgorithm"] = RSA_OAEP
        elif spec != "SYMMETRIC_DEFAULT":
            raise InvalidArgument(f"aws-kms: key {key!r} ({spec}) cannot decrypt")
        return self._call("decrypt", deadline, key, **params)["Plaintext"]

    def public_key(self, key_id: str, timeout: float | None) -> str:
        deadline = Deadline(timeout)
        key = self._key(key_id)
        spec = self._key_spec(key, deadline)
        if not spec.startswith("RSA_"):
            raise InvalidArgument(f"aws-kms: key {key!r} is {spec}; only RSA keys have a public key here")
        der = self._call("get_public_key", deadline, key, KeyId=key)["PublicKey"]
        try:
            public = serialization.load_der_public_key(der)
        except ValueError:
            raise Internal(f"aws-kms: KMS returned an unreadable public key for {key!r}") from None
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")

    def probe(self, timeout: float | None) -> None:
        """Credentials work and the default key is usable (a real round trip)."""
        deadline = Deadline(timeout)
        if not self._default_key:
            self._call("list_keys", deadline, "", Limit=1)
            return
        key = self._default_key
        spec = self._key_spec(key, deadline, refresh=True)
        if spec == "SYMMETRIC_DEFAULT":
            sample = os.urandom(32)
            blob = self._call("encrypt", deadline, key, KeyId=key, Plaintext=sample)["CiphertextBlob"]
            back = self._call("decrypt", deadline, key, KeyId=key, CiphertextBlob=blob)["Plaintext"]
            if back != sample:
                raise CryptoError(f"aws-kms: probe round trip with key {key!r} returned different bytes")
        elif spec.startswith("RSA_"):
            self.public_key(key, deadline.remaining())
        else:
            raise InvalidArgument(f"aws-kms: default key {key!r} ({spec}) can neither encrypt nor decrypt")

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
