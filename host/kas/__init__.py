"""The KAS rewrap protocol, independent of any transport.

What an unmodified OpenTDF Python SDK (`otdf-python` 0.11.0) does against a
platform, read from its source (otdf_python/, otdf_python_proto/):

Authentication
    Every KAS call carries `Authorization: Bearer <access token>`. The token is
    either given (`SDKBuilder.bearer_token`) or fetched with an OAuth2
    client-credentials grant (`SDKBuilder.client_secret`; the CLI only offers
    this). The token endpoint is discovered from `GET
    {platform}/.well-known/opentdf-configuration` -> `configuration.idp.token_endpoint`,
    else `configuration.platform_issuer` + `/.well-known/openid-configuration`.
    No DPoP header is ever sent (`AuthHeaders.dpop_header` is always "").

Encrypt, standard TDF (zip, "ztdf")
    `kas.AccessService/PublicKey` (Connect, JSON) with `algorithm` empty (our
    default: rsa:2048); uses `public_key` and `kid` of the answer. RSA only:
    the DEK is RSA-OAEP-SHA1 wrapped, key access object type "wrapped", and
    the policy binding is base64(hex(HMAC-SHA256(key=DEK, msg=base64(policy JSON)))).
    The KAS url written into the TDF is `{platform}:{port}/kas`.
Encrypt, NanoTDF ("nano", the SDK's only EC path)
    `PublicKey` with `algorithm="ec:secp256r1"`; ephemeral P-256 key, DEK =
    HKDF-SHA256(ECDH(ephemeral, KAS key), salt=SHA-256("L1L"), no info). The
    header's resource locator carries the literal key id "e1" (not the kid
    the KAS returned), and the "GMAC" policy binding is the last 8 bytes of
    SHA-256(policy body) - unkeyed, as in OpenTDF's Go SDK.

Decrypt: `kas.AccessService/Rewrap` with one field, `signed_request_token`:
    a JWT, RS256, signed with a per-client RSA-2048 "DPoP" key whose public
    half is never sent anywhere. Claims: `requestBody` (a JSON string), `iat`,
    `exp` (= iat + 2 h). requestBody = {
        "clientPublicKey": PEM of a fresh RSA-2048 key (also for NanoTDF),
        "requests": [{"policy": {"id": "policy", "body": base64(policy JSON)},
                      "keyAccessObjects": [{"keyAccessObjectId": "kao-0",
                                            "keyAccessObject": {url, wrappedKey (b64),
                                              type, protocol, policyBinding {alg, hash},
                                              kid, schemaVersion[, header (b64 NanoTDF header)]}}],
                      ["algorithm": "ec:secp256r1" for NanoTDF]}],
        "keyAccess": <the same object>, "policy": base64(policy)   (legacy v1 fields)
    }
    For NanoTDF the policy body is omitted (the KAS reads it from the header).
    The SDK reads `responses[0].results[0].kas_wrapped_key` (else
    `entity_wrapped_key`) and always RSA-OAEP-SHA1-decrypts it with its client
    key; a result's `error` string is shown to the user.

What OpenTDF's KAS does with the token: with a DPoP-bound access token it
verifies the token with the DPoP key; without one it only parses it (no
signature check). This package does the same by default and can be made
strict (see host.kas.srt).

Modules: srt (signed request token + DPoP proof), nanotdf (header parsing),
decision (the access-decision hook), rewrap (the operation), wellknown (the
discovery document).
"""
