"""Policy answers (proto messages) as the records the CLI prints, and the references the CLI takes.

The printers (host.cli.output and the command modules) read attributes named
as the store's records; the messages come from either transport (host.cli.remote).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field

import click

from host.errors import InvalidArgument
from host.server.convert import ALGORITHMS, KEY_MODES, KEY_STATUSES, SORT_KAS_KEYS_TYPE_KEY_STATUS
from host.server.protos import kasregistry_pb2 as kr, selectors_pb2
from host.store.validation import is_uuid

MAX_PAGES = 10_000  # walking a list: a bound, far above any real registry


@dataclass
class ProviderConfig:
    id: str
    name: str
    manager: str
    config_json: bytes
    labels: dict
    created_at: dt.datetime | None
    updated_at: dt.datetime | None

    @property
    def config(self):
        return json.loads(self.config_json)


@dataclass
class Kas:
    id: str
    uri: str
    name: str
    labels: dict
    created_at: dt.datetime | None
    updated_at: dt.datetime | None


@dataclass
class Key:
    id: str
    key_id: str
    kas_id: str
    kas_uri: str
    algorithm: str
    status: str
    mode: str
    public_key_pem: str
    private_key_ctx: dict | None
    provider_config: ProviderConfig | None
    legacy: bool
    labels: dict = field(default_factory=dict)
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    message: object = field(default=None, repr=False, compare=False)  # the policy.KasKey it was read from


def _times(md):
    def when(name):
        return getattr(md, name).ToDatetime(tzinfo=dt.timezone.utc) if md.HasField(name) else None

    return dict(md.labels), when("created_at"), when("updated_at")


def provider_config(pc) -> ProviderConfig:
    labels, created, updated = _times(pc.metadata)
    return ProviderConfig(pc.id, pc.name, pc.manager, bytes(pc.config_json), labels, created, updated)


def kas(message) -> Kas:
    labels, created, updated = _times(message.metadata)
    return Kas(message.id, message.uri, message.name, labels, created, updated)


def key(kas_key) -> Key:
    ak = kas_key.key
    labels, created, updated = _times(ak.metadata)
    ctx = None
    if ak.HasField("private_key_ctx"):
        ctx = {"key_id": ak.private_key_ctx.key_id, "wrapped_key": ak.private_key_ctx.wrapped_key}
    pem = base64.b64decode(ak.public_key_ctx.pem).decode("ascii") if ak.public_key_ctx.pem else ""
    return Key(ak.id, ak.key_id, kas_key.kas_id, kas_key.kas_uri, ALGORITHMS.get(ak.key_algorithm, "unspecified"),
               KEY_STATUSES.get(ak.key_status, "unspecified"), KEY_MODES.get(ak.key_mode, "unspecified"), pem, ctx,
               provider_config(ak.provider_config) if ak.HasField("provider_config") else None, ak.legacy,
               labels, created, updated, kas_key)


def simple_key(simple) -> Key:
    """A SimpleKasKey (a base key) with what it carries; the rest is empty."""
    pk = simple.public_key
    return Key("", pk.kid, simple.kas_id, simple.kas_uri, ALGORITHMS.get(pk.algorithm, "unspecified"), "", "",
               pk.pem, None, None, False)


def text(value: str | None, field: str) -> str:
    """A flag's value for a proto string field ("" when absent); undecodable argv bytes are refused here,
    where the field can be named, rather than by the message's constructor."""
    if value is None:
        return ""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} is not valid UTF-8") from None
    return value


def kas_identifier(ref: str) -> dict:
    """otdfctl's --kas: a UUID is an id, a URL a uri, anything else a name (KasKeyIdentifier fields)."""
    if is_uuid(ref):
        return {"kas_id": ref}
    if "://" in ref:
        return {"uri": ref}
    return {"name": ref}


def page(limit: int | None, offset: int) -> selectors_pb2.PageRequest:
    return selectors_pb2.PageRequest(limit=limit or 0, offset=offset)


def sort(message, enum_prefix: str, field: str | None, order: str | None) -> list:
    """otdfctl's --sort FIELD / --order asc|desc as a List request's one sort item; [] when neither is
    given (the server's default: newest first). The server picks created_at for no field, desc for no order."""
    if field is None and order is None:
        return []
    direction = {None: selectors_pb2.SORT_DIRECTION_UNSPECIFIED, "asc": selectors_pb2.SORT_DIRECTION_ASC,
                 "desc": selectors_pb2.SORT_DIRECTION_DESC}[order]
    return [message(field=_sort_field(enum_prefix, field) if field else 0, direction=direction)]


def _sort_field(enum_prefix: str, field: str) -> int:
    if (enum_prefix, field) == ("SORT_KAS_KEYS_TYPE", "key_status"):
        return SORT_KAS_KEYS_TYPE_KEY_STATUS  # newer than the 0.11.0 enum
    return getattr(kr, f"{enum_prefix}_{field.upper()}")


def sort_options(fields: tuple[str, ...]):
    def decorate(f):
        f = click.option("--order", type=click.Choice(["asc", "desc"]), default=None,
                         help="Sort direction (default: desc).")(f)
        return click.option("--sort", "sort_field", type=click.Choice(fields), default=None,
                            help="Sort field (default: created_at).")(f)
    return decorate


def search_option(what: str):
    """otdfctl's `--search TERM` on List commands (OpenTDF's `search.term`)."""
    return click.option("--search", default=None, help=f"Only matches of TERM: {what}.")


def walk(fetch, items_of):
    """Every item of a paged List: fetch(offset) -> response; items_of(response) -> its items."""
    offset = 0
    for _ in range(MAX_PAGES):
        resp = fetch(offset)
        yield from items_of(resp)
        offset = resp.pagination.next_offset
        if not offset:
            return


def all_keys(api, **filters):
    return walk(lambda off: api.kr("ListKeys", kr.ListKeysRequest(pagination=page(None, off), **filters)),
                lambda r: r.kas_keys)
