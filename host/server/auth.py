"""Who is calling: static bearer tokens and OIDC JWTs, mapped to two roles.

    admin   policy RPCs (provider configs, KAS registry, keys); also satisfies client
    client  KAS RPCs (public key, rewrap)

Static tokens come from PLATFORM_ADMIN_TOKENS / PLATFORM_CLIENT_TOKENS
(comma-separated) or PLATFORM_ADMIN_TOKEN_FILE / PLATFORM_CLIENT_TOKEN_FILE
(one token per line or comma-separated). Only their SHA-256 digests are kept;
a presented token is hashed and compared with every digest in constant time.

OIDC: PLATFORM_OIDC_ISSUER, PLATFORM_OIDC_AUDIENCE, PLATFORM_OIDC_JWKS (a
file path or an http(s) URL), PLATFORM_OIDC_ROLE_CLAIM (default "roles"; a
dotted path such as "realm_access.roles" reaches into nested claims),
PLATFORM_OIDC_ADMIN_ROLE (default "opentdf-admin"), PLATFORM_OIDC_CLIENT_ROLE
(default "opentdf-standard"). RS256 and ES256 only; exp is required. A token without
`kid` is tried against every signing key of its algorithm's type.

Failures are `unauthenticated` (401) or `permission_denied` (403) with a fixed
message: the caller learns nothing about why.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from typing import Mapping

from host import crypto
from host.errors import InvalidArgument, PermissionDenied, Unauthenticated

ADMIN = "admin"
CLIENT = "client"
ALGORITHMS = ("RS256", "ES256")
_KEY_TYPES = {"RS256": "RSA", "ES256": "EC"}  # the JWK key type each algorithm verifies with

UNAUTHENTICATED_MESSAGE = "unauthenticated"
PERMISSION_DENIED_MESSAGE = "permission denied"


@dataclass(frozen=True)
class Identity:
    subject: str          # for logs: "token:<first 8 hex of the hash>" or the JWT's sub
    roles: frozenset[str]


# Procedures anyone may call without credentials (OpenTDF serves the KAS public key so).
PUBLIC = "public"
ANONYMOUS = Identity(subject="anonymous", roles=frozenset())
PUBLIC_KEY_REQUIRES_AUTH_ENV = "PLATFORM_KAS_PUBLIC_KEY_REQUIRES_AUTH"


def public_key_role(env: Mapping[str, str] | None = None) -> str:
    """The role kas.AccessService/PublicKey and GET /kas/v2/kas_public_key require: PUBLIC by
    default, CLIENT when PLATFORM_KAS_PUBLIC_KEY_REQUIRES_AUTH is 1/true/yes/on."""
    env = os.environ if env is None else env
    value = (env.get(PUBLIC_KEY_REQUIRES_AUTH_ENV) or "").strip().lower()
    if value in ("", "0", "false", "no", "off"):
        return PUBLIC
    if value in ("1", "true", "yes", "on"):
        return CLIENT
    raise InvalidArgument(f"{PUBLIC_KEY_REQUIRES_AUTH_ENV} must be true or false, got {value[:20]!r}")


def _digest(token: str) -> bytes:
    return crypto.sha256(token.encode("utf-8"))


class StaticTokens:
    """Bearer tokens held only as SHA-256 digests."""

    def __init__(self, admin: list[str], client: list[str]):
        # (digest, the identity it stands for): built once, handed out on every match
        self._entries = [(d, _token_identity(d, ADMIN)) for d in map(_digest, admin)] + \
                        [(d, _token_identity(d, CLIENT)) for d in map(_digest, client)]

    def __len__(self) -> int:
        return len(self._entries)

    def match(self, token: str) -> Identity | None:
        presented = _digest(token)
        found = None
        for digest, identity in self._entries:  # no early exit: same work whether or not it matches
            if hmac.compare_digest(presented, digest) and found is None:
                found = identity
        return found


def _token_identity(digest: bytes, role: str) -> Identity:
    roles = frozenset({ADMIN, CLIENT}) if role == ADMIN else frozenset({CLIENT})
    return Identity(subject=f"token:{digest.hex()[:8]}", roles=roles)


@dataclass(frozen=True)
class OidcSettings:
    issuer: str
    audience: str
    jwks: str                 # file path or http(s) URL
    role_claim: str = "roles"
    admin_role: str = "opentdf-admin"
    client_role: str = "opentdf-standard"


class OidcVerifier:
    """Verifies JWTs against one issuer's JWKS (file read once; URL fetched and cached by PyJWKClient)."""

    def __init__(self, settings: OidcSettings):
        import jwt

        self.settings = settings
        self._jwt = jwt
        if settings.jwks.startswith(("http://", "https://")):
            self._client = jwt.PyJWKClient(settings.jwks, cache_keys=True, lifespan=300, timeout=5)
            self._keyset = None
        else:
            self._client = None
            try:
                with open(settings.jwks, encoding="utf-8") as f:
                    self._keyset = jwt.PyJWKSet.from_dict(json.load(f))
            except (OSError, ValueError, jwt.exceptions.PyJWKError, jwt.exceptions.PyJWKSetError) as e:
                raise InvalidArgument(f"PLATFORM_OIDC_JWKS: cannot load JWKS file {settings.jwks}: "
                                      f"{type(e).__name__}") from None

    def _candidate_keys(self, header: dict) -> list:
        """The keys a token may be signed with: the one its `kid` names, or - without a kid -
        every signing key of the algorithm's type (an issuer may list several, and rotates)."""
        kid = header.get("kid")
        if self._client is not None:
            if kid is not None:
                return [self._client.get_signing_key(kid).key]  # refetches the JWKS for an unknown kid
            keys = self._client.get_signing_keys()
        else:
            keys = self._keyset.keys
            if kid is not None:
                return [k.key for k in keys if k.key_id == kid]
        kty = _KEY_TYPES[header["alg"]]
        return [k.key for k in keys if k.key_type == kty and k.public_key_use in (None, "sig")]

    def verify(self, token: str) -> Identity | None:
        """The caller's identity, or None when the token is not acceptable for any reason."""
        jwt = self._jwt
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in ALGORITHMS:
                return None
            claims = None
            for key in self._candidate_keys(header):
                try:
                    claims = jwt.decode(token, key, algorithms=[header["alg"]],
                                        audience=self.settings.audience, issuer=self.settings.issuer,
                                        options={"require": ["exp", "iss", "aud"]}, leeway=30)
                    break
                except (jwt.exceptions.InvalidSignatureError, jwt.exceptions.InvalidKeyError):
                    continue  # not this key; claim errors are the same with every key and end the loop
            if claims is None:
                return None
        except Exception:  # any failure (bad signature, expired, JWKS unreachable) is just "no"
            return None
        values = _claim(claims, self.settings.role_claim)
        if isinstance(values, str):
            values = values.replace(",", " ").split()
        values = set(values) if isinstance(values, (list, tuple)) else set()
        roles = set()
        if self.settings.admin_role in values:
            roles |= {ADMIN, CLIENT}
        if self.settings.client_role in values:
            roles.add(CLIENT)
        return Identity(subject=str(claims.get("sub", "jwt"))[:64], roles=frozenset(roles))


