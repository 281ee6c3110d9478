"""`platform policy keymanagement provider ...`: provider configurations.

Flags follow otdfctl (`--name/-n --manager/-m --config/-c --label/-l`,
`--id/-i`); the seed document's spellings `provider-config` and
`--config-json` work too. `--json` prints what otdfctl prints (Go's encoding/json
of the proto struct, host.cli.gojson), config_json base64 of the stored bytes with
secret values redacted unless --show-config. Every
call goes through host.cli.remote (the API, or its handlers in this process).
"""

from __future__ import annotations

import os
import sys
import time

import click

from host import plaintext
from host.cli import keymanagement, records
from host.cli import gojson
from host.cli.cobra import CobraGroup, failure, missing_flag
from host.cli.remote import api
from host.cli.output import echo_fields, echo_json, echo_page_footer, echo_table, format_labels, parse_labels, \
    rfc3339
from host.errors import InvalidArgument, NotFound, PlatformError
from host.managers.base import CallContext
from host.server import newer_fields
from host.server.protos import common_pb2, key_management_pb2 as km

PROBE_TIMEOUT_S = 10.0


# ---- provider configs ------------------------------------------------------

def read_config(value: str) -> bytes:
    """--config value: inline JSON, @PATH (a file) or - (stdin); returned as raw bytes."""
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        path = value[1:]
        try:
            with open(path, "rb") as f:
                return f.read(64 * 1024 + 1)  # the store rejects anything larger
        except OSError as e:
            raise InvalidArgument(f"cannot read config file {path}: {e.strerror or e}") from None
    return os.fsencode(value)  # undecodable argv bytes come back as they were typed


def config_message(pc, reveal: bool = False):
    """A KeyProviderConfig as printed: secret values of config_json redacted unless `reveal`."""
    out = type(pc)()
    out.CopyFrom(pc)
    if not reveal:
        out.config_json = plaintext.redact(bytes(pc.config_json))
    return out


def echo_config_message(pc, as_json: bool, show_config: bool = False) -> None:
    if as_json:
        gojson.echo_message(config_message(pc, reveal=show_config))
    else:
        echo_config(records.provider_config(pc), show_config)


def _config_summary(cfg) -> str:
    try:
        keys = ", ".join(sorted(cfg.config)) or "(empty object)"
    except ValueError:
        keys = "?"
    return f"{len(cfg.config_json)} bytes; keys: {keys} (values hidden; --show-config prints them)"


def echo_config(cfg, show_config: bool = False) -> None:
    fields = [("Id", cfg.id), ("Name", cfg.name), ("Manager", cfg.manager),
              ("Labels", format_labels(cfg.labels)), ("Created At", rfc3339(cfg.created_at)),
              ("Updated At", rfc3339(cfg.updated_at))]
    if cfg.config_json:
        fields.append(("Config", cfg.config_json.decode("utf-8") if show_config else _config_summary(cfg)))
    echo_fields(fields)


def warn_if_unregistered(platform, manager: str) -> None:
    """Direct mode only: over --host this process is not the node that serves the keys."""
    if not api().remote and platform.registry.factory(manager) is None:
        click.echo(f"warning: no loaded plugin or built-in registers manager {manager!r}; the config is "
                   f"stored, but this node cannot serve its keys until it loads that plugin "
                   f"(--key-manager-plugin=PATH; registered: {', '.join(platform.registry.names()) or 'none'})",
                   err=True)


def probe_config(platform, manager: str, config: bytes) -> tuple[bool, float, str, PlatformError | None]:
    """Build the manager from the config and probe it: (ok, milliseconds, reason, the error)."""
    started = time.perf_counter()
    try:
        km = platform.registry.build(manager, config)
        try:
            km.probe(CallContext.with_timeout(PROBE_TIMEOUT_S))
        finally:
            km.close()
    except PlatformError as e:
        return False, (time.perf_counter() - started) * 1000, e.message, e
    return True, (time.perf_counter() - started) * 1000, "", None


def _validate_or_fail(platform, manager: str, config: bytes, what: str) -> None:
    ok, ms, reason, error = probe_config(platform, manager, config)
    if ok:
        click.echo(f"ok: {what} validated with manager {manager!r} in {ms:.1f} ms", err=True)
        return
    # The probe's own code says why (permission_denied, not_found, unavailable...).
    raise InvalidArgument(f"{what} failed validation with manager {manager!r} ({error.code} after {ms:.1f} ms): "
                          f"{reason}")


