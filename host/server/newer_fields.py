"""OpenTDF wire fields and one RPC that are newer than the otdf-python 0.11.0 protos we load.

- `search` (field 12, a `policy.Search {string term = 1}`) on ListKeyAccessServersRequest and
  ListKeysRequest. The 0.11.0 classes lack the field, but protobuf keeps unknown fields: a
  binary request carrying it (otdfctl's, or this CLI's) still has it after parsing, and it is
  read here from the unknown fields; a JSON request's `"search": {"term": ..}` is merged in the
  same form by `merge_json`. The CLI adds it with `with_search`.
- `name_manager` (field 5 of GetProviderConfigRequest's identifier oneof, a
  `NameManager {string name = 1; string manager = 2}`, both at least one character), read the
  same way; with it the oneof's "exactly one field" rule is met (`identifies_provider_config`).
- `policy.unsafe.UnsafeService/UnsafeUpdateKey`: its request and response messages are built
  here (same package, names, field numbers and types as OpenTDF's unsafe.proto) in a file of
  their own, because the generated unsafe.proto of 0.11.0 cannot be extended.
"""

from __future__ import annotations

import json

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, unknown_fields

from host.server.protos import kasregistry_pb2 as kr, key_management_pb2 as km, objects_pb2

SEARCH_FIELD = 12
SEARCHABLE = (kr.ListKeyAccessServersRequest, kr.ListKeysRequest)
SEARCH_MAX_LEN = 253  # OpenTDF's policy.Search.term rule: 1..253 characters


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def with_search(request, term: str | None):
    """The request with OpenTDF's `search.term` set (unchanged when term is None)."""
    if term is not None:
        inner = _length_delimited(1, term.encode("utf-8"))
        request.MergeFromString(_length_delimited(SEARCH_FIELD, inner))
    return request


def search_term(request) -> str | None:
    """The `search.term` of a List request (None when absent), as OpenTDF reads it: trimmed, and
    an empty term is no search. A term over OpenTDF's 253 characters is refused as its rule does."""
    from host.errors import InvalidArgument

    term = None
    for f in unknown_fields.UnknownFieldSet(request):
        if f.field_number != SEARCH_FIELD or f.wire_type != 2:
            continue
        term = ""  # a Search without a term (Go's empty policy.Search{}) breaks term's min_len too
        for inner in unknown_fields.UnknownFieldSet(_search_holder(f.data)):
            if inner.field_number == 1 and inner.wire_type == 2:
                try:
                    term = inner.data.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidArgument("search.term: not valid UTF-8") from None
    if term is None:
        return None
    if not term:  # the wording protovalidate gives these two rules
        raise InvalidArgument("search.term: value length must be at least 1 characters [string.min_len]")
    if len(term) > SEARCH_MAX_LEN:
        raise InvalidArgument(f"search.term: value length must be at most {SEARCH_MAX_LEN} characters [string.max_len]")
    return term.strip() or None


NAME_MANAGER_FIELD = 5


def name_manager(request) -> tuple[str, str] | None:
    """GetProviderConfigRequest's `name_manager` as (name, manager); None when absent. Each must be
    at least one character, as OpenTDF's rules say."""
    from host.errors import InvalidArgument

    found = None
    for f in unknown_fields.UnknownFieldSet(request):
        if f.field_number != NAME_MANAGER_FIELD or f.wire_type != 2:
            continue
        parts = {1: "", 2: ""}
        for inner in unknown_fields.UnknownFieldSet(_search_holder(f.data)):
            if inner.field_number in parts and inner.wire_type == 2:
                try:
                    parts[inner.field_number] = inner.data.decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidArgument("name_manager: not valid UTF-8") from None
        found = parts[1], parts[2]
    if found is None:
        return None
    for field, value in zip(("name", "manager"), found):
        if not value:
            raise InvalidArgument(f"name_manager.{field}: value length must be at least 1 characters [string.min_len]")
    return found


