"""policy.kasregistry.KeyAccessServerRegistryService: the KAS registry and its keys (admin only),
plus the KAS-key RPCs of policy.unsafe.UnsafeService (UnsafeDeleteKasKey, and UnsafeUpdateKey,
which is newer than the 0.11.0 protos: see host.server.newer_fields, as for `search`).

Every method of the service in otdf-python 0.11.0's protos is served.
Grants and key mappings are attributes and namespaces, which this platform
does not serve: ListKeyAccessServerGrants lists each KAS with no grants, and
ListKeyMappings answers with no mappings (after checking that the key exists).

Key creation follows OpenTDF's wire contract: the caller supplies the public
key (base64 of the PEM; raw PEM is accepted too), and for local and provider
modes the private key already wrapped (`private_key_ctx.wrapped_key`, base64)
by the root key or by the provider's key named in `private_key_ctx.key_id`.
The key service checks that it unwraps to the public key's private key and
stores it as sent. Handlers only translate messages; rules live in the
service and the store.
"""

from __future__ import annotations

from anyio import to_thread

from host.errors import InvalidArgument
from host.server import convert, newer_fields
from host.server.connect import Call, Procedure, procedures_for
from host.server.protos import _import_generated, kasregistry_pb2 as kr

SERVICE = kr.DESCRIPTOR.services_by_name["KeyAccessServerRegistryService"]
unsafe_pb2, = _import_generated("policy.unsafe", ("unsafe_pb2",))
UNSAFE_SERVICE = unsafe_pb2.DESCRIPTOR.services_by_name["UnsafeService"]

_KEY_SORT = {kr.SORT_KAS_KEYS_TYPE_KEY_ID: "key_id", kr.SORT_KAS_KEYS_TYPE_CREATED_AT: "created_at",
             kr.SORT_KAS_KEYS_TYPE_UPDATED_AT: "updated_at", convert.SORT_KAS_KEYS_TYPE_KEY_STATUS: "status"}
_KAS_SORT = {kr.SORT_KEY_ACCESS_SERVERS_TYPE_NAME: "name", kr.SORT_KEY_ACCESS_SERVERS_TYPE_URI: "uri",
             kr.SORT_KEY_ACCESS_SERVERS_TYPE_CREATED_AT: "created_at",
             kr.SORT_KEY_ACCESS_SERVERS_TYPE_UPDATED_AT: "updated_at"}