config_option = click.option("--config", "-c", "--config-json", "config", metavar="JSON|@FILE|-",
                             help="Provider config: a JSON object inline, @FILE, or - for stdin.")
label_option = click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE",
                            help="Label (repeatable).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the OpenTDF JSON shape.")
show_config_option = click.option(
    "--show-config", is_flag=True,
    help="Print config_json as stored, secrets included (default: keys only in tables, secret values redacted in JSON).")


@click.group("provider", cls=CobraGroup)
def provider():
    """Provider configurations (how to reach an external KMS/HSM)."""


keymanagement.add_command(provider, "provider")
keymanagement.add_command(provider, "provider-config")  # the seed document's spelling


@provider.command("create")
@click.option("--name", "-n", required=True, help="Provider config name.")
@click.option("--manager", "-m", default=None,
              help="Key manager name registered by a plugin or built-in (default: the same as --name).")
@config_option
@label_option
@click.option("--validate", is_flag=True, help="Build the manager and probe it first; refuse a failing config.")
@json_option
@show_config_option
@click.pass_obj
def create(platform, name, manager, config, labels, validate, as_json, show_config):
    """Create a provider configuration."""
    if config is None:
        raise missing_flag("config")
    manager = name if manager is None else manager
    raw = read_config(config)
    label_map = parse_labels(labels)
    warn_if_unregistered(platform, manager)
    if validate:
        _validate_or_fail(platform, manager, raw, "config")
    req = km.CreateProviderConfigRequest(name=records.text(name, "name"), manager=records.text(manager, "manager"),
                                         config_json=raw)
    if label_map is not None:
        req.metadata.labels.update(label_map)
    with failure("Failed to create provider config"):
        made = api().km("CreateProviderConfig", req).provider_config
    echo_config_message(made, as_json, show_config)


def get_config(id_=None, name=None, manager=None) -> records.ProviderConfig:
    return records.provider_config(get_config_message(id_, name, manager))


def get_config_message(id_=None, name=None, manager=None):
    """By --id, by --name and --manager, or by --name alone when one manager has that name (the seed
    document's form; otdfctl and the API refuse it, so it is a walk of the list here)."""
    # otdfctl's flag groups (cobra's words): [name manager] together, one of [id name], not both
    if manager is not None and name is None:
        raise click.UsageError("if any flags in the group [name manager] are set they must all be set; "
                               "missing [name]")
    if id_ is None and name is None:
        raise click.UsageError("at least one of the flags in the group [id name] is required "
                               "(--id, or --name with --manager)")
    if id_ is not None and name is not None:
        raise click.UsageError("if any flags in the group [id name] are set none of the others can be; "
                               "[id name] were all set (give --id, or --name with --manager)")
    if manager is None and id_ is None:
        return by_name(name)  # the seed document's form (see the README)
    # by name: otdfctl's `name_manager` identifier (newer than the 0.11.0 protos)
    req = km.GetProviderConfigRequest(id=id_) if id_ is not None else \
        newer_fields.with_name_manager(km.GetProviderConfigRequest(), name, manager)
    return api().km("GetProviderConfig", req).provider_config


def by_name(name: str):
    wanted = name.lower()  # names are stored lower-case and matched so
    found = [c for c in records.walk(
        lambda off: api().km("ListProviderConfigs", km.ListProviderConfigsRequest(pagination=records.page(None, off))),
        lambda r: r.provider_configs) if c.name == wanted]
    if not found:
        raise NotFound(f"provider config with name {wanted!r} not found")
    if len(found) > 1:
        managers = ", ".join(sorted(c.manager for c in found))
        raise InvalidArgument(f"several provider configs are named {wanted!r} (managers: {managers}); "
                              f"give --manager to choose one")
    return found[0]


@provider.command("get")
@click.option("--id", "-i", "id_", default=None, help="Provider config id.")
@click.option("--name", "-n", default=None, help="Name (add --manager when several configs share it).")
@click.option("--manager", "-m", default=None, help="Manager (with --name).")
@show_config_option
@json_option
@click.pass_obj
def get(platform, id_, name, manager, show_config, as_json):
    """Get a provider configuration by --id, or by --name (and --manager when several share the name)."""
    with failure("Failed to get provider config"):
        cfg = get_config_message(id_, name, manager)
    echo_config_message(cfg, as_json, show_config)


