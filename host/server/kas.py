"""kas.AccessService/PublicKey and LegacyPublicKey (also GET /kas/v2/kas_public_key and
GET /kas/kas_public_key, host.server.rest).

Public by default, as in OpenTDF; PLATFORM_KAS_PUBLIC_KEY_REQUIRES_AUTH=true
makes them require a client token (host.server.auth.public_key_role).

    algorithm  "rsa:2048" (default), "rsa:4096", "ec:secp256r1", ...; "rsa" and "ec" as shorthands
    fmt        "" or "pkcs8" -> PEM; "jwk" -> a JWK (JSON text)
    v          "1" -> legacy answer without kid
    kid        (GET /kas/v2/kas_public_key only) a specific key instead of the active key of the algorithm

LegacyPublicKey answers the PEM alone (a google.protobuf.StringValue). For EC,
OpenTDF answers a certificate there; this KAS holds no certificates and answers
the public key, which OpenTDF's clients accept in its place.

Which KAS this server answers for: PLATFORM_KAS (id, uri or name), else the
only registered one.
"""

from __future__ import annotations

import json
import os

from anyio import to_thread
from google.protobuf import wrappers_pb2

from host.errors import InvalidArgument
from host.server import auth
from host.server.connect import Call, procedures_for
from host.server.protos import kas_pb2

SERVICE = kas_pb2.DESCRIPTOR.services_by_name["AccessService"]
_SHORTHANDS = {"rsa": "rsa:2048", "ec": "ec:secp256r1", "": "rsa:2048"}
_FORMATS = ("", "pkcs8", "jwk")


class KasHandlers:
    def __init__(self, platform, kas_ref: str | None = None):
        self.platform = platform
        self.kas_ref = kas_ref if kas_ref is not None else (os.environ.get("PLATFORM_KAS") or None)

    async def public_key(self, req: kas_pb2.PublicKeyRequest, call: Call):
        return await self.lookup(req.algorithm, req.fmt, req.v, kid=(call.params or {}).get("kid") or None)

    async def legacy_public_key(self, req: kas_pb2.LegacyPublicKeyRequest, call: Call):
        resp = await self.lookup(req.algorithm, "", "1", kid=None)
        return wrappers_pb2.StringValue(value=resp.public_key)

    async def lookup(self, algorithm: str, fmt: str, v: str, kid: str | None) -> kas_pb2.PublicKeyResponse:
        algorithm = _SHORTHANDS.get(algorithm.strip().lower(), algorithm.strip().lower())
        fmt = fmt.strip().lower()
        if fmt not in _FORMATS:
            raise InvalidArgument(f"fmt must be pkcs8 or jwk, got {fmt[:20]!r}")
        key = await to_thread.run_sync(lambda: self.platform.keys.public_key(
            kas=self.kas_ref, kid=kid or None, algorithm=None if kid else algorithm))
        pem = key.public_key_pem or ""
        text = _jwk(pem, key.key_id) if fmt == "jwk" else pem
        return kas_pb2.PublicKeyResponse(public_key=text, kid="" if v == "1" else key.key_id)


def _jwk(pem: str, kid: str) -> str:
    import jwt.algorithms
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    pub = load_pem_public_key(pem.encode())
    if isinstance(pub, rsa.RSAPublicKey):
        doc = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(pub))
    elif isinstance(pub, ec.EllipticCurvePublicKey):
        doc = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(pub))
    else:
        raise InvalidArgument("key type cannot be expressed as a JWK")
    doc["kid"] = kid
    return json.dumps(doc, separators=(",", ":"))


def procedures(platform, handlers: KasHandlers | None = None):
    h = handlers or KasHandlers(platform)
    return procedures_for(SERVICE, {"PublicKey": h.public_key, "LegacyPublicKey": h.legacy_public_key},
                          role=auth.public_key_role(), message_module=kas_pb2,
                          side_effect_free=("PublicKey", "LegacyPublicKey"))
