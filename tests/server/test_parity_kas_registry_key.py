"""OpenTDF parity, part 2 of kas_registry_key_test.go: the peer cases test_opentdf_parity.py does
not translate yet, one test per case, named after the peer's Go method.

OpenTDF runs these against its database layer with fixture rows; we run them against a served
`platform serve` through otdf-python's generated clients (JSON and binary proto), building the
fixture state through the API first. Where the peer checks a sentinel database error we check the
Connect code OpenTDF's StatusifyError gives it (ErrNotFound -> not_found, ErrUUIDInvalid,
ErrUnknownSelectIdentifier, ErrSelectIdentifierInvalid -> invalid_argument, ...).

UnsafeUpdateKey and ListKeys `search`, newer than otdf-python 0.11.0's protos, are served all the
same (host.server.newer_fields): the tests send them by hand. Sort by key status (also newer) is
not, nor are attributes and namespaces (so key mappings, and a rotation's mapped resources, are
always empty): those cases are `..._DeliberateDifference` tests asserting what we do instead, and
the README's parity section lists them.
"""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import pytest
from connectrpc.code import Code
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import json_format

from host.server.protos import common_pb2, kasregistry_pb2 as kr
from host.server.protos import key_management_pb2 as km, objects_pb2, selectors_pb2
from tests.server.test_api import create_kas, ec_pair, rsa_pair, uniq, wrap_with_root
from tests.server.test_opentdf_parity import (ASC, DESC, EC, LOCAL, PROVIDER, PUBLIC_ONLY, RSA, b64, code_of,
                                              new_key, unsafe_client, unsafe_pb2)

EC384 = objects_pb2.ALGORITHM_EC_P384
REMOTE = objects_pb2.KEY_MODE_REMOTE
ACTIVE, ROTATED = objects_pb2.KEY_STATUS_ACTIVE, objects_pb2.KEY_STATUS_ROTATED
SORT = {"key_id": kr.SORT_KAS_KEYS_TYPE_KEY_ID, "created_at": kr.SORT_KAS_KEYS_TYPE_CREATED_AT,
        "updated_at": kr.SORT_KAS_KEYS_TYPE_UPDATED_AT, "unspecified": kr.SORT_KAS_KEYS_TYPE_UNSPECIFIED}
KEY_STATUS_SORT = 4  # OpenTDF's SORT_KAS_KEYS_TYPE_KEY_STATUS: newer than the 0.11.0 protos
WIRE = pytest.mark.parametrize("proto_json", [True, False], ids=["json", "proto"])


# ---- helpers ------------------------------------------------------------------------------

def pair(alg):
    if alg == RSA:
        return rsa_pair()
    if alg == EC:
        return ec_pair()
    key = ec.generate_private_key(ec.SECP384R1())
    return (key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()),
            key.public_key().public_bytes(serialization.Encoding.PEM,
                                          serialization.PublicFormat.SubjectPublicKeyInfo).decode())


def request(server, kas_id, alg=RSA, kid=None, **over):
    """A CreateKeyRequest in OpenTDF's wire form (base64 PEM, root-wrapped private key)."""
    private, public = pair(alg)
    fields = dict(kas_id=kas_id, key_id=kid or uniq("k"), key_algorithm=alg, key_mode=LOCAL,
                  public_key_ctx=objects_pb2.PublicKeyCtx(pem=b64(public)),
                  private_key_ctx=objects_pb2.PrivateKeyCtx(key_id="root", wrapped_key=wrap_with_root(server, private)))
    fields.update(over)
    return kr.CreateKeyRequest(**fields)


def create(c, server, req):
    return c.kas_registry.create_key(req, headers=server.admin()).kas_key


def provider_config(c, server, prefix="pc"):
    return c.km.create_provider_config(km.CreateProviderConfigRequest(
        name=uniq(prefix), manager="opentdf.io/basic", config_json=b'{"some": "value"}'),
        headers=server.admin()).provider_config


class Fixture:
    """OpenTDF's key_access_server_1 with kas_key_1 (RSA-2048, with a provider config) and
    kas_key_2 (EC P-256, local): built through the API."""

    def __init__(self, c, server):
        self.kas = create_kas(c, server)
        self.pc = provider_config(c, server, "fixture")
        self.rsa_req = request(server, self.kas.id, RSA, kid=uniq("rsa_key"), key_mode=PROVIDER,
                               provider_config_id=self.pc.id)
        self.rsa = create(c, server, self.rsa_req)
        self.ec_req = request(server, self.kas.id, EC, kid=uniq("ec_key"))
        self.ec = create(c, server, self.ec_req)
        self.requests = {self.rsa.key.id: self.rsa_req, self.ec.key.id: self.ec_req}


def check_as_created(got, req, kas_id, provider_config_id=None):
    """validatePrivatePublicCtx and the provider-config check of the peer."""
    assert got.kas_id == kas_id
    assert got.key.private_key_ctx.key_id == req.private_key_ctx.key_id
    assert got.key.private_key_ctx.wrapped_key == req.private_key_ctx.wrapped_key
    assert got.key.public_key_ctx.pem == req.public_key_ctx.pem
    if provider_config_id is None:
        assert not got.key.HasField("provider_config")
    else:
        assert got.key.provider_config.id == provider_config_id


