"""Between OpenTDF's proto messages and the host's records and strings, in one place.

Enums: KeyMode <-> "local" | "provider" | "remote" | "public_key";
Algorithm <-> "rsa:2048" | "rsa:4096" | "ec:secp256r1" | "ec:secp384r1" | "ec:secp521r1" |
"hpqt:secp256r1-mlkem768" (7) | "hpqt:secp384r1-mlkem1024" (8) | "mlkem:768" (20) | "mlkem:1024" (21);
KasPublicKeyAlgEnum likewise (11, 12, 20, 21 for the post-quantum ones);
KeyStatus <-> "active" | "rotated". Pagination follows OpenTDF: limit 0 means
the default, next_offset 0 means there is no next page (page sizes: the store's
host.store.validation.list_limits).

Wire forms as OpenTDF: AsymmetricKey.public_key_ctx.pem is base64 of the PEM
text (SimpleKasPublicKey.pem is the PEM itself); a key's embedded provider
config carries no config_json (only the provider-config RPCs hand that out).
"""

from __future__ import annotations

import datetime as dt

from host.errors import InvalidArgument
from host.server.protos import common_pb2, objects_pb2, selectors_pb2
from host.service.keys import pem_base64, simple_key_document

KEY_MODES = {
    objects_pb2.KEY_MODE_CONFIG_ROOT_KEY: "local",
    objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY: "provider",
    objects_pb2.KEY_MODE_REMOTE: "remote",
    objects_pb2.KEY_MODE_PUBLIC_KEY_ONLY: "public_key",
}
# OpenTDF's objects.proto numbers that the 0.11.0 protos we load lack. Proto3 enums are open, so
# messages carry them as plain numbers (protojson: the number, not the name).
ALGORITHM_MLKEM_768, ALGORITHM_MLKEM_1024 = 20, 21
KAS_PUBLIC_KEY_ALG_ENUM_MLKEM_768, KAS_PUBLIC_KEY_ALG_ENUM_MLKEM_1024 = 20, 21
ALGORITHMS = {
    objects_pb2.ALGORITHM_RSA_2048: "rsa:2048",
    objects_pb2.ALGORITHM_RSA_4096: "rsa:4096",
    objects_pb2.ALGORITHM_EC_P256: "ec:secp256r1",
    objects_pb2.ALGORITHM_EC_P384: "ec:secp384r1",
    objects_pb2.ALGORITHM_EC_P521: "ec:secp521r1",
    objects_pb2.ALGORITHM_HPQT_SECP256R1_MLKEM768: "hpqt:secp256r1-mlkem768",
    objects_pb2.ALGORITHM_HPQT_SECP384R1_MLKEM1024: "hpqt:secp384r1-mlkem1024",
    ALGORITHM_MLKEM_768: "mlkem:768",
    ALGORITHM_MLKEM_1024: "mlkem:1024",
}
KAS_PUBLIC_KEY_ALGS = {
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_RSA_2048: "rsa:2048",
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_RSA_4096: "rsa:4096",
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_EC_SECP256R1: "ec:secp256r1",
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_EC_SECP384R1: "ec:secp384r1",
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_EC_SECP521R1: "ec:secp521r1",
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_HPQT_SECP256R1_MLKEM768: "hpqt:secp256r1-mlkem768",
    objects_pb2.KAS_PUBLIC_KEY_ALG_ENUM_HPQT_SECP384R1_MLKEM1024: "hpqt:secp384r1-mlkem1024",
    KAS_PUBLIC_KEY_ALG_ENUM_MLKEM_768: "mlkem:768",
    KAS_PUBLIC_KEY_ALG_ENUM_MLKEM_1024: "mlkem:1024",
}
# The algorithm fields whose "defined values" rules (protovalidate, from the 0.11.0 protos) do not
# know the numbers above yet.
_NEWER_ENUM_VALUES = {ALGORITHM_MLKEM_768, ALGORITHM_MLKEM_1024,
                      KAS_PUBLIC_KEY_ALG_ENUM_MLKEM_768, KAS_PUBLIC_KEY_ALG_ENUM_MLKEM_1024}
_ALGORITHM_FIELDS = {"key_algorithm", "algorithm", "alg"}
_DEFINED_RULES = {"key_algorithm_defined", "enum.defined_only"}


# OpenTDF's SORT_KAS_KEYS_TYPE_KEY_STATUS, added to KasKeysSort after 0.11.0 (same number).
SORT_KAS_KEYS_TYPE_KEY_STATUS = 4


