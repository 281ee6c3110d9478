"""kas.AccessService/Rewrap, the operation: signed request -> per key access object results.

    verify the signed request token (host.kas.srt)
    parse the request body: v2 `requests` [{policy {id, body}, keyAccessObjects
      [{keyAccessObjectId, keyAccessObject}], algorithm}], or the legacy single
      `keyAccess` + `policy`
    per policy: the access decision hook (host.kas.decision)
    per key access object (one failing never fails the others):
      standard TDF ("wrapped" RSA-OAEP, "ec-wrapped" ECDH + ephemeralPublicKey, "mlkem-wrapped"
      and "hybrid-wrapped" with the KEM ciphertext inside wrappedKey, host.kem):
        kid -> KAS key; DEK = KeyService unwrap (the key's manager does the work);
        policy binding HMAC-SHA256(key=DEK, msg=policy body as sent, base64)
        == base64-decoded binding (raw, or hex as otdf SDKs write it), in
        constant time; mismatch -> permission_denied
      NanoTDF (`header`): kid from the header's resource locator; DEK =
        HKDF(ECDH(KAS key, header's ephemeral key), salt SHA-256("L1L")); the
        ECDH runs where the key lives (locally after the manager unwrapped the
        private key, or in the manager for remote keys); binding: GMAC with
        the DEK or ECDSA by the ephemeral key (host.kas.nanotdf), or the
        unkeyed SHA-256 form only while the decision hook does not read
        policies (the default); the policy decided on is the header's, never
        the request's policy.body
    rewrap the DEK for the client (crypto.seal_dek):
      RSA clientPublicKey (>= 2048 bits) -> RSA-OAEP-SHA1(DEK)
      EC clientPublicKey -> a fresh KAS session key on the client's curve:
        HKDF-SHA256(ECDH(session, client), salt SHA-256("TDF"), or
        SHA-256("L1L") for NanoTDF) -> AES-256-GCM(DEK) as nonce||ct||tag;
        the session public key (PEM) is returned as `session_public_key`

The key work goes through the key service's Rewrap-path methods only
(host.service.KeyService: kas_key, active_public_key, kidless_candidates,
unwrap_with, shared_secret). `finish(now=True)` asks them to answer from
memory and gives up (NEEDS_IO) at the first object that would need I/O, or at
once when the decision hook says it needs I/O: the server runs warm requests
on its event loop and the rest on a thread.

Failed objects carry `error` = "<code>: <message>" (permission_denied,
not_found, invalid_argument, ...); messages never contain key material.

NanoTDF written by otdf-python names its key "e1" whatever kid the KAS gave
it (a placeholder). A header naming "e1" is therefore served by the KAS's
active key of the header's curve (a key really named "e1" only when there is
no active one): new NanoTDFs keep working after a rotation, but NanoTDFs
written before it no longer find their key - the header does not say which
it was. Standard TDFs carry the real kid and keep working across rotations.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from host import crypto, errors
from host.kas import decision as decisions
from host.kas import nanotdf
from host.kas.srt import SrtVerifier, bound_jkt
from host.service import NEEDS_IO

log = logging.getLogger("platform.kas")

MAX_POLICIES = 64
MAX_KAOS = 256
MAX_WRAPPED_KEY_BYTES = 2048   # the largest: hybrid P-384 + ML-KEM-1024 with a 32-byte DEK, 1735 bytes
KAO_TYPES = frozenset(crypto.KAO_TYPES.values())
MAX_KIDLESS_KEYS = 8   # keys tried for an object without kid: each try is one private-key operation
LEGACY_NANO_KID = "e1"
STATUS_PERMIT, STATUS_FAIL = "permit", "fail"
REQUIRE_SIGNED_ENV = "PLATFORM_KAS_REQUIRE_SIGNED_REQUESTS"
DENIED = "access denied by the access decision for this policy"
_UNDECIDED = object()


class Caller(NamedTuple):  # immutable and cheap to build: one per Rewrap
    """Who asks, as the transport authenticated them, plus what the SRT checks need."""

    subject: str
    roles: frozenset[str]
    access_token: str | None = None
    dpop_proof: str | None = None
    host: str | None = None            # the Host header, checked against the DPoP proof's htu
    path: str = "/kas.AccessService/Rewrap"


@dataclass
class KaoResult:
    key_access_object_id: str
    status: str
    wrapped_key: bytes = b""
    error: str = ""


@dataclass
class PolicyResult:
    policy_id: str
    results: list[KaoResult] = field(default_factory=list)


class Prepared(NamedTuple):
    """A request that passed the checks needing no key (Rewrapper.prepare), and how far
    `finish` got with it: work done on the event loop is kept for the thread that finishes it."""
    requests: list[dict]
    client: "_ClientKey"
    signer: str                        # how the request token was verified
    done: list                         # PolicyResult per policy started (the last one may be partial)
    decided: dict                      # policy index -> its decision (the error to fail with, or None)


@dataclass
class RewrapResult:
    responses: list[PolicyResult]
    session_public_key: str = ""       # PEM, when the client key is EC
    signer: str = ""                   # how the request token was verified


class _ClientKey:
    """The client's public key, checked, and for an EC one this response's session key."""

    def __init__(self, pem, parsed=None):
        """`parsed`: the key `pem` already loaded to (by the request-token check), if it was."""
        if not isinstance(pem, str) or not pem.strip():
            raise errors.InvalidArgument("requestBody.clientPublicKey is required (a PEM public key)")
        if parsed is not None:
            self.key = parsed
        else:
            try:
                self.key = serialization.load_pem_public_key(pem.encode())
            except (ValueError, TypeError):
                raise errors.InvalidArgument("requestBody.clientPublicKey does not parse as a PEM public key") from None
        if isinstance(self.key, rsa.RSAPublicKey):
            if self.key.key_size < 2048:
                raise errors.InvalidArgument("requestBody.clientPublicKey: RSA keys must have at least 2048 bits")
            self.session_private = None
        elif isinstance(self.key, ec.EllipticCurvePublicKey):
            if self.key.curve.name not in ("secp256r1", "secp384r1", "secp521r1"):
                raise errors.InvalidArgument("requestBody.clientPublicKey: EC keys must be on P-256, P-384 or P-521")
            self.session_private = ec.generate_private_key(self.key.curve)
        else:
            raise errors.InvalidArgument("requestBody.clientPublicKey must be an RSA or EC public key")

    @property
    def session_public_pem(self) -> str:
        return crypto.public_pem(self.session_private) if self.session_private is not None else ""


class _NeedsIO(Exception):
    """Raised inside finish(now=True) where the key service answered NEEDS_IO."""


def _now(answer):
    """A key-service answer, or _NeedsIO when it would have needed I/O."""
    if answer is NEEDS_IO:
        raise _NeedsIO
    return answer


class Rewrapper:
    def __init__(self, keys, kas_ref: str | None = None, decide=None, verifier: SrtVerifier | None = None):
        self.keys = keys                       # host.service.KeyService, through its Rewrap-path methods only
        self.kas_ref = kas_ref
        self.decide = decide or decisions.load()
        require = os.environ.get(REQUIRE_SIGNED_ENV, "").strip().lower() in ("1", "true", "yes")
        self.verifier = verifier or SrtVerifier(require_signature=require)
        self._kas_id: str | None = None

    # ---- the operation ------------------------------------------------------
    def rewrap(self, signed_request_token: str, caller: Caller, ctx=None) -> RewrapResult:
        return self.finish(self.prepare(signed_request_token, caller), caller, ctx)

    def prepare(self, signed_request_token: str, caller: Caller) -> "Prepared":
        """The request checks that need no key: DPoP proof, request token, body, client key (CPU only)."""
        jkt = bound_jkt(caller.access_token)
        dpop_key = self.verifier.dpop_key(caller.dpop_proof, access_token=caller.access_token, path=caller.path,
                                          host=caller.host, bound_jkt=jkt)
        verified = self.verifier.verify(signed_request_token, dpop_key)
        body = verified.body
        client = _ClientKey(body.get("clientPublicKey"), verified.client_key)
        return Prepared(_requests(body), client, verified.signer, [], {})

    def finish(self, prepared: "Prepared", caller: Caller, ctx=None, *, now: bool = False):
        """Per policy and key access object: decision, unwrap, binding check, rewrap to the client.

        now=True (for an event loop): only as long as no I/O is needed - no store query, no
        manager call, no decision hook that says it needs I/O. At the first object that would
        need some it returns NEEDS_IO; what it did stays in `prepared`, and finish(prepared) on
        a worker thread does the rest."""
        if now and (self._kas_id is None or decisions.needs_io(self.decide)):
            return NEEDS_IO
        done = prepared.done
        try:
            for index, req in enumerate(prepared.requests):
                if index == len(done):
                    policy = req.get("policy") if isinstance(req.get("policy"), dict) else {}
                    done.append(PolicyResult(policy.get("id") if isinstance(policy.get("id"), str) else ""))
                self._policy(index, req, done[index], prepared, caller, ctx, now)
        except _NeedsIO:
            return NEEDS_IO
        return RewrapResult(done, prepared.client.session_public_pem, prepared.signer)

    def _policy(self, index: int, req: dict, out: PolicyResult, prepared: "Prepared", caller: Caller, ctx,
                now: bool) -> None:
        """The objects of one policy not done yet, into `out`.

        The hook is asked about exactly the policy each released object is bound to: a standard
        TDF's objects are HMAC-bound to the request's policy body (one question per policy, before
        any unwrap; an object not bound to that body fails its binding check); a NanoTDF object is
        bound to its own header's policy (one question per object, once its binding verified).
        A hook that does not read policies is asked once per policy, before any unwrap."""
        items = req["keyAccessObjects"]
        reads_policy = decisions.reads_policy(self.decide)
        policy = req.get("policy") if isinstance(req.get("policy"), dict) else {}
        policy_body = policy.get("body")
        for i in range(len(out.results), len(items)):
            item = items[i]
            kao_id = _kao_id(item, i)
            if not reads_policy:
                denial = self._decided(prepared, index, caller, out.policy_id, None, (), "")
                if denial is not None:
                    out.results.append(_failed(kao_id, denial))
                    continue
            try:
                kao = _kao(item)
                if kao.get("header"):
                    dek, salt = self._nano_dek(kao, ctx, caller, out.policy_id, reads_policy, now), nanotdf.NANO_SALT
                else:
                    if reads_policy:
                        denial = self._decided(prepared, index, caller, out.policy_id, policy_body, items, "ztdf")
                        if denial is not None:
                            raise denial
                    dek, salt = self._tdf_dek(kao, policy_body, ctx, now), crypto.TDF_SALT
                client = prepared.client
                out.results.append(KaoResult(kao_id, STATUS_PERMIT,
                                             crypto.seal_dek(client.key, dek, client.session_private, salt)))
            except _NeedsIO:
                raise
            except errors.PlatformError as e:
                out.results.append(_failed(kao_id, e, ctx))
            except Exception as exc:  # never let one object's surprise fail the others, nor leak its text
                log.error("rewrap of a key access object failed unexpectedly",
                          extra={"fields": {"error_type": type(exc).__name__}})
                out.results.append(_failed(kao_id, errors.Internal("internal error while rewrapping this object")))

    def _decided(self, prepared: "Prepared", index: int, caller: Caller, policy_id: str, policy_body, items,
                 container: str):
        """The decision on policy `index`, asked once per request (policy_body None, items (): a
        question about the caller alone)."""
        denial = prepared.decided.get(index, _UNDECIDED)
        if denial is _UNDECIDED:
            denial = prepared.decided[index] = self._decision(caller, policy_id, _policy_json(policy_body),
                                                              _kids(items), container)
        return denial

    def _decision(self, caller: Caller, policy_id: str, policy, key_ids: tuple, container: str):
        """The hook's answer as the error to fail with, or None to permit."""
        try:
            allowed = self.decide(decisions.DecisionRequest(subject=caller.subject, roles=caller.roles,
                                                            policy_id=policy_id, policy=policy, key_ids=key_ids,
                                                            container=container))
        except Exception as exc:  # a broken hook fails closed
            log.error("access decision hook raised", extra={"fields": {"error_type": type(exc).__name__}})
            return errors.Internal("the access decision could not be made")
        return None if allowed else errors.PermissionDenied(DENIED)

    # ---- standard TDF --------------------------------------------------------
    def _tdf_dek(self, kao: dict, policy_body, ctx, now: bool = False) -> bytes:
        kind = kao.get("type", "wrapped")
        if kind not in KAO_TYPES:
            raise errors.InvalidArgument(f"key access object type must be one of {', '.join(sorted(KAO_TYPES))}, "
                                         f"got {str(kind)[:32]!r}")
        if kao.get("protocol", "kas") != "kas":
            raise errors.InvalidArgument("key access object protocol must be kas")
        if not isinstance(policy_body, str) or not policy_body:
            raise errors.InvalidArgument("the policy body (base64) is required to check the policy binding")
        wrapped = _b64(kao.get("wrappedKey"), "wrappedKey")
        if not wrapped or len(wrapped) > MAX_WRAPPED_KEY_BYTES:
            raise errors.InvalidArgument(f"wrappedKey must be 1 to {MAX_WRAPPED_KEY_BYTES} bytes")
        binding = _binding(kao.get("policyBinding"))
        ephemeral = None
        if kind == "ec-wrapped":
            ephemeral = kao.get("ephemeralPublicKey")
            if not isinstance(ephemeral, str) or not ephemeral.strip():
                raise errors.InvalidArgument("an ec-wrapped key access object needs ephemeralPublicKey (PEM)")
        elif kind != "wrapped" and kao.get("ephemeralPublicKey"):  # as OpenTDF: the KEM types carry none
            raise errors.InvalidArgument(f"a {kind} key access object carries its ephemeral key inside wrappedKey: "
                                         "ephemeralPublicKey must be absent")
        kid = kao.get("kid")
        if kid is None or kid == "":
            if kind not in ("wrapped", "ec-wrapped"):  # OpenTDF's SDKs always name the KEM key
                raise errors.InvalidArgument(f"a {kind} key access object must name its key (kid)")
            if now:  # a query for the candidate keys
                raise _NeedsIO
            dek = self._kidless_dek(wrapped, ephemeral, ctx)
        else:
            key = self._key(kid, now=now)
            if crypto.KAO_TYPES[key.algorithm] != kind:
                raise errors.InvalidArgument(f"key {key.key_id!r} is {key.algorithm}: key access object type "
                                             f"{kind} does not fit it")
            try:
                dek = _now(self.keys.unwrap_with(key, wrapped, ephemeral, ctx, now=now))
            except errors.CryptoError:
                raise errors.PermissionDenied(f"the wrapped key does not unwrap with key {key.key_id!r} "
                                              "(wrapped to another key or KAS, or altered)") from None
        expected = crypto.hmac_sha256(dek, policy_body.encode("utf-8"))
        if not hmac.compare_digest(expected, binding):
            raise errors.PermissionDenied("policy binding mismatch: the policy or the key access object was altered")
        return dek

    def _kidless_dek(self, wrapped: bytes, ephemeral, ctx) -> bytes:
        """A standard TDF object naming no key (OpenTDF's legacy lookup): this KAS's keys of the
        algorithm the object implies (RSA by the wrapped key's length, EC by the ephemeral key's
        curve), the active key first, then rotated and legacy keys newest first, at most
        MAX_KIDLESS_KEYS; the first that unwraps wins. A wrong key fails cleanly (RSA-OAEP
        padding, AES-GCM tag) and the policy binding is still checked with the DEK found."""
        algorithm = _ec_algorithm(ephemeral) if ephemeral else _rsa_algorithm(wrapped)
        kas_id = self.kas_id()
        active = None
        try:
            active = self.keys.active_public_key(kas_id, algorithm)  # cached
            return self.keys.unwrap_with(active, wrapped, ephemeral, ctx)
        except (errors.CryptoError, errors.NotFound, errors.FailedPrecondition):
            pass  # not wrapped to the active key (or none is active): try the others
        tried = 0 if active is None else 1
        for key in self.keys.kidless_candidates(kas_id, algorithm, MAX_KIDLESS_KEYS,
                                                exclude=None if active is None else active.id):
            if tried >= MAX_KIDLESS_KEYS:
                break
            tried += 1
            try:
                return self.keys.unwrap_with(key, wrapped, ephemeral, ctx)
            except errors.CryptoError:
                continue
        raise errors.PermissionDenied(f"the wrapped key names no kid and unwraps with none of this KAS's {tried} "
                                      f"most recent {algorithm} keys (wrapped to another KAS, or altered)")

    # ---- NanoTDF ----------------------------------------------------------------
    def _nano_dek(self, kao: dict, ctx, caller: Caller, policy_id: str, reads_policy: bool, now: bool = False) -> bytes:
        """The payload key of a NanoTDF header whose policy binding verifies; with a hook that reads
        policies, also decided on the header's own policy. The unkeyed binding passes only without one."""
        header = nanotdf.parse_header(_b64(kao.get("header"), "header"))
        unkeyed = header.unkeyed_binding()
        if unkeyed and reads_policy:  # refused before any key operation
            raise errors.PermissionDenied(nanotdf.UNKEYED_REFUSED)
        key = self._key(header.kid or None, algorithm=header.algorithm, nano=True, now=now)
        if key.algorithm != header.algorithm:
            raise errors.InvalidArgument(f"key {key.key_id!r} is {key.algorithm}, the NanoTDF uses {header.algorithm}")
        ephemeral = crypto.load_ephemeral_public_key(header.ephemeral_key, key.algorithm)
        if header.ecdsa_binding:
            header.check_signature(ephemeral)
        shared = _now(self.keys.shared_secret(key, ephemeral, ctx, now=now))
        dek = crypto.derive_wrap_key(shared, nanotdf.NANO_SALT)
        if not header.ecdsa_binding and not unkeyed:
            header.check_gmac(dek)
        if reads_policy:
            denial = self._decision(caller, policy_id, header.policy(dek), (header.kid,), "nanotdf")
            if denial is not None:
                raise denial
        return dek

    # ---- key lookup -----------------------------------------------------------
    def kas_id(self) -> str:
        if self._kas_id is None:
            self._kas_id = self.keys.kas_id(self.kas_ref)
        return self._kas_id

    def _key(self, kid, *, algorithm: str | None = None, nano: bool = False, now: bool = False):
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise errors.InvalidArgument("kid must be a string of at most 256 characters")
        kas_id = self.kas_id()
        if nano and kid == LEGACY_NANO_KID:  # otdf-python's placeholder: the current key of the curve
            try:
                return _now(self.keys.active_public_key(kas_id, algorithm, now=now))
            except errors.NotFound:
                pass  # no active key of that curve: a key really named "e1", if any
        if kid:
            try:
                return _now(self.keys.kas_key(kid, kas_id, now=now))
            except errors.NotFound:
                raise errors.NotFound(f"this KAS has no key {kid!r}", worded=True) from None
        return _now(self.keys.active_public_key(kas_id, algorithm, now=now))


