"""`platform policy kas-registry create|get|list|update|delete`: the Key Access Servers.

Named kas_servers (not kas_registry) because `host.cli.kas_registry` is the
click group this module attaches to; a submodule of that name would shadow it.

(The `key` subgroup of kas-registry lives with the key service commands.) Every call
goes through host.cli.remote (the API, or its handlers in this process).
"""

from __future__ import annotations

import click

from host.cli import gojson, kas_registry, records
from host.cli.cobra import failure
from host.cli.remote import api
from host.cli.output import echo_fields, echo_page_footer, echo_table, format_labels, parse_labels, rfc3339
from host.errors import InvalidArgument
from host.server import newer_fields
from host.server.protos import common_pb2, kasregistry_pb2 as kr

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON as otdfctl does.")


def echo_kas_message(message, as_json: bool) -> None:
    """A policy.KeyAccessServer: otdfctl's --json (host.cli.gojson), or the fields."""
    if as_json:
        gojson.echo_message(message)
    else:
        echo_kas(records.kas(message))


def _got(id_: str):
    """The entry as otdfctl prints it after create/update: read back by id."""
    return api().kr("GetKeyAccessServer", kr.GetKeyAccessServerRequest(kas_id=id_)).key_access_server


def echo_kas(kas) -> None:
    echo_fields([("Id", kas.id), ("Name", kas.name), ("URI", kas.uri), ("Labels", format_labels(kas.labels)),
                 ("Created At", rfc3339(kas.created_at)), ("Updated At", rfc3339(kas.updated_at))])


@kas_registry.command("create")
@click.option("--uri", "-u", required=True, help="KAS URL, e.g. https://kas.example.com.")
@click.option("--name", "-n", default=None, help="Unique KAS name (optional; stored lower-case).")
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable).")
@json_option
@click.pass_obj
def create(platform, uri, name, labels, as_json):
    """Register a Key Access Server."""
    req = kr.CreateKeyAccessServerRequest(uri=records.text(uri, "uri"), name=records.text(name, "name"))
    label_map = parse_labels(labels)
    if label_map is not None:
        req.metadata.labels.update(label_map)
    with failure("Failed to create Registered KAS entry"):
        made = api().kr("CreateKeyAccessServer", req).key_access_server
    if as_json:
        with failure("Failed to create Registered KAS entry"):
            made = _got(made.id)
    echo_kas_message(made, as_json)


@kas_registry.command("update")
@click.option("--id", "-i", "id_", required=True, help="KAS id.")
@click.option("--uri", "-u", default=None, help="New URI.")
@click.option("--name", "-n", default=None, help="New name.")
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Label (repeatable), merged.")
@click.option("--force-replace-labels", is_flag=True, help="Replace the labels instead of merging.")
@json_option
@click.pass_obj
def update(platform, id_, uri, name, labels, force_replace_labels, as_json):
    """Change a KAS's URI, name or labels."""
    label_map = parse_labels(labels)
    if force_replace_labels and label_map is None:
        label_map = {}
    req = kr.UpdateKeyAccessServerRequest(id=id_, uri=records.text(uri, "uri"), name=records.text(name, "name"))
    if label_map is not None:
        req.metadata.labels.update(label_map)
        req.metadata.SetInParent()  # an empty REPLACE clears the labels
        req.metadata_update_behavior = (common_pb2.METADATA_UPDATE_ENUM_REPLACE if force_replace_labels
                                        else common_pb2.METADATA_UPDATE_ENUM_EXTEND)
    with failure(f"Failed to update Registered KAS entry ({id_})"):
        updated = api().kr("UpdateKeyAccessServer", req).key_access_server
    if as_json:
        with failure(f"Failed to update Registered KAS entry ({id_})"):
            updated = _got(updated.id)
    echo_kas_message(updated, as_json)


@kas_registry.command("delete")
@click.option("--id", "-i", "id_", required=True, help="KAS id.")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def delete(platform, id_, force, as_json):
    """Delete a KAS that holds no keys."""
    if not force:
        click.confirm(f"Delete KAS {id_}?", abort=True)
    with failure(f"Failed to delete Registered KAS entry ({id_})"):
        deleted = api().kr("DeleteKeyAccessServer", kr.DeleteKeyAccessServerRequest(id=id_)).key_access_server
    echo_kas_message(deleted, as_json)


def get_kas(ref: str, id_=None, uri=None, name=None) -> records.Kas:
    return records.kas(get_kas_message(ref, id_, uri, name))


def get_kas_message(ref: str, id_=None, uri=None, name=None):
    """A KAS by the field a flag names, or by the shape of a bare REF (UUID, URL or name)."""
    ident = {"kas_id": id_} if id_ else {"uri": uri} if uri else {"name": name} if name else \
        records.kas_identifier(ref)
    return api().kr("GetKeyAccessServer", kr.GetKeyAccessServerRequest(**ident)).key_access_server


@kas_registry.command("get")
@click.argument("ref", required=False)
@click.option("--id", "-i", "id_", default=None, help="KAS id.")
@click.option("--uri", "-u", default=None, help="KAS URI.")
@click.option("--name", "-n", default=None, help="KAS name.")
@json_option
@click.pass_obj
def get(platform, ref, id_, uri, name, as_json):
    """Get a KAS by REF (id, uri or name) or by exactly one of --id/--uri/--name."""
    given = [v for v in (ref, id_, uri, name) if v is not None]
    if len(given) != 1:
        raise InvalidArgument("give exactly one of REF, --id, --uri or --name")
    message = get_kas_message(given[0], id_=id_, uri=uri, name=name)
    kas = records.kas(message)
    # A flag says what the value is; do not let e.g. --name match another KAS's URI.
    for flag, value, actual in (("--id", id_, kas.id), ("--uri", uri, kas.uri), ("--name", name, kas.name)):
        if value is not None and value != actual and not (flag == "--id" and value.lower() == actual):
            raise InvalidArgument(f"no KAS with {flag} {value!r} (it matches KAS {kas.name!r} by another field)")
    echo_kas_message(message, as_json)


@kas_registry.command("list")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@records.sort_options(("name", "uri", "created_at", "updated_at"))
@records.search_option("a substring of the name or URI, any case")
@json_option
@click.pass_obj
def list_(platform, limit, offset, sort_field, order, search, as_json):
    """List registered Key Access Servers (newest first unless --sort/--order)."""
    with failure("Failed to list Registered KAS entries"):
        resp = api().kr("ListKeyAccessServers", newer_fields.with_search(kr.ListKeyAccessServersRequest(
            pagination=records.page(limit, offset),
            sort=records.sort(kr.KeyAccessServersSort, "SORT_KEY_ACCESS_SERVERS_TYPE", sort_field, order)),
            search or None))
    items, total = [records.kas(k) for k in resp.key_access_servers], resp.pagination.total
    if as_json:
        gojson.echo_message(resp)
        return
    echo_table(("ID", "NAME", "URI", "LABELS"), [(k.id, k.name, k.uri, format_labels(k.labels)) for k in items])
    echo_page_footer(offset, len(items), total)