def newer_enum_value(violation, message=None) -> bool:
    """True when a validation violation says only that an enum number is newer than our protos
    (ALGORITHM_MLKEM_768 and friends, ListKeys' sort by key status): OpenTDF's current protos
    define it."""
    proto = violation.proto
    elements = [e.field_name for e in proto.field.elements] if proto.field is not None else []
    if proto.rule_id not in _DEFINED_RULES or not elements:
        return False
    if elements == ["sort", "field"]:
        return (violation.field_value == SORT_KAS_KEYS_TYPE_KEY_STATUS
                and message is not None and message.DESCRIPTOR.full_name == _LIST_KEYS)
    return violation.field_value in _NEWER_ENUM_VALUES and elements[-1] in _ALGORITHM_FIELDS


_LIST_KEYS = "policy.kasregistry.ListKeysRequest"


def default_wrapping_key(violation, message=None) -> bool:
    """True when a violation says only that `private_key_ctx.key_id` is empty in provider or remote
    mode. We accept that, as the seed document's `key create ... --mode provider` does: an empty
    key id names the provider config's default key (its config_json says which), as it does in
    every manager call. OpenTDF requires the id; its clients always send one, so they never
    notice. In the other modes (and when the request is not at hand) the rule stands, as OpenTDF's."""
    proto = violation.proto
    elements = [e.field_name for e in proto.field.elements] if proto.field is not None else []
    if proto.rule_id != "string.min_len" or elements[-2:] != ["private_key_ctx", "key_id"]:
        return False
    if message is None:
        return False
    holder = message.new_key if elements[:1] == ["new_key"] else message
    return getattr(holder, "key_mode", None) in _MANAGER_MODES


_MANAGER_MODES = (objects_pb2.KEY_MODE_PROVIDER_ROOT_KEY, objects_pb2.KEY_MODE_REMOTE)


KEY_STATUSES = {
    objects_pb2.KEY_STATUS_ACTIVE: "active",
    objects_pb2.KEY_STATUS_ROTATED: "rotated",
}
_MODE_ENUM = {v: k for k, v in KEY_MODES.items()}
_ALG_ENUM = {v: k for k, v in ALGORITHMS.items()}
_STATUS_ENUM = {v: k for k, v in KEY_STATUSES.items()}

_DIRECTIONS = {selectors_pb2.SORT_DIRECTION_ASC: "asc", selectors_pb2.SORT_DIRECTION_DESC: "desc",
               selectors_pb2.SORT_DIRECTION_UNSPECIFIED: "desc"}


def sort(items, fields: dict[int, str], field: str = "sort") -> tuple[str, str] | None:
    """The first (and only) sort item of a List request as (field, direction); None when absent.
    An unspecified field sorts by created_at, an unspecified direction descends (as OpenTDF)."""
    if not items:
        return None
    if len(items) > 1:
        raise InvalidArgument(f"{field}: at most one sort item")
    item = items[0]
    if item.field not in fields and item.field != 0:
        raise InvalidArgument(f"{field}[0].field: unknown sort field {item.field}")
    if item.direction not in _DIRECTIONS:
        raise InvalidArgument(f"{field}[0].direction: unknown sort direction {item.direction}")
    return fields.get(item.field, "created_at"), _DIRECTIONS[item.direction]


def metadata_update(req) -> tuple[dict[str, str] | None, bool]:
    """(labels, extend) from an Update request's metadata and metadata_update_behavior (EXTEND by default)."""
    if not req.HasField("metadata"):
        return None, True
    return dict(req.metadata.labels), req.metadata_update_behavior != common_pb2.METADATA_UPDATE_ENUM_REPLACE


def key_mode(value: int, field: str = "key_mode") -> str:
    try:
        return KEY_MODES[value]
    except KeyError:
        raise InvalidArgument(f"{field}: unsupported key mode {_enum_name(objects_pb2.KeyMode, value)}") from None


def algorithm(value: int, field: str = "key_algorithm") -> str:
    try:
        return ALGORITHMS[value]
    except KeyError:
        raise InvalidArgument(f"{field}: unsupported algorithm {_enum_name(objects_pb2.Algorithm, value)}") from None


def algorithm_enum(name: str) -> int:
    return _ALG_ENUM.get(name, objects_pb2.ALGORITHM_UNSPECIFIED)


def _enum_name(enum, value: int) -> str:
    try:
        return enum.Name(value)
    except ValueError:
        return str(value)


def labels(metadata) -> dict[str, str] | None:
    """Labels from an optional MetadataMutable (None when the field is absent)."""
    return dict(metadata.labels) if metadata is not None else None