def _claim(claims: Mapping, path: str):
    node = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class Authenticator:
    def __init__(self, tokens: StaticTokens, oidc: OidcVerifier | None = None):
        self.tokens = tokens
        self.oidc = oidc

    @property
    def configured(self) -> bool:
        return len(self.tokens) > 0 or self.oidc is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Authenticator":
        env = os.environ if env is None else env
        admin = _tokens(env, "PLATFORM_ADMIN_TOKENS", "PLATFORM_ADMIN_TOKEN_FILE")
        client = _tokens(env, "PLATFORM_CLIENT_TOKENS", "PLATFORM_CLIENT_TOKEN_FILE")
        oidc = None
        if env.get("PLATFORM_OIDC_ISSUER") or env.get("PLATFORM_OIDC_JWKS"):
            missing = [n for n in ("PLATFORM_OIDC_ISSUER", "PLATFORM_OIDC_AUDIENCE", "PLATFORM_OIDC_JWKS")
                       if not env.get(n)]
            if missing:
                raise InvalidArgument(f"OIDC is partly configured: set {', '.join(missing)}")
            oidc = OidcVerifier(OidcSettings(
                issuer=env["PLATFORM_OIDC_ISSUER"], audience=env["PLATFORM_OIDC_AUDIENCE"],
                jwks=env["PLATFORM_OIDC_JWKS"],
                role_claim=env.get("PLATFORM_OIDC_ROLE_CLAIM") or "roles",
                admin_role=env.get("PLATFORM_OIDC_ADMIN_ROLE") or "opentdf-admin",
                client_role=env.get("PLATFORM_OIDC_CLIENT_ROLE") or "opentdf-standard"))
        return cls(StaticTokens(admin, client), oidc)

    def authenticate(self, authorization: str | None) -> Identity:
        """Identity for an Authorization header value; Unauthenticated when there is none."""
        token = _bearer(authorization)
        if token is None:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        identity = self.tokens.match(token)
        if identity is None and self.oidc is not None and token.count(".") == 2:
            identity = self.oidc.verify(token)
        if identity is None:
            raise Unauthenticated(UNAUTHENTICATED_MESSAGE)
        return identity

    def authorize(self, authorization: str | None, role: str) -> Identity:
        if role == PUBLIC:  # no credentials needed; a token sent along is not even looked at
            return ANONYMOUS
        identity = self.authenticate(authorization)
        if role not in identity.roles:
            raise PermissionDenied(PERMISSION_DENIED_MESSAGE)
        return identity

    @property
    def may_block(self) -> bool:
        """True when verification may do I/O (JWKS URL): run it off the event loop."""
        return self.oidc is not None and self.oidc._client is not None


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 16384:
        return None
    return token


def _tokens(env: Mapping[str, str], list_var: str, file_var: str) -> list[str]:
    tokens = [t.strip() for t in (env.get(list_var) or "").split(",") if t.strip()]
    path = env.get(file_var)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise InvalidArgument(f"{file_var}: cannot read {path}: {e.strerror}") from None
        tokens += [t.strip() for t in text.replace(",", "\n").splitlines() if t.strip()]
    return tokens


def ensure_dev_admin_token(state_dir: str, env: dict[str, str] | None = None) -> tuple[str, str] | None:
    """For `make run`: when no admin credential is configured, make one.

    Reads `<state_dir>/admin.token` or creates it (random 256-bit token, mode
    0600), and points PLATFORM_ADMIN_TOKEN_FILE at it in `env` (default
    os.environ) so the server and its workers pick it up. Returns (token, path),
    or None when admin tokens or OIDC are already configured.
    """
    env = os.environ if env is None else env
    if any(env.get(n) for n in ("PLATFORM_ADMIN_TOKENS", "PLATFORM_ADMIN_TOKEN_FILE", "PLATFORM_OIDC_ISSUER")):
        return None
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    path = os.path.join(state_dir, "admin.token")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
        if not token:
            raise InvalidArgument(f"{path} is empty; delete it to generate a new admin token")
    else:
        token = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(token + "\n")
    env["PLATFORM_ADMIN_TOKEN_FILE"] = os.path.abspath(path)
    return token, path