def check_fixture_listing(resp, fx: Fixture, expected_ids):
    """validateListKeysResponse: every listed key is a fixture key, as created."""
    assert [k.key.id for k in resp.kas_keys] == expected_ids
    assert resp.pagination.total == len(expected_ids)
    for key in resp.kas_keys:
        check_as_created(key, fx.requests[key.key.id], fx.kas.id,
                         fx.pc.id if key.key.id == fx.rsa.key.id else None)


def sort_keys(c, server, kid_prefixes):
    """createSortTestKasKeys: a new KAS with one key per prefix; (key ids in creation order, kas)."""
    kas = create_kas(c, server)
    ids = [create(c, server, request(server, kas.id, kid=uniq(p))).key.id for p in kid_prefixes]
    return ids, kas


def listed(c, server, kas, field=None, direction=None):
    sort = [] if field is None else [kr.KasKeysSort(field=field, direction=direction)]
    return [k.key.id for k in c.kas_registry.list_keys(kr.ListKeysRequest(kas_id=kas.id, sort=sort),
                                                       headers=server.admin()).kas_keys]


def clear_base_key(c, server):
    """No base key (the peer's cleanupKeys empties base_keys): the unsafe delete of the base key's
    key takes the base key with it (our documented difference)."""
    h = server.admin()
    resp = c.kas_registry.get_base_key(kr.GetBaseKeyRequest(), headers=h)
    if resp.HasField("base_key"):
        key = c.kas_registry.get_key(kr.GetKeyRequest(key=kr.KasKeyIdentifier(
            kas_id=resp.base_key.kas_id, kid=resp.base_key.public_key.kid)), headers=h).kas_key
        unsafe_client(server, True).unsafe_delete_kas_key(unsafe_pb2.UnsafeDeleteKasKeyRequest(
            id=key.key.id, kas_uri=key.kas_uri, kid=key.key.key_id), headers=h)
    assert not c.kas_registry.get_base_key(kr.GetBaseKeyRequest(), headers=h).HasField("base_key")


def raw(server, proto_json, procedure, message=None, extra_json=None, extra_bytes=b""):
    """A Connect unary call by hand, for what the 0.11.0 generated clients cannot send."""
    if proto_json:
        body = json_format.MessageToDict(message) if message is not None else {}
        body.update(extra_json or {})
        return httpx.post(f"{server.url}/{procedure}", json=body,
                          headers={**server.admin(), "content-type": "application/json"})
    data = (message.SerializeToString() if message is not None else b"") + extra_bytes
    return httpx.post(f"{server.url}/{procedure}", content=data,
                      headers={**server.admin(), "content-type": "application/proto"})


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def list_keys_with_search(server, proto_json, term, **fields) -> kr.ListKeysResponse:
    """ListKeys carrying OpenTDF's `search` (field 12, policy.Search{term = 1}), which the 0.11.0
    ListKeysRequest lacks: JSON names it, binary proto carries it as the peer's encoding would."""
    req = kr.ListKeysRequest(**fields)
    term_bytes = term.encode()
    search = b"\x0a" + _varint(len(term_bytes)) + term_bytes
    resp = raw(server, proto_json, "policy.kasregistry.KeyAccessServerRegistryService/ListKeys", req,
               extra_json={"search": {"term": term}}, extra_bytes=b"\x62" + _varint(len(search)) + search)
    assert resp.status_code == 200, resp.text
    if proto_json:
        return json_format.Parse(resp.text, kr.ListKeysResponse(), ignore_unknown_fields=True)
    return kr.ListKeysResponse.FromString(resp.content)


def assert_not_served(server, proto_json, procedure):
    resp = raw(server, proto_json, procedure)
    assert resp.status_code == 404 and resp.json()["code"] == "unimplemented", resp.text


def assert_no_key_assignments(server, proto_json):
    """Why every key mapping is empty here: there are no namespaces, attributes or values to map."""
    for procedure in ("policy.namespaces.NamespaceService/AssignPublicKeyToNamespace",
                      "policy.attributes.AttributesService/AssignPublicKeyToAttribute",
                      "policy.attributes.AttributesService/AssignPublicKeyToValue"):
        assert_not_served(server, proto_json, procedure)


def no_mappings(c, server, req):
    resp = c.kas_registry.list_key_mappings(req, headers=server.admin())
    assert list(resp.key_mappings) == []
    offset = req.pagination.offset if req.HasField("pagination") else 0
    assert (resp.pagination.total, resp.pagination.current_offset, resp.pagination.next_offset) == (0, offset, 0)
    return resp


# ---- get --------------------------------------------------------------------------------------

