"""policy.keymanagement.KeyManagementService: provider configurations (admin only)."""

from __future__ import annotations

from anyio import to_thread

from host import plaintext
from host.server import convert, newer_fields
from host.server.connect import Call, procedures_for
from host.server.protos import common_pb2, key_management_pb2 as km

SERVICE = km.DESCRIPTOR.services_by_name["KeyManagementService"]


class KeyManagementHandlers:
    def __init__(self, platform):
        self.platform = platform

    @property
    def _providers(self):
        return self.platform.store.providers

    async def create_provider_config(self, req: km.CreateProviderConfigRequest, call: Call):
        labels = convert.labels(req.metadata) if req.HasField("metadata") else None
        plaintext.check(self.platform.root_key, bytes(req.config_json))
        pc = await to_thread.run_sync(self._providers.create, req.name, req.manager, bytes(req.config_json), labels)
        return km.CreateProviderConfigResponse(provider_config=convert.provider_config(pc))

    async def get_provider_config(self, req: km.GetProviderConfigRequest, call: Call):
        which = req.WhichOneof("identifier")
        named = newer_fields.name_manager(req) if which is None else None
        if which == "id":
            args = {"id": req.id}
        elif named is not None:  # OpenTDF's name_manager, newer than these protos
            args = {"name": named[0], "manager": named[1]}
        else:
            # By name (the oneof) and manager; the store names whichever is missing.
            args = {"name": req.name if which == "name" else None, "manager": req.manager or None}
        pc = await to_thread.run_sync(lambda: self._providers.get(**args))
        return km.GetProviderConfigResponse(provider_config=convert.provider_config(pc))

    async def list_provider_configs(self, req: km.ListProviderConfigsRequest, call: Call):
        limit, offset = convert.page(req.pagination if req.HasField("pagination") else None)
        configs, total = await to_thread.run_sync(lambda: self._providers.list(limit=limit, offset=offset))
        return km.ListProviderConfigsResponse(
            provider_configs=[convert.provider_config(pc) for pc in configs],
            pagination=convert.page_response(offset, len(configs), total))

    async def update_provider_config(self, req: km.UpdateProviderConfigRequest, call: Call):
        labels, extend = None, False
        if req.HasField("metadata"):
            labels = dict(req.metadata.labels)
            # OpenTDF: EXTEND (the default) merges labels, REPLACE swaps them.
            extend = req.metadata_update_behavior != common_pb2.METADATA_UPDATE_ENUM_REPLACE
        plaintext.check(self.platform.root_key, bytes(req.config_json) if req.config_json else None)
        pc = await to_thread.run_sync(lambda: self._providers.update(
            req.id, name=req.name or None, manager=req.manager or None,
            config_json=bytes(req.config_json) if req.config_json else None,
            labels=labels, extend_labels=extend))
        return km.UpdateProviderConfigResponse(provider_config=convert.provider_config(pc))

    async def delete_provider_config(self, req: km.DeleteProviderConfigRequest, call: Call):
        pc = await to_thread.run_sync(self._providers.delete, req.id)
        return km.DeleteProviderConfigResponse(provider_config=convert.provider_config(pc, include_config=False))


def procedures(platform):
    h = KeyManagementHandlers(platform)
    return procedures_for(SERVICE, {
        "CreateProviderConfig": h.create_provider_config,
        "GetProviderConfig": h.get_provider_config,
        "ListProviderConfigs": h.list_provider_configs,
        "UpdateProviderConfig": h.update_provider_config,
        "DeleteProviderConfig": h.delete_provider_config,
    }, role="admin", message_module=km)