class KasRegistryHandlers:
    def __init__(self, platform):
        self.platform = platform

    # ---- Key Access Servers ----------------------------------------------------
    async def create_key_access_server(self, req: kr.CreateKeyAccessServerRequest, call: Call):
        # public_key (remote/cached) and source_type are OpenTDF's deprecated registry fields: kept
        # and answered as sent; the keys this KAS serves come from CreateKey.
        labels = convert.labels(req.metadata) if req.HasField("metadata") else None
        public_key = convert.kas_public_key(req.public_key) if req.HasField("public_key") else None
        source = convert.source_type(req.source_type)
        kas = await to_thread.run_sync(lambda: self.platform.store.kas.create(
            req.uri, req.name or None, labels, public_key=public_key, source_type=source))
        return kr.CreateKeyAccessServerResponse(key_access_server=convert.key_access_server(kas))

    async def get_key_access_server(self, req: kr.GetKeyAccessServerRequest, call: Call):
        ref = req.id or getattr(req, req.WhichOneof("identifier") or "kas_id")

        def get():
            kas = self.platform.store.kas.get(ref)
            return kas, self.platform.store.keys.by_kas([kas.id])[kas.id]

        kas, keys = await to_thread.run_sync(get)
        return kr.GetKeyAccessServerResponse(key_access_server=convert.key_access_server(kas, keys))

    async def list_key_access_servers(self, req: kr.ListKeyAccessServersRequest, call: Call):
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        order = convert.sort(req.sort, _KAS_SORT)
        search = newer_fields.search_term(req)
        servers, total = await to_thread.run_sync(lambda: self.platform.store.kas.list(
            limit=limit, offset=offset, sort=order, search=search))
        keys = await to_thread.run_sync(self.platform.store.keys.by_kas, [k.id for k in servers])
        return kr.ListKeyAccessServersResponse(  # each KAS with its keys, as GetKeyAccessServer
            key_access_servers=[convert.key_access_server(k, keys[k.id]) for k in servers],
            pagination=convert.page_response(offset, len(servers), total))

    async def update_key_access_server(self, req: kr.UpdateKeyAccessServerRequest, call: Call):
        labels, extend = convert.metadata_update(req)
        public_key = convert.kas_public_key(req.public_key) if req.HasField("public_key") else None
        source = convert.source_type(req.source_type)
        kas = await to_thread.run_sync(lambda: self.platform.store.kas.update(
            req.id, uri=req.uri or None, name=req.name or None, labels=labels, extend_labels=extend,
            public_key=public_key, source_type=source))
        return kr.UpdateKeyAccessServerResponse(key_access_server=convert.key_access_server(kas))

    async def list_key_access_server_grants(self, req: kr.ListKeyAccessServerGrantsRequest, call: Call):
        # Deprecated by OpenTDF in favour of key mappings, still served: every KAS matching the
        # filters, each with its grants. Grants are attributes/namespaces/values assigned to a KAS;
        # this platform serves none of them, so every KAS has none (as ListKeyMappings).
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        servers, total = await to_thread.run_sync(lambda: self.platform.store.kas.matching(
            id=req.kas_id or None, uri=req.kas_uri or None, name=req.kas_name or None, limit=limit, offset=offset))
        return kr.ListKeyAccessServerGrantsResponse(
            grants=[kr.KeyAccessServerGrants(key_access_server=convert.key_access_server(k)) for k in servers],
            pagination=convert.page_response(offset, len(servers), total))

    async def delete_key_access_server(self, req: kr.DeleteKeyAccessServerRequest, call: Call):
        kas = await to_thread.run_sync(self.platform.store.kas.delete, req.id)
        return kr.DeleteKeyAccessServerResponse(key_access_server=convert.key_access_server(kas))

    # ---- keys -----------------------------------------------------------------
    async def create_key(self, req: kr.CreateKeyRequest, call: Call):
        algorithm = convert.algorithm(req.key_algorithm)
        mode = convert.key_mode(req.key_mode)
        labels = convert.labels(req.metadata) if req.HasField("metadata") else None
        options = _key_options(req.public_key_ctx if req.HasField("public_key_ctx") else None,
                               req.private_key_ctx if req.HasField("private_key_ctx") else None,
                               req.provider_config_id)
        ctx = call.context()
        key = await to_thread.run_sync(lambda: self.platform.keys.create_key(
            req.kas_id, req.key_id, algorithm, mode, labels=labels, legacy=req.legacy, ctx=ctx, **options))
        return kr.CreateKeyResponse(kas_key=convert.kas_key(key))

    async def get_key(self, req: kr.GetKeyRequest, call: Call):
        args = _key_args(req, "identifier")
        key = await to_thread.run_sync(lambda: self.platform.keys.get_key(**args))
        return kr.GetKeyResponse(kas_key=convert.kas_key(key))

    async def list_keys(self, req: kr.ListKeysRequest, call: Call):
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        which = req.WhichOneof("kas_filter")
        kas = getattr(req, which) if which else None
        algorithm = convert.algorithm(req.key_algorithm) if req.key_algorithm else None
        legacy = req.legacy if req.HasField("legacy") else None
        order = convert.sort(req.sort, _KEY_SORT)
        search = newer_fields.search_term(req)
        keys, total = await to_thread.run_sync(lambda: self.platform.keys.list_keys(
            kas=kas, limit=limit, offset=offset, algorithm=algorithm, legacy=legacy, sort=order, search=search))
        return kr.ListKeysResponse(kas_keys=[convert.kas_key(k) for k in keys],
                                   pagination=convert.page_response(offset, len(keys), total))

    async def update_key(self, req: kr.UpdateKeyRequest, call: Call):
        labels, extend = convert.metadata_update(req)

        def update():
            if labels is None:  # nothing to change: answer the key as it is (after checking the id)
                return self.platform.keys.get_key(id=req.id)
            return self.platform.keys.update_key_labels(req.id, labels, extend)

        key = await to_thread.run_sync(update)
        return kr.UpdateKeyResponse(kas_key=convert.kas_key(key))

    async def rotate_key(self, req: kr.RotateKeyRequest, call: Call):
        if not req.HasField("new_key"):
            raise InvalidArgument("new_key: value is required")
        nk = req.new_key
        algorithm = convert.algorithm(nk.algorithm, "new_key.algorithm")
        mode = convert.key_mode(nk.key_mode, "new_key.key_mode")
        labels = convert.labels(nk.metadata) if nk.HasField("metadata") else None
        options = _key_options(nk.public_key_ctx if nk.HasField("public_key_ctx") else None,
                               nk.private_key_ctx if nk.HasField("private_key_ctx") else None,
                               nk.provider_config_id)
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
            return self.platform.keys.rotate_key(kas, old_kid, nk.key_id, algorithm=algorithm, mode=mode,
                                                 labels=labels, ctx=ctx, **options)

        new, old = await to_thread.run_sync(rotate)
        return kr.RotateKeyResponse(kas_key=convert.kas_key(new),
                                    rotated_resources=kr.RotatedResources(rotated_out_key=convert.kas_key(old)))

    async def set_base_key(self, req: kr.SetBaseKeyRequest, call: Call):
        args = _key_args(req, "active_key")
        new, previous = await to_thread.run_sync(lambda: self.platform.keys.set_base_key(**args))
        resp = kr.SetBaseKeyResponse(new_base_key=convert.simple_kas_key(new))
        if previous is not None:
            resp.previous_base_key.CopyFrom(convert.simple_kas_key(previous))
        return resp

    async def get_base_key(self, req: kr.GetBaseKeyRequest, call: Call):
        key = await to_thread.run_sync(self.platform.keys.base_key)
        resp = kr.GetBaseKeyResponse()
        if key is not None:
            resp.base_key.CopyFrom(convert.simple_kas_key(key))
        return resp

    async def list_key_mappings(self, req: kr.ListKeyMappingsRequest, call: Call):
        # Mappings are attributes/namespaces/values using a key; this platform serves none of
        # them, so every key has no mappings. A named key must still exist.
        if req.WhichOneof("identifier") is not None:
            args = _key_args(req, "identifier")
            await to_thread.run_sync(lambda: self.platform.keys.get_key(**args))
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        from host.store import validation
        validation.page(limit, offset)  # the same bounds as every List call
        return kr.ListKeyMappingsResponse(pagination=convert.page_response(offset, 0, 0))

    async def unsafe_update_key(self, req, call: Call):
        # OpenTDF's field rules (its protovalidate options are not on this locally built message)
        from host.store.validation import is_uuid

        if not is_uuid(req.id):
            raise InvalidArgument("id: value must be a valid UUID")
        if req.target_key_mode not in (0, 3, 4):
            raise InvalidArgument("target_key_mode: value must be in list [0, 3, 4]")
        if req.provider_config_id and not is_uuid(req.provider_config_id):
            raise InvalidArgument("provider_config_id: value must be a valid UUID")
        mode = convert.key_mode(req.target_key_mode, "target_key_mode") if req.target_key_mode else None
        key = await to_thread.run_sync(lambda: self.platform.keys.unsafe_update_key(
            req.id, mode, req.provider_config_id or None))
        return newer_fields.UnsafeUpdateKeyResponse(key=convert.kas_key(key))

    async def unsafe_delete_kas_key(self, req, call: Call):
        key = await to_thread.run_sync(lambda: self.platform.keys.unsafe_delete_key(req.id, req.kid, req.kas_uri))
        return unsafe_pb2.UnsafeDeleteKasKeyResponse(key=convert.kas_key(key))