def test_Test_GetKasKey_InvalidIdentifier_Fail(server, clients):
    # OpenTDF: ErrUnknownSelectIdentifier -> invalid_argument. No identifier at all, and an empty id.
    for req in (kr.GetKeyRequest(), kr.GetKeyRequest(id="")):
        assert code_of(clients.kas_registry.get_key, req, headers=server.admin())[0] == Code.INVALID_ARGUMENT


def test_Test_GetKasKeyById_Success(server, clients):
    fx = Fixture(clients, server)
    got = clients.kas_registry.get_key(kr.GetKeyRequest(id=fx.rsa.key.id), headers=server.admin()).kas_key
    assert got.key.id == fx.rsa.key.id
    check_as_created(got, fx.rsa_req, fx.kas.id, fx.pc.id)
    got = clients.kas_registry.get_key(kr.GetKeyRequest(id=fx.ec.key.id), headers=server.admin()).kas_key
    check_as_created(got, fx.ec_req, fx.kas.id)


def test_Test_GetKasKeyByKey_NoKeyIdInKas_Fail(server, clients):
    fx = Fixture(clients, server)
    code, _ = code_of(clients.kas_registry.get_key, kr.GetKeyRequest(
        key=kr.KasKeyIdentifier(kas_id=fx.kas.id, kid="a-random-key-id")), headers=server.admin())
    assert code == Code.NOT_FOUND


def test_Test_GetKasKeyByKeyId_Success(server, clients):
    fx = Fixture(clients, server)
    got = clients.kas_registry.get_key(kr.GetKeyRequest(
        key=kr.KasKeyIdentifier(kas_id=fx.kas.id, kid=fx.rsa.key.key_id)), headers=server.admin()).kas_key
    assert got.key.id == fx.rsa.key.id
    check_as_created(got, fx.rsa_req, fx.kas.id, fx.pc.id)


def test_Test_GetKasKey_WithKasUri_Success(server, clients):
    fx = Fixture(clients, server)
    got = clients.kas_registry.get_key(kr.GetKeyRequest(
        key=kr.KasKeyIdentifier(uri=fx.kas.uri, kid=fx.rsa.key.key_id)), headers=server.admin()).kas_key
    assert got.key.id == fx.rsa.key.id
    check_as_created(got, fx.rsa_req, fx.kas.id, fx.pc.id)


# ---- unsafe update (newer than the 0.11.0 protos: sent by hand) -------------------------------

UNSAFE_UPDATE = "policy.unsafe.UnsafeService/UnsafeUpdateKey"
MODE_NAMES = {REMOTE: "KEY_MODE_REMOTE", PUBLIC_ONLY: "KEY_MODE_PUBLIC_KEY_ONLY"}


def _string_field(number: int, value: str) -> bytes:
    data = value.encode()
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def unsafe_update(server, proto_json, key_id, target_mode=None, provider_config_id=None):
    """OpenTDF's UnsafeUpdateKeyRequest {id = 1; KeyMode target_key_mode = 2; provider_config_id = 3}
    by hand; returns (http response, the answered KasKey or None). UnsafeUpdateKeyResponse is
    {KasKey key = 1}, the shape of UnsafeDeleteKasKeyResponse, which parses it."""
    if proto_json:
        body = {"id": key_id}
        if target_mode is not None:
            body["targetKeyMode"] = MODE_NAMES[target_mode]
        if provider_config_id is not None:
            body["providerConfigId"] = provider_config_id
        resp = raw(server, True, UNSAFE_UPDATE, extra_json=body)
        parse = lambda: json_format.Parse(resp.text, unsafe_pb2.UnsafeDeleteKasKeyResponse(),  # noqa: E731
                                          ignore_unknown_fields=True)
    else:
        data = _string_field(1, key_id)
        if target_mode is not None:
            data += _varint(2 << 3) + _varint(target_mode)
        if provider_config_id is not None:
            data += _string_field(3, provider_config_id)
        resp = raw(server, False, UNSAFE_UPDATE, extra_bytes=data)
        parse = lambda: unsafe_pb2.UnsafeDeleteKasKeyResponse.FromString(resp.content)  # noqa: E731
    return resp, (parse().key if resp.status_code == 200 else None)


def _public_only_key(c, server, kas_id):
    _, public = rsa_pair()
    return create(c, server, kr.CreateKeyRequest(kas_id=kas_id, key_id=str(uuid.uuid4()), key_algorithm=RSA,
                                                 key_mode=PUBLIC_ONLY,
                                                 public_key_ctx=objects_pb2.PublicKeyCtx(pem=b64(public))))


def _remote_key(c, server, kas_id, pc_id):
    _, public = rsa_pair()
    return create(c, server, kr.CreateKeyRequest(kas_id=kas_id, key_id=str(uuid.uuid4()), key_algorithm=RSA,
                                                 key_mode=REMOTE, provider_config_id=pc_id,
                                                 public_key_ctx=objects_pb2.PublicKeyCtx(pem=b64(public))))