# ---- request parsing ------------------------------------------------------------
def _requests(body: dict) -> list[dict]:
    reqs = body.get("requests")
    if reqs:
        if not isinstance(reqs, list) or not all(isinstance(r, dict) for r in reqs):
            raise errors.InvalidArgument("requestBody.requests must be a list of objects")
    else:  # legacy v1: one key access object and the policy beside it
        if not isinstance(body.get("keyAccess"), dict):
            raise errors.InvalidArgument("requestBody needs requests (v2) or keyAccess (v1)")
        reqs = [{"policy": {"id": "policy", "body": body.get("policy")},
                 "keyAccessObjects": [{"keyAccessObjectId": "kao-0", "keyAccessObject": body["keyAccess"]}]}]
    if len(reqs) > MAX_POLICIES:
        raise errors.InvalidArgument(f"at most {MAX_POLICIES} policies per request")
    total = 0
    for r in reqs:
        kaos = r.get("keyAccessObjects")
        if not isinstance(kaos, list) or not kaos:
            raise errors.InvalidArgument("every request needs a non-empty keyAccessObjects list")
        total += len(kaos)
    if total > MAX_KAOS:
        raise errors.InvalidArgument(f"at most {MAX_KAOS} key access objects per request")
    return reqs


def _kao_id(item, index: int) -> str:
    if isinstance(item, dict) and isinstance(item.get("keyAccessObjectId"), str):
        return item["keyAccessObjectId"][:128]
    return f"kao-{index}"