@provider.command("list")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--offset", type=int, default=0, show_default=True)
@json_option
@show_config_option
@click.pass_obj
def list_(platform, limit, offset, as_json, show_config):
    """List provider configurations."""
    with failure("Failed to list provider configs"):
        resp = api().km("ListProviderConfigs", km.ListProviderConfigsRequest(pagination=records.page(limit, offset)))
    items, total = [records.provider_config(c) for c in resp.provider_configs], resp.pagination.total
    if as_json:
        shown = type(resp)()
        shown.CopyFrom(resp)
        for c in shown.provider_configs:
            c.CopyFrom(config_message(c, reveal=show_config))
        gojson.echo_message(shown)
        return
    echo_table(("ID", "NAME", "MANAGER", "LABELS", "UPDATED AT"),
               [(c.id, c.name, c.manager, format_labels(c.labels), rfc3339(c.updated_at)) for c in items])
    echo_page_footer(offset, len(items), total)


@provider.command("update")
@click.option("--id", "-i", "id_", required=True, help="Provider config id.")
@click.option("--name", "-n", default=None)
@click.option("--manager", "-m", default=None)
@config_option
@label_option
@click.option("--extend-labels", is_flag=True, help="Add --label pairs to the existing labels instead of replacing them.")
@click.option("--validate", is_flag=True, help="Probe the resulting manager+config first; refuse a failing one.")
@json_option
@show_config_option
@click.pass_obj
def update(platform, id_, name, manager, config, labels, extend_labels, validate, as_json, show_config):
    """Update name, manager, config and/or labels (a manager or config change bumps the revision)."""
    raw = None if config is None else read_config(config)
    label_map = parse_labels(labels)
    if extend_labels and label_map is None:
        raise InvalidArgument("--extend-labels needs at least one --label")
    if name is None and manager is None and raw is None and label_map is None:
        raise InvalidArgument("At least one field (name, manager, config, or metadata labels) must be updated")
    if manager is not None:
        warn_if_unregistered(platform, manager)
    if validate:
        current = get_config(id_)
        _validate_or_fail(platform, manager or current.manager, raw if raw is not None else current.config_json,
                          "updated config")
    req = km.UpdateProviderConfigRequest(id=id_, name=records.text(name, "name"),
                                         manager=records.text(manager, "manager"), config_json=raw or b"")
    if label_map is not None:
        req.metadata.labels.update(label_map)
        req.metadata_update_behavior = (common_pb2.METADATA_UPDATE_ENUM_EXTEND if extend_labels
                                        else common_pb2.METADATA_UPDATE_ENUM_REPLACE)
    with failure("Failed to update provider config"):
        updated = api().km("UpdateProviderConfig", req).provider_config
    echo_config_message(updated, as_json, show_config)


@provider.command("delete")
@click.option("--id", "-i", "id_", required=True, help="Provider config id.")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_obj
def delete(platform, id_, force, as_json):
    """Delete a provider configuration (refused while keys reference it)."""
    if not force:  # (--force skips the read, so a config sealed under a lost root key can still go)
        with failure("Failed to get provider config"):
            cfg = get_config(id_)
        click.confirm(f"Delete provider config {cfg.name!r} (manager {cfg.manager!r}, id {cfg.id})?", abort=True,
                      err=True)
    with failure("Failed to delete provider config"):
        deleted = api().km("DeleteProviderConfig", km.DeleteProviderConfigRequest(id=id_)).provider_config
    if as_json:  # otdfctl: ExitWithJSON(nil)
        gojson.echo(None)
    else:
        click.echo(f"deleted provider config {deleted.id} ({deleted.name}, manager {deleted.manager})")


@provider.command("validate")
@click.option("--id", "-i", "id_", default=None, help="Provider config id.")
@click.option("--name", "-n", default=None, help="Name (with --manager).")
@click.option("--manager", "-m", default=None, help="Manager (with --name).")
@json_option
@click.pass_obj
def validate(platform, id_, name, manager, as_json):
    """Build the manager from a stored config and probe it (exit 1 when it fails)."""
    cfg = get_config(id_, name, manager)
    ok, ms, reason, error = probe_config(platform, cfg.manager, cfg.config_json)
    if as_json:
        echo_json({"id": cfg.id, "manager": cfg.manager, "ok": ok, "latency_ms": round(ms, 3),
                   **({} if ok else {"reason": reason, "code": error.code})})
    elif ok:
        click.echo(f"ok: provider config {cfg.name!r} (manager {cfg.manager!r}) answered in {ms:.1f} ms")
    if not ok:
        if not as_json:
            click.echo(f"error: provider config {cfg.name!r} (manager {cfg.manager!r}) failed after {ms:.1f} ms: "
                       f"{reason} [{error.code}]", err=True)
        sys.exit(1)