def _check_updated(c, server, created, updated, mode, pc):
    """The key as created with only its mode, provider config and updated_at changed; GetKey agrees."""
    expected = objects_pb2.KasKey()
    expected.CopyFrom(created)
    expected.key.key_mode = mode
    expected.key.ClearField("provider_config")
    expected.key.metadata.updated_at.CopyFrom(updated.key.metadata.updated_at)
    got = c.kas_registry.get_key(kr.GetKeyRequest(id=created.key.id), headers=server.admin()).kas_key
    for answer in (updated, got):
        if pc is None:
            assert not answer.key.HasField("provider_config")
        else:
            embedded = answer.key.provider_config
            assert (embedded.id, embedded.name, embedded.manager) == (pc.id, pc.name, pc.manager)
        bare = objects_pb2.KasKey()
        bare.CopyFrom(answer)
        bare.key.ClearField("provider_config")
        assert bare == expected


def _check_refused(c, server, resp, created, code):
    assert resp.json()["code"] == code, resp.text
    assert c.kas_registry.get_key(kr.GetKeyRequest(id=created.key.id), headers=server.admin()).kas_key == created


@WIRE
def test_Test_UnsafeUpdateKey_PublicKeyOnlyToRemote_Success(server, proto_json):
    c = server.clients(proto_json)
    pc = provider_config(c, server, "unsafe-update-key-remote")
    key = _public_only_key(c, server, create_kas(c, server).id)
    resp, updated = unsafe_update(server, proto_json, key.key.id, REMOTE, pc.id)
    assert resp.status_code == 200, resp.text
    _check_updated(c, server, key, updated, REMOTE, pc)


@WIRE
def test_Test_UnsafeUpdateKey_RemoteToPublicKeyOnly_Success(server, proto_json):
    c = server.clients(proto_json)
    pc = provider_config(c, server, "unsafe-update-key-public")
    key = _remote_key(c, server, create_kas(c, server).id, pc.id)
    resp, updated = unsafe_update(server, proto_json, key.key.id, PUBLIC_ONLY)
    assert resp.status_code == 200, resp.text
    _check_updated(c, server, key, updated, PUBLIC_ONLY, None)


@WIRE
def test_Test_UnsafeUpdateKey_ChangeProviderConfig_Success(server, proto_json):
    c = server.clients(proto_json)
    original = provider_config(c, server, "unsafe-update-key-original-provider")
    moved_to = provider_config(c, server, "unsafe-update-key-updated-provider")
    key = _remote_key(c, server, create_kas(c, server).id, original.id)
    resp, updated = unsafe_update(server, proto_json, key.key.id, provider_config_id=moved_to.id)
    assert resp.status_code == 200, resp.text
    _check_updated(c, server, key, updated, REMOTE, moved_to)


@WIRE
def test_Test_UnsafeUpdateKey_NonexistentProviderConfig_Fails(server, proto_json):
    c = server.clients(proto_json)
    key = _public_only_key(c, server, create_kas(c, server).id)
    resp, _ = unsafe_update(server, proto_json, key.key.id, REMOTE, str(uuid.uuid4()))
    _check_refused(c, server, resp, key, "not_found")  # ErrUnsafeUpdateKeyProviderConfigNotFound


@WIRE
def test_Test_UnsafeUpdateKey_UnsupportedExistingKeyMode_Fails(server, proto_json):
    c = server.clients(proto_json)
    pc = provider_config(c, server, "unsafe-update-key-unsupported-mode")
    key = create(c, server, request(server, create_kas(c, server).id, kid=str(uuid.uuid4())))
    resp, _ = unsafe_update(server, proto_json, key.key.id, REMOTE, pc.id)
    _check_refused(c, server, resp, key, "invalid_argument")  # ErrUnsafeUpdateKeyExistingModeUnsupported


# ---- list -------------------------------------------------------------------------------------

def test_Test_ListKeys_NoKasFilter_Success(server, clients):
    fx = Fixture(clients, server)
    resp = clients.kas_registry.list_keys(kr.ListKeysRequest(), headers=server.admin())
    assert resp.kas_keys and resp.pagination.total >= 2
    everything = [k.key.id for k in clients.kas_registry.list_keys(kr.ListKeysRequest(
        pagination=selectors_pb2.PageRequest(limit=resp.pagination.total)), headers=server.admin()).kas_keys]
    assert {fx.rsa.key.id, fx.ec.key.id} <= set(everything)


def test_Test_ListKeys_KasID_Success(server, clients):
    fx = Fixture(clients, server)
    check_fixture_listing(clients.kas_registry.list_keys(kr.ListKeysRequest(kas_id=fx.kas.id),
                                                         headers=server.admin()), fx, [fx.ec.key.id, fx.rsa.key.id])


def test_Test_ListKeys_KasName_Success(server, clients):
    fx = Fixture(clients, server)
    check_fixture_listing(clients.kas_registry.list_keys(kr.ListKeysRequest(kas_name=fx.kas.name),
                                                         headers=server.admin()), fx, [fx.ec.key.id, fx.rsa.key.id])


