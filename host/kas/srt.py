"""The signed request token of a Rewrap call, and the DPoP proof that may bind it.

Which key the token must verify with, in order (as OpenTDF's KAS decides):

1. A `DPoP` header (RFC 9449 proof: `typ` dpop+jwt, RS256/ES256, public `jwk`
   in the header, `htm` POST, `htu` this endpoint, fresh `iat`, unseen `jti`,
   `ath` = hash of the access token) -> the token must verify with that key.
   An access token that is DPoP-bound (`cnf.jkt`) requires the proof, and the
   proof's key must have that thumbprint.
2. No proof, strict mode (`require_signature`, PLATFORM_KAS_REQUIRE_SIGNED_REQUESTS=1)
   -> the token must verify with the request's `clientPublicKey` (clients
   that sign with their session key); anything else is refused.
3. No proof, default mode -> the token is accepted without a signature check:
   exactly what OpenTDF's KAS does without DPoP, and what the otdf-python SDK
   needs (it signs with a key it never discloses). Checking it against the
   `clientPublicKey` the body itself carries would prove nothing the response
   does not already ensure - the rewrapped key is encrypted to that key, and
   whoever alters a body can re-sign it with a key of their own - so the
   default mode does not spend an RSA verify (an eighth of a Rewrap's crypto)
   on it.

Always: the token must parse, name an asymmetric algorithm (never `none` or
HMAC), carry `exp` and not be expired (30 s leeway), live no longer than the
maximum lifetime (PLATFORM_KAS_MAX_TOKEN_LIFETIME seconds, default 7200 - what
otdf-python gives its tokens: exp - iat, or exp - now without iat), and carry
`requestBody` as a JSON object in a string. A token with a `jti` is accepted
once: the id is remembered for the token's lifetime, per process and bounded
(the oldest ids go first when full); another worker or node does not know it. The caller is authenticated separately (bearer
token); this module only decides whether the request body is trustworthy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.parse
from collections import OrderedDict
from typing import NamedTuple

import jwt
import orjson
import pybase64
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from host.errors import InvalidArgument, Unauthenticated

MAX_LIFETIME_ENV = "PLATFORM_KAS_MAX_TOKEN_LIFETIME"
DEFAULT_MAX_LIFETIME_SECONDS = 7200

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DPOP_ALGORITHMS = ("RS256", "PS256", "ES256", "ES384")
LEEWAY_SECONDS = 30
DPOP_MAX_AGE_SECONDS = 300
MAX_TOKEN_BYTES = 256 * 1024
MAX_PROOF_BYTES = 8 * 1024


class VerifiedRequest(NamedTuple):  # immutable and cheap to build: one per Rewrap
    body: dict          # the parsed requestBody
    signer: str         # "dpop" | "client-key" | "unverified"
    client_key: object = None   # body's clientPublicKey when it was parsed here (reused by the caller)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA or EC public JWK."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}.get(jwk.get("kty"))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise Unauthenticated("DPoP proof: jwk must be an RSA or EC public key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


def max_lifetime_from_env(env=None) -> int:
    """PLATFORM_KAS_MAX_TOKEN_LIFETIME (whole seconds, > 0), else the default."""
    raw = (os.environ if env is None else env).get(MAX_LIFETIME_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_LIFETIME_SECONDS
    if not raw.isdigit() or int(raw) <= 0:
        raise InvalidArgument(f"{MAX_LIFETIME_ENV} must be a whole number of seconds above 0, got {raw[:40]!r}")
    return int(raw)


class _SeenJti:
    """Bounded memory of recent token ids (replay protection within one process): an id is
    kept `retention_seconds` after it was first seen, or until `limit` newer ones push it out."""

    def __init__(self, limit: int = 50_000, retention_seconds: float = 2 * DPOP_MAX_AGE_SECONDS):
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._limit = limit
        self._retention = retention_seconds
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def add(self, jti: str, now: float) -> bool:
        """False when `jti` was seen within the retention."""
        with self._lock:
            while self._seen and (len(self._seen) >= self._limit
                                  or next(iter(self._seen.values())) < now - self._retention):
                self._seen.popitem(last=False)
            if jti in self._seen:
                return False
            self._seen[jti] = now
            return True


class SrtVerifier:
    def __init__(self, require_signature: bool = False, max_lifetime: int | None = None):
        self.require_signature = require_signature
        self.max_lifetime = max_lifetime_from_env() if max_lifetime is None else max_lifetime
        self._jti = _SeenJti()
        # a request token is refused once expired, at most max_lifetime (+ leeway) after it was seen
        self._request_jti = _SeenJti(retention_seconds=self.max_lifetime + 2 * LEEWAY_SECONDS)

    # ---- DPoP ------------------------------------------------------------------
    def dpop_key(self, proof: str | None, *, access_token: str | None, path: str, host: str | None,
                 bound_jkt: str | None):
        """The public key a valid DPoP proof carries, or None when there is no proof."""
        if not proof:
            if bound_jkt:
                raise Unauthenticated("the access token is DPoP-bound: a DPoP proof is required")
            return None
        if len(proof) > MAX_PROOF_BYTES or proof.count(".") != 2:
            raise Unauthenticated("DPoP proof is not a JWT")
        try:
            header = jwt.get_unverified_header(proof)
        except jwt.PyJWTError:
            raise Unauthenticated("DPoP proof is not a JWT") from None
        if header.get("typ") != "dpop+jwt" or header.get("alg") not in DPOP_ALGORITHMS:
            raise Unauthenticated("DPoP proof must have typ dpop+jwt and an RS256/PS256/ES256/ES384 signature")
        jwk = header.get("jwk")
        if not isinstance(jwk, dict) or "d" in jwk or "p" in jwk:
            raise Unauthenticated("DPoP proof must carry a public jwk in its header")
        thumbprint = jwk_thumbprint(jwk)
        if bound_jkt and not hmac.compare_digest(thumbprint, bound_jkt):
            raise Unauthenticated("DPoP proof key does not match the key the access token is bound to")
        try:
            key = jwt.PyJWK(jwk, algorithm=header["alg"]).key
            claims = jwt.decode(proof, key, algorithms=[header["alg"]], leeway=LEEWAY_SECONDS,
                                options={"require": ["iat", "jti", "htm", "htu"], "verify_aud": False})
        except (jwt.PyJWTError, TypeError, ValueError):
            raise Unauthenticated("DPoP proof signature or claims do not verify") from None
        now = time.time()
        iat = claims["iat"]
        if not isinstance(iat, (int, float)) or abs(now - iat) > DPOP_MAX_AGE_SECONDS:
            raise Unauthenticated("DPoP proof is stale (iat too far from now)")
        if claims["htm"] != "POST":
            raise Unauthenticated("DPoP proof htm must be POST")
        htu = urllib.parse.urlsplit(str(claims["htu"]))
        if htu.path != path or (host and htu.netloc.lower() != host.lower()):
            raise Unauthenticated("DPoP proof htu does not name this endpoint")
        if access_token is not None:
            expected = b64url(hashlib.sha256(access_token.encode()).digest())
            if not isinstance(claims.get("ath"), str) or not hmac.compare_digest(claims["ath"], expected):
                raise Unauthenticated("DPoP proof ath does not match the access token")
        if not isinstance(claims["jti"], str) or not claims["jti"] or not self._jti.add(claims["jti"], now):
            raise Unauthenticated("DPoP proof was already used (jti replay)")
        return key

    # ---- the signed request token ---------------------------------------------
    def verify(self, token: str, dpop_key=None) -> VerifiedRequest:
        if not token:
            raise InvalidArgument("signed_request_token is required")
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise InvalidArgument("signed_request_token is not a JWT")
        jws = _Jws.parse(token)  # parsed once; every check below reads this
        alg = jws.header.get("alg")
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise Unauthenticated("signed_request_token must be signed with an asymmetric algorithm (RS256, ES256, ...)")

        if jws.detached:
            raise Unauthenticated("signed_request_token could not be parsed or validated")

        if dpop_key is not None:
            signed = jws.signed_by(dpop_key, alg)
            if signed is None:
                raise Unauthenticated("signed_request_token could not be parsed or validated")
            if not signed:
                raise Unauthenticated("signed_request_token signature does not verify with the DPoP key")
            claims = _claims(jws, self.max_lifetime)
            if not _registered_claims_valid(claims):
                raise Unauthenticated("signed_request_token could not be parsed or validated")
            body = _request_body(claims)
            self._first_use(claims)
            return VerifiedRequest(body, "dpop")

        claims = _claims(jws, self.max_lifetime)
        body = _request_body(claims)
        client_key = _client_key(body.get("clientPublicKey"))
        if not self.require_signature:
            self._first_use(claims)
            return VerifiedRequest(body, "unverified", client_key)  # why no check: module docstring, 3.
        if client_key is not None and jws.signed_by(client_key, alg) and _registered_claims_valid(claims):
            self._first_use(claims)
            return VerifiedRequest(body, "client-key", client_key)
        raise Unauthenticated("signed_request_token does not verify with a DPoP key or the client public key")

    def _first_use(self, claims: dict) -> None:
        """Refuse a token whose jti was seen (last check: only otherwise acceptable tokens count)."""
        jti = claims.get("jti")
        if jti is None:
            return
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise Unauthenticated("signed_request_token could not be parsed or validated")
        if not self._request_jti.add(jti, time.time()):
            raise Unauthenticated("signed_request_token was already used (jti replay)")


# ---- JWS compact serialization -------------------------------------------------
# The request token is parsed here rather than by PyJWT's decode: PyJWT checks
# each base64url character in a Python generator and the caller needed up to
# three decodes of a ~3 KB token per Rewrap (~0.3 ms). The checks are the same
# ones PyJWT 2.15 makes - segment alphabet, padding and canonical encoding,
# header a JSON object with a string `kid` and only supported `crit`, b64=false
# refused, claims exp/iat/nbf (+ aud/sub/jti once a signature was checked) - and
# the signature itself is checked by PyJWT's algorithm objects.
_B64URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64URL_VALUE = {c: i for i, c in enumerate(_B64URL)}
_ALGORITHMS = {name: jwt.get_algorithm_by_name(name) for name in ASYMMETRIC_ALGORITHMS}


def _segment(segment: bytes) -> bytes:
    stripped = segment.rstrip(b"=")
    padding = len(segment) - len(stripped)
    tail = len(stripped) % 4
    if (padding > 2 or (padding and len(segment) % 4) or tail == 1
            or stripped.translate(None, _B64URL)):  # what is left once every base64url byte is deleted
        raise InvalidArgument("signed_request_token is not a JWT")
    # canonical encoding only: the bits the last character carries beyond the data must be zero
    if tail and _B64URL_VALUE[stripped[-1]] & (0x0F if tail == 2 else 0x03):
        raise InvalidArgument("signed_request_token is not a JWT")
    # pybase64 (SIMD): ~0.7 us for a 1.8 KB payload where binascii takes ~4 us
    return pybase64.b64decode(stripped + b"=" * (-tail % 4), altchars=b"-_", validate=True)


class _Jws(NamedTuple):
    header: dict
    payload: bytes
    signing_input: bytes
    signature: bytes
    detached: bool

    @classmethod
    def parse(cls, token: str) -> "_Jws":
        """Structure only (no claims): failures are invalid_argument "not a JWT"."""
        if not token.isascii():
            raise InvalidArgument("signed_request_token is not a JWT")
        raw = token.encode("ascii")
        signing_input, _, signature = raw.rpartition(b".")
        header_segment, _, payload_segment = signing_input.partition(b".")
        try:
            header = _json(_segment(header_segment))
        except (ValueError, RecursionError):
            raise InvalidArgument("signed_request_token is not a JWT") from None
        if not isinstance(header, dict):
            raise InvalidArgument("signed_request_token is not a JWT")
        detached = header.get("b64", True) is False  # RFC 7797: never a request token (refused in verify)
        if detached and payload_segment:
            raise InvalidArgument("signed_request_token is not a JWT")
        payload = b"" if detached else _segment(payload_segment)
        jws = cls(header, payload, signing_input, _segment(signature), detached)
        if "kid" in header and not isinstance(header["kid"], str):
            raise InvalidArgument("signed_request_token is not a JWT")
        if "crit" in header:
            crit = header["crit"]
            if (not isinstance(crit, list) or not crit
                    or any(not isinstance(e, str) or e != "b64" or e not in header for e in crit)):
                raise InvalidArgument("signed_request_token is not a JWT")
        return jws

    def signed_by(self, key, alg: str) -> bool | None:
        """Whether the signature verifies with `key` under `alg`; None when the key does not fit `alg`."""
        algorithm = _ALGORITHMS[alg]
        try:
            prepared = algorithm.prepare_key(key)
            return algorithm.verify(self.signing_input, prepared, self.signature)
        except (jwt.PyJWTError, TypeError, ValueError):
            return None


def _claims(jws: _Jws, max_lifetime: int) -> dict:
    """The payload, with exp required and exp/iat/nbf checked (30 s leeway), as PyJWT checks them,
    and a lifetime (exp - iat, or exp - now without iat) of at most `max_lifetime` (+ leeway)."""
    try:
        claims = _json(jws.payload)
    except (ValueError, RecursionError):
        claims = None
    if not isinstance(claims, dict):
        raise Unauthenticated("signed_request_token could not be parsed or validated")
    if claims.get("exp") is None:
        raise Unauthenticated("signed_request_token must carry an exp claim")
    now = time.time()
    start = now
    for name in ("iat", "nbf", "exp"):
        if name not in claims:
            continue
        try:
            value = int(claims[name])
        except (ValueError, TypeError, OverflowError):
            raise Unauthenticated("signed_request_token could not be parsed or validated") from None
        if name == "exp":
            if value <= now - LEEWAY_SECONDS:
                raise Unauthenticated("signed_request_token has expired")
            if value - start > max_lifetime + LEEWAY_SECONDS:
                raise Unauthenticated(f"signed_request_token lives longer than the maximum lifetime ({max_lifetime} s)")
        elif value > now + LEEWAY_SECONDS:
            raise Unauthenticated("signed_request_token is not valid yet (iat/nbf in the future)")
        elif name == "iat":
            start = value
    return claims


def _registered_claims_valid(claims: dict) -> bool:
    """What PyJWT also checks when it verifies a signature without an expected audience:
    no non-empty `aud`, and `sub` / `jti` strings when present."""
    return (not claims.get("aud")
            and ("sub" not in claims or isinstance(claims["sub"], str))
            and ("jti" not in claims or isinstance(claims["jti"], str)))


def _request_body(claims: dict) -> dict:
    raw = claims.get("requestBody")
    if not isinstance(raw, str):
        raise InvalidArgument("signed_request_token has no requestBody claim (a JSON string)")
    try:
        body = _json(raw)
    except (ValueError, RecursionError):
        raise InvalidArgument("requestBody is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("requestBody must be a JSON object")
    return body


def _json(data):
    """orjson's parse (several times faster on a ~3 KB token); whatever it refuses is parsed by
    the stdlib, whose rules these checks were written against (NaN, integers beyond 64 bits,
    lone surrogates, a BOM): both accept the same documents with the same result otherwise."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    # orjson reads integers beyond 64 bits as floats: such documents (a run of 19+ digits
    # anywhere) go to the stdlib. Digits folded to "0" by bytes.translate and a substring
    # search: ~1 us on a 1.3 KB token where a \d{19,} regex took ~13 us.
    if _LONG_ZEROS not in raw.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_ZEROS = b"0" * 19


class _PublicKeys:
    """Client public keys by PEM text: an SDK client reuses its key across requests, and
    loading a PEM costs more than the rest of the body checks. Bounded; parse failures are
    not kept (they are rare and cheap to repeat)."""

    def __init__(self, limit: int = 256):
        self._keys: dict[str, object] = {}
        self._limit = limit
        self._lock = threading.Lock()

    def load(self, pem: str):
        key = self._keys.get(pem)
        if key is None:
            key = load_pem_public_key(pem.encode())  # ValueError / TypeError for the caller
            with self._lock:
                while len(self._keys) >= self._limit:
                    del self._keys[next(iter(self._keys))]
                self._keys[pem] = key
        return key


_PUBLIC_KEYS = _PublicKeys()


def _client_key(pem):
    if not isinstance(pem, str) or "BEGIN" not in pem:
        return None
    try:
        return _PUBLIC_KEYS.load(pem)
    except (ValueError, TypeError):
        return None


def bound_jkt(access_token: str | None) -> str | None:
    """`cnf.jkt` of an (already authenticated) JWT access token, if it is DPoP-bound."""
    if not access_token or access_token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    cnf = claims.get("cnf")
    jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
    return jkt if isinstance(jkt, str) else None
