"""The signed request token of a Rewrap call, and the DPoP proof that may bind it.

Which key the token must verify with, in order (as OpenTDF's KAS decides):

1. A `DPoP` header (RFC 9449 proof: `typ` dpop+jwt, RS256/ES256, public `jwk`
   in the header, `htm` POST, `htu` this endpoint, fresh `iat`, unseen `jti`,
   `ath` = hash of the access token) -> the token must verify with that key.
   An access token that is DPoP-bound (`cnf.jkt`) requires the proof, and the
   proof's key must have that thumbprint.
2. No proof -> the token is verified with the request's `clientPublicKey`
   when that works (clients that sign with their session key).
3. Otherwise the token is accepted unverified - exactly what OpenTDF's KAS
   does without DPoP, and what the otdf-python SDK needs: it signs with a key
   it never discloses. Set `require_signature` (PLATFORM_KAS_REQUIRE_SIGNED_REQUESTS=1)
   to refuse such tokens instead.

Always: the token must parse, name an asymmetric algorithm (never `none` or
HMAC), carry `exp` and not be expired (30 s leeway), and carry `requestBody`
as a JSON object in a string. The caller is authenticated separately (bearer
token); this module only decides whether the request body is trustworthy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.parse
from collections import OrderedDict
from dataclasses import dataclass

import jwt

from host.errors import InvalidArgument, Unauthenticated

ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
DPOP_ALGORITHMS = ("RS256", "PS256", "ES256", "ES384")
LEEWAY_SECONDS = 30
DPOP_MAX_AGE_SECONDS = 300
MAX_TOKEN_BYTES = 256 * 1024
MAX_PROOF_BYTES = 8 * 1024


@dataclass(frozen=True)
class VerifiedRequest:
    body: dict          # the parsed requestBody
    signer: str         # "dpop" | "client-key" | "unverified"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638 SHA-256 thumbprint of an RSA or EC public JWK."""
    members = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}.get(jwk.get("kty"))
    if members is None or any(not isinstance(jwk.get(m), str) for m in members):
        raise Unauthenticated("DPoP proof: jwk must be an RSA or EC public key")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


class _SeenJti:
    """Bounded memory of recent DPoP proof ids (replay protection within one process)."""

    def __init__(self, limit: int = 50_000):
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def add(self, jti: str, now: float) -> bool:
        """False when `jti` was seen within the proof lifetime."""
        with self._lock:
            while self._seen and (len(self._seen) >= self._limit
                                  or next(iter(self._seen.values())) < now - 2 * DPOP_MAX_AGE_SECONDS):
                self._seen.popitem(last=False)
            if jti in self._seen:
                return False
            self._seen[jti] = now
            return True


class SrtVerifier:
    def __init__(self, require_signature: bool = False):
        self.require_signature = require_signature
        self._jti = _SeenJti()

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
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise InvalidArgument("signed_request_token is not a JWT") from None
        if alg not in ASYMMETRIC_ALGORITHMS:
            raise Unauthenticated("signed_request_token must be signed with an asymmetric algorithm (RS256, ES256, ...)")

        if dpop_key is not None:
            claims = self._decode(token, dpop_key, alg, "the DPoP key")
            return VerifiedRequest(_request_body(claims), "dpop")

        claims = self._decode(token, None, alg, None)
        body = _request_body(claims)
        client_key = _client_key(body.get("clientPublicKey"))
        if client_key is not None:
            try:
                jwt.decode(token, client_key, algorithms=[alg], leeway=LEEWAY_SECONDS,
                           options={"require": ["exp"]})
                return VerifiedRequest(body, "client-key")
            except (jwt.PyJWTError, TypeError, ValueError):  # TypeError: key type does not fit the algorithm
                pass
        if self.require_signature:
            raise Unauthenticated("signed_request_token does not verify with a DPoP key or the client public key")
        return VerifiedRequest(body, "unverified")

    @staticmethod
    def _decode(token: str, key, alg: str, key_name: str | None) -> dict:
        options = {"require": ["exp"]}
        if key is None:
            options.update(verify_signature=False, verify_exp=True, verify_iat=True, verify_nbf=True)
        try:
            return jwt.decode(token, key, algorithms=[alg], leeway=LEEWAY_SECONDS, options=options)
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("signed_request_token has expired") from None
        except jwt.MissingRequiredClaimError:
            raise Unauthenticated("signed_request_token must carry an exp claim") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("signed_request_token is not valid yet (iat/nbf in the future)") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated(f"signed_request_token signature does not verify with {key_name}") from None
        except (jwt.PyJWTError, TypeError, ValueError):
            raise Unauthenticated("signed_request_token could not be parsed or validated") from None


def _request_body(claims: dict) -> dict:
    raw = claims.get("requestBody")
    if not isinstance(raw, str):
        raise InvalidArgument("signed_request_token has no requestBody claim (a JSON string)")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidArgument("requestBody is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("requestBody must be a JSON object")
    return body


def _client_key(pem):
    if not isinstance(pem, str) or "BEGIN" not in pem:
        return None
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    try:
        return load_pem_public_key(pem.encode())
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