def test_Test_ListKeys_KasURI_Success(server, clients):
    fx = Fixture(clients, server)
    check_fixture_listing(clients.kas_registry.list_keys(kr.ListKeysRequest(kas_uri=fx.kas.uri),
                                                         headers=server.admin()), fx, [fx.ec.key.id, fx.rsa.key.id])


def test_Test_ListKeys_FilterAlgo_NoKeysWithAlgo_Success(server, clients):
    fx = Fixture(clients, server)
    resp = clients.kas_registry.list_keys(kr.ListKeysRequest(
        kas_id=fx.kas.id, key_algorithm=objects_pb2.ALGORITHM_EC_P521), headers=server.admin())
    assert list(resp.kas_keys) == [] and resp.pagination.total == 0


def test_Test_ListKeys_FilterAlgo_TwoKeys_Success(server, clients):
    fx = Fixture(clients, server)
    check_fixture_listing(clients.kas_registry.list_keys(kr.ListKeysRequest(kas_uri=fx.kas.uri, key_algorithm=RSA),
                                                         headers=server.admin()), fx, [fx.rsa.key.id])


def test_Test_ListKeys_KasID_Limit_Success(server, clients):
    fx = Fixture(clients, server)
    resp = clients.kas_registry.list_keys(kr.ListKeysRequest(
        kas_uri=fx.kas.uri, key_algorithm=RSA, pagination=selectors_pb2.PageRequest(limit=1)), headers=server.admin())
    assert [k.key.id for k in resp.kas_keys] == [fx.rsa.key.id]
    assert (resp.pagination.total, resp.pagination.current_offset, resp.pagination.next_offset) == (1, 0, 0)
    # With both keys, a page of one points at the next.
    both = clients.kas_registry.list_keys(kr.ListKeysRequest(
        kas_id=fx.kas.id, pagination=selectors_pb2.PageRequest(limit=1)), headers=server.admin())
    assert len(both.kas_keys) == 1 and (both.pagination.total, both.pagination.next_offset) == (2, 1)


# ---- search (ListKeysRequest.search is newer than the 0.11.0 protos: sent by hand) ----------

def _search_kas(c, server, kids):
    """createListKeysSearchTestKeys: a new KAS with a key per kid; (kas, {kid: key id})."""
    kas = create_kas(c, server)
    return kas, {kid: create(c, server, request(server, kas.id, kid=kid)).key.id for kid in kids}


@WIRE
def test_Test_ListKeys_SearchByKeyID_Succeeds(server, proto_json):
    c = server.clients(proto_json)
    token = "alpha-" + uuid.uuid4().hex[:12]
    kas, ids = _search_kas(c, server, ["SEARCH-KEY-" + token, "other-beta-" + uuid.uuid4().hex[:8]])
    resp = list_keys_with_search(server, proto_json, token.upper(), kas_id=kas.id)  # case-insensitive
    assert [k.key.id for k in resp.kas_keys] == [ids["SEARCH-KEY-" + token]] and resp.pagination.total == 1


@WIRE
def test_Test_ListKeys_SearchCombinesWithFilters_Succeeds(server, proto_json):
    c = server.clients(proto_json)
    token = "combo-" + uuid.uuid4().hex[:12]
    kas, ids = _search_kas(c, server, [token + "-matched"])
    _search_kas(c, server, [token + "-other-kas"])
    resp = list_keys_with_search(server, proto_json, token, kas_id=kas.id)
    assert [k.key.id for k in resp.kas_keys] == [ids[token + "-matched"]] and resp.pagination.total == 1


@WIRE
def test_Test_ListKeys_SearchEmptyQuery_Succeeds(server, proto_json):
    c = server.clients(proto_json)
    kas, ids = _search_kas(c, server, [uniq("search-empty")])
    plain = c.kas_registry.list_keys(kr.ListKeysRequest(kas_id=kas.id), headers=server.admin())
    assert [k.key.id for k in plain.kas_keys] == list(ids.values()) and plain.pagination.total == 1
    # The peer calls its database layer with an empty term, which filters nothing. Served, OpenTDF's
    # field rule (search.term: 1 to 253 characters) refuses an empty term before the query.
    resp = raw(server, proto_json, "policy.kasregistry.KeyAccessServerRegistryService/ListKeys",
               kr.ListKeysRequest(kas_id=kas.id), extra_json={"search": {"term": ""}},
               extra_bytes=b"\x62\x02\x0a\x00")  # search { term: "" }
    assert resp.status_code == 400 and resp.json()["code"] == "invalid_argument", resp.text


@WIRE
def test_Test_ListKeys_SearchTrimsWhitespace_Succeeds(server, proto_json):
    c = server.clients(proto_json)
    kid = uniq("search-space")
    kas, ids = _search_kas(c, server, [kid])
    for term in (" " + kid, kid + " ", " " + kid + " ", " "):  # a blank term is no search
        resp = list_keys_with_search(server, proto_json, term, kas_id=kas.id)
        assert [k.key.id for k in resp.kas_keys] == [ids[kid]] and resp.pagination.total == 1, term