def identifies_provider_config(violation, message) -> bool:
    """True when a violation is only GetProviderConfigRequest's "exactly one identifier" rule and
    the request carries `name_manager`, which that rule (from 0.11.0's protos) does not know."""
    proto = violation.proto
    return (isinstance(message, km.GetProviderConfigRequest) and proto.rule_id == "required"
            and [e.field_name for e in proto.field.elements] == ["identifier"]
            and any(f.field_number == NAME_MANAGER_FIELD for f in unknown_fields.UnknownFieldSet(message)))


def with_name_manager(request, name: str, manager: str):
    inner = _length_delimited(1, name.encode("utf-8")) + _length_delimited(2, manager.encode("utf-8"))
    request.MergeFromString(_length_delimited(NAME_MANAGER_FIELD, inner))
    return request


def _search_holder(data: bytes):
    """A message whose unknown fields are `data` (an empty message type of the same pool)."""
    holder = _EMPTY()
    holder.ParseFromString(data)
    return holder


def merge_json(message, text: str) -> None:
    """Carry a JSON body's `search` or `name_manager` over to the message (json_format drops them)."""
    from host.errors import InvalidArgument

    if isinstance(message, km.GetProviderConfigRequest) and "ame" in text:
        try:
            body = json.loads(text)
            value = body.get("nameManager", body.get("name_manager"))
        except (ValueError, AttributeError):
            return
        if value is None:
            return
        if not isinstance(value, dict) or not all(isinstance(value.get(k, ""), str) for k in ("name", "manager")):
            raise InvalidArgument("malformed JSON body: name_manager must be an object with string name and manager")
        with_name_manager(message, value.get("name", ""), value.get("manager", ""))
        return
    if not isinstance(message, SEARCHABLE) or '"search"' not in text:
        return

    try:
        search = json.loads(text).get("search")
    except (ValueError, AttributeError):
        return
    if search is None:
        return
    if not isinstance(search, dict) or not isinstance(search.get("term", ""), str):
        raise InvalidArgument("malformed JSON body: search must be an object with a string term")
    with_search(message, search.get("term", ""))


# ---- UnsafeUpdateKey --------------------------------------------------------------------

def _build_unsafe_update_key():
    pool = descriptor_pool.Default()
    name = "policy/unsafe/unsafe_update_key_newer.proto"
    try:
        fd = pool.FindFileByName(name)
    except KeyError:
        f = descriptor_pb2.FileDescriptorProto(name=name, package="policy.unsafe", syntax="proto3",
                                               dependency=[objects_pb2.DESCRIPTOR.name])
        T = descriptor_pb2.FieldDescriptorProto
        req = f.message_type.add(name="UnsafeUpdateKeyRequest")
        req.field.add(name="id", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL, json_name="id")
        req.field.add(name="target_key_mode", number=2, type=T.TYPE_ENUM, type_name=".policy.KeyMode",
                      label=T.LABEL_OPTIONAL, json_name="targetKeyMode")
        req.field.add(name="provider_config_id", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL,
                      json_name="providerConfigId")
        resp = f.message_type.add(name="UnsafeUpdateKeyResponse")
        resp.field.add(name="key", number=1, type=T.TYPE_MESSAGE, type_name=".policy.KasKey",
                       label=T.LABEL_OPTIONAL, json_name="key")
        f.message_type.add(name="NewerFieldsEmpty")  # for reading nested unknown fields
        pool.Add(f)
        fd = pool.FindFileByName(name)
    get = message_factory.GetMessageClass
    return (get(fd.message_types_by_name["UnsafeUpdateKeyRequest"]),
            get(fd.message_types_by_name["UnsafeUpdateKeyResponse"]),
            get(fd.message_types_by_name["NewerFieldsEmpty"]))


UnsafeUpdateKeyRequest, UnsafeUpdateKeyResponse, _EMPTY = _build_unsafe_update_key()
UNSAFE_SERVICE_NAME = "policy.unsafe.UnsafeService"