def _kao(item) -> dict:
    kao = item.get("keyAccessObject") if isinstance(item, dict) else None
    if not isinstance(kao, dict):
        raise errors.InvalidArgument("keyAccessObject must be an object")
    return kao


def _b64(value, name: str) -> bytes:
    if not isinstance(value, str):
        raise errors.InvalidArgument(f"{name} must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise errors.InvalidArgument(f"{name} is not valid base64") from None


def _binding(value) -> bytes:
    """The policy binding's HMAC bytes: {"alg": "HS256", "hash": b64} or a bare b64 string;
    the base64 may hold the raw 32 bytes or their 64 hex digits (otdf SDKs write hex)."""
    if isinstance(value, dict):
        if value.get("alg", "HS256") != "HS256":
            raise errors.InvalidArgument("policyBinding.alg must be HS256")
        value = value.get("hash")
    if value is None:
        raise errors.InvalidArgument("policyBinding is required")
    raw = _b64(value, "policyBinding.hash")
    if len(raw) == 64:
        try:
            return bytes.fromhex(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    if len(raw) != 32:
        raise errors.InvalidArgument("policyBinding.hash must hold a 32-byte HMAC-SHA256 (raw or hex)")
    return raw


def _policy_json(policy_body):
    """A standard TDF's policy (base64 JSON) for the decision hook, when it can be read."""
    if not isinstance(policy_body, str) or not policy_body:
        return None
    try:
        return json.loads(base64.b64decode(policy_body, validate=True))
    except (ValueError, binascii.Error, RecursionError):
        return None


def _kids(items) -> tuple[str, ...]:
    return tuple(str(item["keyAccessObject"].get("kid", "")) for item in items
                 if isinstance(item, dict) and isinstance(item.get("keyAccessObject"), dict))


def _ec_algorithm(pem) -> str:
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError, AttributeError):
        raise errors.InvalidArgument("ephemeralPublicKey does not parse as a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise errors.InvalidArgument("ephemeralPublicKey must be an EC public key")
    return f"ec:{key.curve.name}"


def _rsa_algorithm(wrapped: bytes) -> str:
    """An RSA-OAEP ciphertext is as long as the modulus."""
    algorithm = f"rsa:{len(wrapped) * 8}"
    if algorithm not in crypto.RSA_BITS:
        raise errors.InvalidArgument(f"wrappedKey of {len(wrapped)} bytes fits no RSA key size of this KAS")
    return algorithm


def _failed(kao_id: str, e: errors.PlatformError, ctx=None) -> KaoResult:
    if e.source is None:
        return KaoResult(kao_id, STATUS_FAIL, error=f"{e.code}: {e.message}")
    request_id = getattr(ctx, "request_id", "")
    log.warning("key manager call failed", extra={"fields": {
        "manager": e.source, "code": e.code, "request_id": request_id, "key_access_object_id": kao_id,
        "error": e.message[:1024]}})
    return KaoResult(kao_id, STATUS_FAIL, error=f"{e.code}: {e.client_message(request_id)}")
