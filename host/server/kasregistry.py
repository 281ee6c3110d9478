"""policy.kasregistry.KeyAccessServerRegistryService: the KAS registry and its keys (admin only).

Served: CreateKeyAccessServer, GetKeyAccessServer, ListKeyAccessServers,
CreateKey, GetKey, ListKeys, RotateKey. The other methods of the service
answer `unimplemented` (the router does not know them).

Key creation follows OpenTDF's wire contract: the caller supplies the public
key, and for local and provider modes the private key already wrapped
(`private_key_ctx.wrapped_key`, base64) by the root key or by the provider's
key named in `private_key_ctx.key_id`. We unwrap it once to prove it belongs
to the public key, then hand it to the key service, which stores it wrapped.
"""

from __future__ import annotations

import base64
import binascii

from anyio import to_thread

from host.errors import FailedPrecondition, InvalidArgument, PlatformError
from host.server import convert
from host.server.connect import Call, procedures_for
from host.server.protos import kasregistry_pb2 as kr

SERVICE = kr.DESCRIPTOR.services_by_name["KeyAccessServerRegistryService"]


class KasRegistryHandlers:
    def __init__(self, platform):
        self.platform = platform

    # ---- Key Access Servers ----------------------------------------------------
    async def create_key_access_server(self, req: kr.CreateKeyAccessServerRequest, call: Call):
        if req.HasField("public_key"):
            raise InvalidArgument("public_key: cached/remote KAS public keys are not supported; "
                                  "register the KAS, then add keys with CreateKey")
        labels = convert.labels(req.metadata) if req.HasField("metadata") else None
        kas = await to_thread.run_sync(self.platform.store.kas.create, req.uri, req.name, labels)
        return kr.CreateKeyAccessServerResponse(key_access_server=convert.key_access_server(kas))

    async def get_key_access_server(self, req: kr.GetKeyAccessServerRequest, call: Call):
        ref = req.id or getattr(req, req.WhichOneof("identifier") or "kas_id")

        def get():
            kas = self.platform.store.kas.get(ref)
            keys, _ = self.platform.store.keys.list(kas_id=kas.id, limit=convert.DEFAULT_PAGE_LIMIT, status="active")
            return kas, keys

        kas, keys = await to_thread.run_sync(get)
        return kr.GetKeyAccessServerResponse(key_access_server=convert.key_access_server(kas, keys))

    async def list_key_access_servers(self, req: kr.ListKeyAccessServersRequest, call: Call):
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        servers, total = await to_thread.run_sync(lambda: self.platform.store.kas.list(limit=limit, offset=offset))
        return kr.ListKeyAccessServersResponse(
            key_access_servers=[convert.key_access_server(k) for k in servers],
            pagination=convert.page_response(offset, len(servers), total))

    # ---- keys -----------------------------------------------------------------
    async def create_key(self, req: kr.CreateKeyRequest, call: Call):
        if req.legacy:
            raise InvalidArgument("legacy: legacy keys are not supported")
        algorithm = convert.algorithm(req.key_algorithm)
        mode = convert.key_mode(req.key_mode)
        labels = convert.labels(req.metadata) if req.HasField("metadata") else None
        ctx = call.context()

        def create():
            options = self._key_material(mode, algorithm, req.public_key_ctx.pem,
                                         req.private_key_ctx if req.HasField("private_key_ctx") else None,
                                         req.provider_config_id, ctx, "")
            return self.platform.keys.create_key(req.kas_id, req.key_id, algorithm, mode,
                                                 labels=labels, ctx=ctx, **options)

        key = await to_thread.run_sync(create)
        return kr.CreateKeyResponse(kas_key=convert.kas_key(key))

    async def get_key(self, req: kr.GetKeyRequest, call: Call):
        which = req.WhichOneof("identifier")
        if which == "id":
            args = {"id": req.id}
        elif which == "key":
            args = {"kas": _kas_ref(req.key, "key"), "key_id": req.key.kid}
        else:
            raise InvalidArgument("identifier: give id, or key (kas and kid)")
        key = await to_thread.run_sync(lambda: self.platform.keys.get_key(**args))
        return kr.GetKeyResponse(kas_key=convert.kas_key(key))

    async def list_keys(self, req: kr.ListKeysRequest, call: Call):
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        which = req.WhichOneof("kas_filter")
        kas = getattr(req, which) if which else None
        algorithm = convert.algorithm(req.key_algorithm) if req.key_algorithm else None
        keys, total = await to_thread.run_sync(lambda: self.platform.keys.list_keys(
            kas=kas, limit=limit, offset=offset, algorithm=algorithm))
        return kr.ListKeysResponse(kas_keys=[convert.kas_key(k) for k in keys],
                                   pagination=convert.page_response(offset, len(keys), total))

    async def rotate_key(self, req: kr.RotateKeyRequest, call: Call):
        if not req.HasField("new_key"):
            raise InvalidArgument("new_key: value is required")
        nk = req.new_key
        algorithm = convert.algorithm(nk.algorithm, "new_key.algorithm")
        mode = convert.key_mode(nk.key_mode, "new_key.key_mode")
        labels = convert.labels(nk.metadata) if nk.HasField("metadata") else None
        which = req.WhichOneof("active_key")
        ctx = call.context()

        def rotate():
            if which == "id":
                old = self.platform.keys.get_key(id=req.id)
                kas, old_kid = old.kas_id, old.key_id
            elif which == "key":
                kas, old_kid = _kas_ref(req.key, "key"), req.key.kid
            else:
                raise InvalidArgument("active_key: give id, or key (kas and kid)")
            options = self._key_material(mode, algorithm, nk.public_key_ctx.pem if nk.HasField("public_key_ctx") else "",
                                         nk.private_key_ctx if nk.HasField("private_key_ctx") else None,
                                         nk.provider_config_id, ctx, "new_key.")
            return self.platform.keys.rotate_key(kas, old_kid, nk.key_id, algorithm=algorithm, mode=mode,
                                                 labels=labels, ctx=ctx, **options)

        new, old = await to_thread.run_sync(rotate)
        return kr.RotateKeyResponse(kas_key=convert.kas_key(new),
                                    rotated_resources=kr.RotatedResources(rotated_out_key=convert.kas_key(old)))

    # ---- helpers --------------------------------------------------------------
    def _key_material(self, mode: str, algorithm: str, public_pem: str, private_ctx, provider_config_id: str,
                      ctx, prefix: str) -> dict:
        """KeyService.create_key options from the request's key contexts (runs in a worker thread)."""
        options = {"provider_config_id": provider_config_id or None, "public_key_pem": public_pem or None}
        key_id = private_ctx.key_id if private_ctx is not None else ""
        wrapped_b64 = private_ctx.wrapped_key if private_ctx is not None else ""
        if mode in ("remote", "public_key"):
            if wrapped_b64:
                raise InvalidArgument(f"{prefix}private_key_ctx.wrapped_key must be empty for mode {mode}")
            if mode == "remote":
                options["wrapping_key_id"] = key_id or None
            return options
        if not wrapped_b64:
            raise InvalidArgument(f"{prefix}private_key_ctx.wrapped_key is required for mode {mode}")
        try:
            wrapped = base64.b64decode(wrapped_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidArgument(f"{prefix}private_key_ctx.wrapped_key is not valid base64") from None
        options["wrapping_key_id"] = key_id or None
        options["private_key_pem"] = self._unwrap_private_key(mode, key_id, wrapped, provider_config_id, ctx, prefix)
        return options

    def _unwrap_private_key(self, mode: str, key_id: str, wrapped: bytes, provider_config_id: str, ctx,
                            prefix: str) -> bytes:
        if mode == "local":
            root = self.platform.root_key
            if root is None:
                raise FailedPrecondition("local mode needs the platform root key (PLATFORM_ROOT_KEY or --root-key-file)")
            try:
                return root.decrypt(wrapped)
            except PlatformError:
                raise InvalidArgument(f"{prefix}private_key_ctx.wrapped_key was not wrapped by this platform's "
                                      f"root key") from None
        config = self.platform.store.providers.get(id=provider_config_id)
        manager = self.platform.registry.manager_for(config)
        try:
            return manager.unwrap(key_id, wrapped, ctx)
        except PlatformError as e:
            if e.code in ("invalid_argument", "not_found"):
                raise InvalidArgument(f"{prefix}private_key_ctx.wrapped_key could not be unwrapped by provider "
                                      f"config {config.name!r} ({config.manager}): {e.message}") from None
            raise


def _kas_ref(identifier: kr.KasKeyIdentifier, field: str) -> str:
    which = identifier.WhichOneof("identifier")
    if which is None:
        raise InvalidArgument(f"{field}: give one of kas_id, name or uri")
    return getattr(identifier, which)


def procedures(platform):
    h = KasRegistryHandlers(platform)
    return procedures_for(SERVICE, {
        "CreateKeyAccessServer": h.create_key_access_server,
        "GetKeyAccessServer": h.get_key_access_server,
        "ListKeyAccessServers": h.list_key_access_servers,
        "CreateKey": h.create_key,
        "GetKey": h.get_key,
        "ListKeys": h.list_keys,
        "RotateKey": h.rotate_key,
    }, role="admin", message_module=kr)