@WIRE
def test_Test_ListKeys_SearchEscapesLikeWildcardLiterals_Succeeds(server, proto_json):
    c = server.clients(proto_json)
    token = "like-" + uuid.uuid4().hex[:12]
    kas, _ = _search_kas(c, server, ["wildcarda-" + token, "wildcardb-" + token])
    for term in ("wildcard_-" + token, "wildcard%-" + token):  # the wildcards are literal characters
        resp = list_keys_with_search(server, proto_json, term, kas_id=kas.id)
        assert list(resp.kas_keys) == [] and resp.pagination.total == 0, term


@WIRE
def test_Test_ListKeys_SearchPaginationAppliesAfterFiltering_Succeeds(server, proto_json):
    c = server.clients(proto_json)
    token = "page-" + uuid.uuid4().hex[:12]
    kas, ids = _search_kas(c, server, ["a-" + token, "b-" + token, "c-" + token, "other-" + uuid.uuid4().hex[:8]])
    by_kid = [kr.KasKeysSort(field=kr.SORT_KAS_KEYS_TYPE_KEY_ID, direction=ASC)]
    first = list_keys_with_search(server, proto_json, token, kas_id=kas.id, sort=by_kid,
                                  pagination=selectors_pb2.PageRequest(limit=2))
    assert [k.key.id for k in first.kas_keys] == [ids["a-" + token], ids["b-" + token]]
    assert (first.pagination.total, first.pagination.next_offset) == (3, 2)
    second = list_keys_with_search(server, proto_json, token, kas_id=kas.id, sort=by_kid,
                                   pagination=selectors_pb2.PageRequest(limit=2, offset=2))
    assert [k.key.id for k in second.kas_keys] == [ids["c-" + token]]
    assert (second.pagination.total, second.pagination.current_offset, second.pagination.next_offset) == (3, 2, 0)


# ---- rotate -----------------------------------------------------------------------------------

def _keys_for_rotate(c, server, kas_id):
    """setupKeysForRotate: an EC P-384 key to rotate and an EC P-256 key left alone."""
    rotate = create(c, server, request(server, kas_id, EC384, kid=uniq("original_key_id_to_rotate")))
    keep = create(c, server, request(server, kas_id, EC, kid=uniq("second_original_key_id")))
    return rotate, keep


def _check_rotated_in(resp, nk, rotated_out_id):
    new = resp.kas_key.key
    assert (new.key_id, new.key_algorithm, new.key_mode) == (nk.key_id, nk.algorithm, nk.key_mode)
    assert new.public_key_ctx.pem == nk.public_key_ctx.pem
    assert new.private_key_ctx.key_id == nk.private_key_ctx.key_id
    assert new.private_key_ctx.wrapped_key == nk.private_key_ctx.wrapped_key
    assert new.key_status == ACTIVE
    rr = resp.rotated_resources
    assert rr.rotated_out_key.key.id == rotated_out_id and rr.rotated_out_key.key.key_status == ROTATED
    return rr


def _rotate_with_mappings_not_served(server, proto_json):
    c, h = server.clients(proto_json), server.admin()
    kas = create_kas(c, server)
    rotate, keep = _keys_for_rotate(c, server, kas.id)
    assert_no_key_assignments(server, proto_json)  # the peer maps namespaces, attributes and values here
    nk = new_key(server, uniq("new_key_id"))
    resp = c.kas_registry.rotate_key(kr.RotateKeyRequest(id=rotate.key.id, new_key=nk), headers=h)
    rr = _check_rotated_in(resp, nk, rotate.key.id)
    assert (list(rr.attribute_definition_mappings), list(rr.attribute_value_mappings),
            list(rr.namespace_mappings)) == ([], [], [])
    assert c.kas_registry.get_key(kr.GetKeyRequest(id=rotate.key.id), headers=h).kas_key.key.key_status == ROTATED
    assert c.kas_registry.get_key(kr.GetKeyRequest(id=keep.key.id), headers=h).kas_key.key.key_status == ACTIVE


@WIRE
def test_Test_RotateKey_Multiple_Attributes_Values_Namespaces_Success_DeliberateDifference(server, proto_json):
    _rotate_with_mappings_not_served(server, proto_json)


@WIRE
def test_Test_RotateKey_Two_Attribute_Two_Namespace_0_AttributeValue_Success_DeliberateDifference(server, proto_json):
    _rotate_with_mappings_not_served(server, proto_json)


def test_Test_RotateKey_NoAttributeKeyMapping_Success(server, clients):
    c, h = clients, server.admin()
    kas = create_kas(c, server)
    rotate, keep = _keys_for_rotate(c, server, kas.id)
    clear_base_key(c, server)
    nk = new_key(server, uniq("new_key_id"))
    resp = c.kas_registry.rotate_key(kr.RotateKeyRequest(id=rotate.key.id, new_key=nk), headers=h)
    rr = _check_rotated_in(resp, nk, rotate.key.id)
    assert (list(rr.attribute_definition_mappings), list(rr.attribute_value_mappings),
            list(rr.namespace_mappings)) == ([], [], [])
    assert c.kas_registry.get_key(kr.GetKeyRequest(id=rotate.key.id), headers=h).kas_key.key.key_status == ROTATED
    assert not c.kas_registry.get_base_key(kr.GetBaseKeyRequest(), headers=h).HasField("base_key")