def page(pagination: selectors_pb2.PageRequest | None) -> tuple[int | None, int]:
    """(limit or None for the store's default, offset); the store checks the bounds."""
    limit = pagination.limit if pagination is not None else 0
    offset = pagination.offset if pagination is not None else 0
    if limit < 0:
        raise InvalidArgument("pagination.limit must not be negative")
    if offset < 0:
        raise InvalidArgument("pagination.offset must not be negative")
    return (limit or None), offset


def page_response(offset: int, count: int, total: int) -> selectors_pb2.PageResponse:
    nxt = offset + count
    return selectors_pb2.PageResponse(current_offset=offset, next_offset=nxt if nxt < total else 0, total=total)


def metadata(labels_: dict[str, str], created_at: dt.datetime | None, updated_at: dt.datetime | None):
    md = common_pb2.Metadata(labels=labels_ or {})
    if created_at is not None:
        md.created_at.FromDatetime(_utc(created_at))
    if updated_at is not None:
        md.updated_at.FromDatetime(_utc(updated_at))
    return md


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.timezone.utc) if t.tzinfo is None else t


def provider_config(pc, include_config: bool = True) -> objects_pb2.KeyProviderConfig:
    """include_config=False: without config_json (it may hold credentials); for everything but
    the provider-config RPCs themselves."""
    return objects_pb2.KeyProviderConfig(
        id=pc.id, name=pc.name, manager=pc.manager,
        config_json=pc.config_json if include_config else b"",
        metadata=metadata(pc.labels, pc.created_at, pc.updated_at))


SOURCE_TYPES = {objects_pb2.SOURCE_TYPE_INTERNAL: "internal", objects_pb2.SOURCE_TYPE_EXTERNAL: "external"}
_SOURCE_ENUM = {v: k for k, v in SOURCE_TYPES.items()}


def source_type(value: int) -> str | None:
    """None for SOURCE_TYPE_UNSPECIFIED (not given: unchanged on update)."""
    if value and value not in SOURCE_TYPES:
        raise InvalidArgument(f"source_type: unknown source type {value}")
    return SOURCE_TYPES.get(value)


def kas_public_key(message) -> dict:
    """A policy.PublicKey as the JSON document the store keeps (field names as in the proto)."""
    from google.protobuf import json_format

    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def key_access_server(kas, keys=()) -> objects_pb2.KeyAccessServer:
    out = objects_pb2.KeyAccessServer(
        id=kas.id, uri=kas.uri, name=kas.name,
        source_type=_SOURCE_ENUM.get(getattr(kas, "source_type", None), objects_pb2.SOURCE_TYPE_UNSPECIFIED),
        kas_keys=[simple_kas_key(k) for k in keys],
        metadata=metadata(kas.labels, kas.created_at, kas.updated_at))
    if getattr(kas, "public_key", None):
        from google.protobuf import json_format

        json_format.ParseDict(kas.public_key, out.public_key, ignore_unknown_fields=True)
    return out


def simple_kas_key(key) -> objects_pb2.SimpleKasKey:
    return objects_pb2.SimpleKasKey(
        kas_uri=key.kas_uri, kas_id=key.kas_id,
        public_key=objects_pb2.SimpleKasPublicKey(
            algorithm=algorithm_enum(key.algorithm), kid=key.key_id, pem=key.public_key_pem or ""))


def kas_key(key) -> objects_pb2.KasKey:
    ak = objects_pb2.AsymmetricKey(
        id=key.id, key_id=key.key_id,
        key_algorithm=algorithm_enum(key.algorithm),
        key_status=_STATUS_ENUM.get(key.status, objects_pb2.KEY_STATUS_UNSPECIFIED),
        key_mode=_MODE_ENUM.get(key.mode, objects_pb2.KEY_MODE_UNSPECIFIED),
        metadata=metadata(key.labels, key.created_at, key.updated_at))
    if key.public_key_pem:
        ak.public_key_ctx.pem = pem_base64(key.public_key_pem)
    if getattr(key, "legacy", False):
        ak.legacy = True
    ctx = key.private_key_ctx or {}
    if ctx.get("key_id") or ctx.get("wrapped_key"):
        ak.private_key_ctx.key_id = ctx.get("key_id") or ""
        ak.private_key_ctx.wrapped_key = ctx.get("wrapped_key") or ""
    if key.provider_config is not None:
        ak.provider_config.CopyFrom(provider_config(key.provider_config, include_config=False))
    return objects_pb2.KasKey(kas_id=key.kas_id, kas_uri=key.kas_uri, key=ak)



def well_known_base_key(key) -> dict | None:
    """The base key as OpenTDF publishes it in the well-known configuration (`base_key`)."""
    return None if key is None else simple_key_document(key)