def well_known_base_key(platform) -> dict | None:
    """`base_key` for GET /.well-known/opentdf-configuration (read from the database on each call,
    so every worker publishes the same key; blocking: call it from a worker thread)."""
    return convert.well_known_base_key(platform.keys.base_key())


def _key_options(public_ctx, private_ctx, provider_config_id: str) -> dict:
    """KeyService.create_key options from a request's key contexts (checked by the key service)."""
    return {"public_key_pem": (public_ctx.pem if public_ctx is not None else "") or None,
            "wrapped_key": (private_ctx.wrapped_key if private_ctx is not None else "") or None,
            "wrapping_key_id": (private_ctx.key_id if private_ctx is not None else "") or None,
            "provider_config_id": provider_config_id or None}


def _key_args(req, oneof: str) -> dict:
    """get_key arguments from a oneof of `id` or `key` (a KasKeyIdentifier)."""
    which = req.WhichOneof(oneof)
    if which == "id":
        return {"id": req.id}
    if which == "key":
        if not req.key.kid:
            raise InvalidArgument("key.kid: value is required")
        return {"kas": _kas_ref(req.key, "key"), "key_id": req.key.kid}
    raise InvalidArgument(f"{oneof}: give id, or key (kas and kid)")


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
        "UpdateKeyAccessServer": h.update_key_access_server,
        "DeleteKeyAccessServer": h.delete_key_access_server,
        "ListKeyAccessServerGrants": h.list_key_access_server_grants,
        "CreateKey": h.create_key,
        "GetKey": h.get_key,
        "ListKeys": h.list_keys,
        "UpdateKey": h.update_key,
        "RotateKey": h.rotate_key,
        "SetBaseKey": h.set_base_key,
        "GetBaseKey": h.get_base_key,
        "ListKeyMappings": h.list_key_mappings,
    }, role="admin", message_module=kr) + procedures_for(UNSAFE_SERVICE, {
        "UnsafeDeleteKasKey": h.unsafe_delete_kas_key,
    }, role="admin", message_module=unsafe_pb2) + [Procedure(
        service=newer_fields.UNSAFE_SERVICE_NAME, method="UnsafeUpdateKey",
        input=newer_fields.UnsafeUpdateKeyRequest, output=newer_fields.UnsafeUpdateKeyResponse,
        handler=h.unsafe_update_key, role="admin")]
