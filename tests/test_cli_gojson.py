"""host.cli.gojson against what Go's encoding/json prints for the generated OpenTDF structs
(the expectations are worked out by hand from protoc-gen-go's struct tags and encoding/json's rules)."""

from __future__ import annotations

import base64

from google.protobuf import struct_pb2, timestamp_pb2, wrappers_pb2

from host.cli.gojson import dumps, go_camel_case, go_json, status_json
from host.server.protos import common_pb2, kasregistry_pb2 as kr, objects_pb2 as o, selectors_pb2


def test_kas_key_omits_zero_values_and_prints_enums_as_numbers():
    key = o.KasKey(kas_id="k1", kas_uri="https://kas.example", key=o.AsymmetricKey(
        id="a1", key_id="r1", key_algorithm=o.ALGORITHM_RSA_2048, key_status=o.KEY_STATUS_ACTIVE,
        key_mode=o.KEY_MODE_CONFIG_ROOT_KEY, public_key_ctx=o.PublicKeyCtx(pem="UEVN"),
        private_key_ctx=o.PrivateKeyCtx(key_id="root", wrapped_key="d3JhcA=="),
        metadata=common_pb2.Metadata(created_at=timestamp_pb2.Timestamp(seconds=1700000000, nanos=5),
                                     labels={"b": "2", "a": "1"})))
    doc = go_json(key)
    # declaration order (kas_id, key, kas_uri); legacy false and provider_config unset are absent
    assert list(doc) == ["kas_id", "key", "kas_uri"]
    assert doc["key"] == {
        "id": "a1", "key_id": "r1", "key_algorithm": 1, "key_status": 1, "key_mode": 1,
        "public_key_ctx": {"pem": "UEVN"},
        "private_key_ctx": {"key_id": "root", "wrapped_key": "d3JhcA=="},
        "metadata": {"created_at": {"seconds": 1700000000, "nanos": 5}, "labels": {"a": "1", "b": "2"}},
    }
    assert list(doc["key"]["metadata"]["labels"]) == ["a", "b"]  # a Go map: sorted keys


def test_set_empty_message_is_an_empty_object_unset_is_absent():
    key = o.AsymmetricKey(key_id="x")
    key.public_key_ctx.SetInParent()
    key.metadata.created_at.SetInParent()  # the zero Timestamp: {} (seconds/nanos omitempty)
    assert go_json(key) == {"key_id": "x", "public_key_ctx": {}, "metadata": {"created_at": {}}}
    assert dumps(go_json(key)) == '{\n  "key_id": "x",\n  "public_key_ctx": {},\n  "metadata": {\n' \
                                  '    "created_at": {}\n  }\n}'


def test_oneof_is_always_present_under_its_go_name():
    unset = go_json(o.KeyAccessServer(id="i", uri="https://k"))
    assert unset == {"id": "i", "uri": "https://k"}  # public_key (a message pointer) unset: absent
    empty = o.KeyAccessServer(id="i")
    empty.public_key.SetInParent()
    assert go_json(empty) == {"id": "i", "public_key": {"PublicKey": None}}
    remote = go_json(o.KeyAccessServer(uri="https://k", public_key=o.PublicKey(remote="https://r")))
    assert remote == {"uri": "https://k", "public_key": {"PublicKey": {"Remote": "https://r"}}}
    # the member prints even when zero (the wrapper struct's field has no omitempty)
    assert go_json(o.PublicKey(remote="")) == {"PublicKey": {"Remote": ""}}
    cached = go_json(o.PublicKey(cached=o.KasPublicKeySet(keys=[o.KasPublicKey(kid="r1", alg=1)])))
    assert cached == {"PublicKey": {"Cached": {"keys": [{"kid": "r1", "alg": 1}]}}}


def test_oneof_sits_at_its_first_members_position():
    req = kr.ListKeysRequest(key_algorithm=o.ALGORITHM_EC_P256, pagination=selectors_pb2.PageRequest(limit=5))
    assert list(go_json(req)) == ["key_algorithm", "KasFilter", "pagination"]
    assert go_json(req)["KasFilter"] is None
    req.kas_name = "n"
    assert go_json(req)["KasFilter"] == {"KasName": "n"}