# ---- key mappings (attributes and namespaces are not served: every key maps nothing) ---------

def test_Test_ListKeyMappings_OrdersByCreatedAt_Succeeds_DeliberateDifference(server, clients):
    first = create(clients, server, request(server, create_kas(clients, server).id))
    second = create(clients, server, request(server, create_kas(clients, server).id))
    no_mappings(clients, server, kr.ListKeyMappingsRequest())
    for key in (first, second):
        no_mappings(clients, server, kr.ListKeyMappingsRequest(id=key.key.id))


def test_Test_ListKeyMappings_ByID_Invalid_UUID_Fail(server, clients):
    code, _ = code_of(clients.kas_registry.list_key_mappings, kr.ListKeyMappingsRequest(id="non_existent_key_id"),
                      headers=server.admin())
    assert code == Code.INVALID_ARGUMENT  # ErrUUIDInvalid


@WIRE
def test_Test_ListKeyMappings_ByID_OneAttrValue_Success_DeliberateDifference(server, proto_json):
    c = server.clients(proto_json)
    key = create(c, server, request(server, create_kas(c, server).id))
    assert_no_key_assignments(server, proto_json)
    no_mappings(c, server, kr.ListKeyMappingsRequest(id=key.key.id))


def test_Test_ListKeyMappings_By_Key_No_Kas_Identifier_Fail(server, clients):
    code, _ = code_of(clients.kas_registry.list_key_mappings, kr.ListKeyMappingsRequest(
        key=kr.KasKeyIdentifier(kid="non_existent_key_id")), headers=server.admin())
    assert code == Code.INVALID_ARGUMENT  # ErrUnknownSelectIdentifier


def test_Test_ListKeyMappings_By_Key_No_Key_Id_With_Kas_Identifier_Fail(server, clients):
    for identifier in (kr.KasKeyIdentifier(uri="non_existent_key_uri"),
                       kr.KasKeyIdentifier(uri="https://no-key-id.example.com")):
        code, _ = code_of(clients.kas_registry.list_key_mappings, kr.ListKeyMappingsRequest(key=identifier),
                          headers=server.admin())
        assert code == Code.INVALID_ARGUMENT  # ErrSelectIdentifierInvalid


def test_Test_ListKeyMappings_By_Key_Success_DeliberateDifference(server, clients):
    c = clients
    kas = create_kas(c, server)
    key = create(c, server, request(server, kas.id))
    create(c, server, request(server, kas.id, kid=uniq("second-kas-key")))
    for identifier in (kr.KasKeyIdentifier(kas_id=kas.id, kid=key.key.key_id),
                       kr.KasKeyIdentifier(uri=kas.uri, kid=key.key.key_id),
                       kr.KasKeyIdentifier(name=kas.name, kid=key.key.key_id)):
        no_mappings(c, server, kr.ListKeyMappingsRequest(key=identifier))


def test_Test_ListKeyMappings_SameKeyId_DifferentKas_Success_DeliberateDifference(server, clients):
    c = clients
    key = create(c, server, request(server, create_kas(c, server).id))
    other_kas = create_kas(c, server)
    create(c, server, request(server, other_kas.id, kid=key.key.key_id))  # the same key id on another KAS
    no_mappings(c, server, kr.ListKeyMappingsRequest(key=kr.KasKeyIdentifier(kas_id=key.kas_id, kid=key.key.key_id)))
    no_mappings(c, server, kr.ListKeyMappingsRequest(key=kr.KasKeyIdentifier(kas_id=other_kas.id,
                                                                             kid=key.key.key_id)))


def test_Test_ListKeyMappings_Multiple_Keys_Pagination_Success_DeliberateDifference(server, clients):
    for _ in range(2):
        create(clients, server, request(server, create_kas(clients, server).id))
    no_mappings(clients, server, kr.ListKeyMappingsRequest())
    no_mappings(clients, server, kr.ListKeyMappingsRequest(pagination=selectors_pb2.PageRequest(limit=1)))
    no_mappings(clients, server, kr.ListKeyMappingsRequest(pagination=selectors_pb2.PageRequest(limit=1, offset=1)))


@WIRE
def test_Test_ListKeyMappings_Multiple_Mixed_Mappings_DeliberateDifference(server, proto_json):
    c = server.clients(proto_json)
    for _ in range(3):
        create(c, server, request(server, create_kas(c, server).id))
    assert_no_key_assignments(server, proto_json)
    no_mappings(c, server, kr.ListKeyMappingsRequest())


