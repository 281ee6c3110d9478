"""The discovery document SDKs read at GET /.well-known/opentdf-configuration.

otdf-python reads `configuration.idp.token_endpoint`, else
`configuration.platform_issuer` (then the issuer's
/.well-known/openid-configuration), to find where to run its OAuth2
client-credentials grant. We publish what the platform is configured with and
nothing fetched from elsewhere:

    PLATFORM_OIDC_ISSUER          -> platform_issuer, idp.issuer
    PLATFORM_OIDC_TOKEN_ENDPOINT  -> idp.token_endpoint (optional)

plus where the KAS and health endpoints are. The document is public (no
credentials), as in OpenTDF.
"""

from __future__ import annotations

import os
from typing import Mapping

PATH = "/.well-known/opentdf-configuration"


def configuration(env: Mapping[str, str] | None = None) -> dict:
    env = os.environ if env is None else env
    issuer = (env.get("PLATFORM_OIDC_ISSUER") or "").strip()
    idp: dict[str, str] = {}
    if issuer:
        idp["issuer"] = issuer
    token_endpoint = (env.get("PLATFORM_OIDC_TOKEN_ENDPOINT") or "").strip()
    if token_endpoint:
        idp["token_endpoint"] = token_endpoint
    return {"configuration": {
        "platform_issuer": issuer,
        "idp": idp,
        "kas": {"public_key": "/kas.AccessService/PublicKey", "rewrap": "/kas.AccessService/Rewrap",
                "legacy_public_key": "/kas/v2/kas_public_key"},
        "health": {"endpoint": "/healthz"},
    }}