def test_proto3_optional_is_a_pointer_printed_when_set_even_false():
    req = kr.ListKeysRequest()
    assert "legacy" not in go_json(req)
    req.legacy = False
    assert go_json(req)["legacy"] is False
    assert "_legacy" not in go_json(req) and "XLegacy" not in go_json(req)


def test_list_response_empty_repeated_absent_and_pagination_zeroes_absent():
    resp = kr.ListKeysResponse(pagination=selectors_pb2.PageResponse(total=0))
    resp.pagination.SetInParent()
    assert go_json(resp) == {"pagination": {}}
    resp = kr.ListKeysResponse(kas_keys=[o.KasKey(kas_id="a")],
                               pagination=selectors_pb2.PageResponse(current_offset=0, next_offset=1, total=2))
    assert go_json(resp) == {"kas_keys": [{"kas_id": "a"}], "pagination": {"next_offset": 1, "total": 2}}


def test_bytes_are_standard_base64_and_int64_numbers():
    pc = o.KeyProviderConfig(id="p", config_json=b'{"a":1}\xff')
    assert go_json(pc) == {"id": "p", "config_json": base64.b64encode(b'{"a":1}\xff').decode()}
    assert go_json(timestamp_pb2.Timestamp(seconds=2**40)) == {"seconds": 2**40}
    assert dumps(go_json(timestamp_pb2.Timestamp(seconds=2**40))) == '{\n  "seconds": 1099511627776\n}'


def test_well_known_wrappers_and_struct_are_their_go_structs():
    assert go_json(wrappers_pb2.StringValue(value="v")) == {"value": "v"}
    assert go_json(wrappers_pb2.BoolValue(value=False)) == {}
    s = struct_pb2.Struct()
    s.update({"n": 1.5, "s": "x"})
    assert go_json(s) == {"fields": {"n": {"Kind": {"NumberValue": 1.5}}, "s": {"Kind": {"StringValue": "x"}}}}


def test_text_is_go_encoder_text():
    assert dumps(None) == "null"
    assert dumps({}) == "{}"
    assert dumps({"a": [], "b": [1, {"c": True}]}) == '{\n  "a": [],\n  "b": [\n    1,\n    {\n      "c": true\n' \
                                                      '    }\n  ]\n}'
    # SetEscapeHTML(false): <>& as they are; controls, U+2028/9 escaped; non-ASCII as UTF-8
    assert dumps("<a&b>\u00e9\n\t\x01\u2028") == '"<a&b>\u00e9\\n\\t\\u0001\\u2028"'
    assert dumps("bad\udcff") == '"bad\ufffd"'  # an undecodable argv byte: Go's U+FFFD
    doc = go_json(o.KasPublicKey(kid="k"))
    assert dumps(doc) == '{\n  "kid": "k"\n}'


def test_floats_as_go_formats_them():
    from host.cli.gojson import _Float

    assert dumps(1.0) == "1" and dumps(2.5) == "2.5" and dumps(1e-5) == "0.00001"
    assert dumps(1e21) == "1e+21" and dumps(1e-7) == "1e-7"
    assert dumps(_Float(0.1, 32)) == "0.1"


def test_go_camel_case_is_protoc_gen_go_naming():
    assert go_camel_case("public_key") == "PublicKey"
    assert go_camel_case("kas_filter") == "KasFilter"
    assert go_camel_case("remote") == "Remote"
    assert go_camel_case("_legacy") == "XLegacy"
    assert go_camel_case("key_v2") == "KeyV2" and go_camel_case("a_1") == "A_1"


def test_status_json_is_otdfctls_message_map():
    assert dumps(status_json("ERROR", 'required flag(s) "key" not set')) == \
        '{\n  "message": "required flag(s) \\"key\\" not set",\n  "status": "ERROR"\n}'