def test_Test_ListKeyMappings_AllParameterCombinations(server, clients):
    fx = Fixture(clients, server)
    h = server.admin()
    for req in (kr.ListKeyMappingsRequest(),
                kr.ListKeyMappingsRequest(key=kr.KasKeyIdentifier(uri=fx.kas.uri, kid=fx.rsa.key.key_id)),
                kr.ListKeyMappingsRequest(key=kr.KasKeyIdentifier(kas_id=fx.kas.id, kid=fx.rsa.key.key_id))):
        resp = clients.kas_registry.list_key_mappings(req, headers=h)
        assert resp.HasField("pagination")


# ---- sort -------------------------------------------------------------------------------------

def test_Test_ListKeys_SortByCreatedAt_DESC(server, clients):
    ids, kas = sort_keys(clients, server, ["createddesc-kk-0", "createddesc-kk-1", "createddesc-kk-2"])
    assert listed(clients, server, kas, SORT["created_at"], DESC) == ids[::-1]


def test_Test_ListKeys_SortByUpdatedAt_ASC(server, clients):
    ids, kas = sort_keys(clients, server, ["updasc-kk-0", "updasc-kk-1", "updasc-kk-2"])
    clients.kas_registry.update_key(kr.UpdateKeyRequest(
        id=ids[2], metadata=common_pb2.MetadataMutable(labels={"updated": "true"}),
        metadata_update_behavior=common_pb2.METADATA_UPDATE_ENUM_REPLACE), headers=server.admin())
    assert listed(clients, server, kas, SORT["updated_at"], ASC) == ids
    # and the other way round, updating the first key instead (SortByUpdatedAt_DESC's shape)
    clients.kas_registry.update_key(kr.UpdateKeyRequest(
        id=ids[0], metadata=common_pb2.MetadataMutable(labels={"updated": "again"}),
        metadata_update_behavior=common_pb2.METADATA_UPDATE_ENUM_REPLACE), headers=server.admin())
    assert listed(clients, server, kas, SORT["updated_at"], ASC) == [ids[1], ids[2], ids[0]]


def _one_key_per_status(c, server):
    """rotateOneSortTestKey: one ROTATED key and the ACTIVE key rotated in; ([rotated, active], kas)."""
    ids, kas = sort_keys(c, server, ["status-kk-0"])
    rotated = c.kas_registry.rotate_key(kr.RotateKeyRequest(id=ids[0], new_key=new_key(server)),
                                        headers=server.admin())
    assert rotated.kas_key.key.key_status == ACTIVE
    return [ids[0], rotated.kas_key.key.id], kas


def _sorted_by_status(c, server, direction):
    (rotated, active), kas = _one_key_per_status(c, server)
    keys = c.kas_registry.list_keys(kr.ListKeysRequest(
        kas_id=kas.id, sort=[kr.KasKeysSort(field=KEY_STATUS_SORT, direction=direction)]),
        headers=server.admin()).kas_keys
    return [k.key.id for k in keys], rotated, active


def test_Test_ListKeys_SortByKeyStatus_ASC(server, clients):
    ids, rotated, active = _sorted_by_status(clients, server, ASC)
    assert ids == [active, rotated]  # ACTIVE before ROTATED, by the status names


def test_Test_ListKeys_SortByKeyStatus_DESC(server, clients):
    ids, rotated, active = _sorted_by_status(clients, server, DESC)
    assert ids == [rotated, active]


def _db_path(server) -> str:
    url = server.env["PLATFORM_DB_URL"]
    assert url.startswith("sqlite:///"), url
    return url[len("sqlite:///"):]


def test_Test_ListKeys_SortTieBreaker_CreatedAtWithIDFallback(server, clients):
    ids, kas = sort_keys(clients, server, ["tiebreaker-kk-0", "tiebreaker-kk-1", "tiebreaker-kk-2"])
    # forceCreatedAtTie: the three rows get one created_at, straight in the database.
    db = sqlite3.connect(_db_path(server), timeout=30)
    try:
        with db:
            marks = ",".join("?" * len(ids))
            changed = db.execute(f"UPDATE kas_key SET created_at = (SELECT created_at FROM kas_key WHERE id = ?) "
                                 f"WHERE id IN ({marks})", (ids[0], *ids)).rowcount
        assert changed == 3
        assert len({r[0] for r in db.execute(f"SELECT created_at FROM kas_key WHERE id IN ({marks})", ids)}) == 1
    finally:
        db.close()
    assert listed(clients, server, kas, SORT["created_at"], ASC) == sorted(ids)
    assert listed(clients, server, kas, SORT["created_at"], DESC) == sorted(ids, reverse=True)


def test_Test_ListKeys_SortByBothUnspecified_DefaultsToCreatedAtDESC(server, clients):
    ids, kas = sort_keys(clients, server, ["unsb-kk-0", "unsb-kk-1", "unsb-kk-2"])
    assert listed(clients, server, kas, SORT["unspecified"], selectors_pb2.SORT_DIRECTION_UNSPECIFIED) == ids[::-1]


def test_Test_ListKeys_SortOmitted(server, clients):
    ids, kas = sort_keys(clients, server, ["omit-kk-0", "omit-kk-1", "omit-kk-2"])
    assert listed(clients, server, kas) == ids[::-1]
