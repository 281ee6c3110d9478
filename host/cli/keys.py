"""`platform policy kas-registry key ...` with otdfctl's commands and flags.

    create | import     a key (import: the key pair is given, otdfctl's name for it)
    get --key/-k        by UUID or key id (and --kas)
    list                --kas, --algorithm, --legacy, --limit/--offset
    update --id/-i      labels
    rotate --key/-k OLD --key-id NEW --algorithm --mode ...   (otdfctl: --key is the old key)
    base get | base set --key/-k
    list-mappings       always empty here (no attributes/namespaces are served)
    unsafe delete --id --key-id --kas-uri

`--public-key-pem` is base64 of the PEM as otdfctl takes it (a raw PEM or a
file holding one works too). Every rule is the key service's.
"""

from __future__ import annotations

import click

from host import crypto
from host.cli import kas_registry
from host.cli.output import base_key_json, echo_json, echo_page_footer, echo_table, format_labels, key_json, pagination

ALGORITHMS = list(crypto.ALGORITHMS)
MODES = ["local", "provider", "remote", "public_key"]


def _labels(values) -> dict[str, str]:
    out = {}
    for item in values:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--label")
        out[k] = v
    return out


def _read_pem(value: str | None) -> str | None:
    """A PEM given inline (raw or base64, as otdfctl), or @path / a path to a file holding it."""
    if value is None:
        return None
    if value.lstrip().startswith("-----BEGIN") or _is_base64_pem(value):
        return value
    path = value[1:] if value.startswith("@") else value
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        raise click.BadParameter("must be a PEM block or a readable PEM file", param_hint="PEM option") from None


def _is_base64_pem(value: str) -> bool:
    import base64
    import binascii

    try:
        return base64.b64decode("".join(value.split()), validate=True).lstrip().startswith(b"-----BEGIN")
    except (binascii.Error, ValueError):
        return False


def _print_key(key, as_json: bool) -> None:
    if as_json:
        echo_json(key_json(key))
        return
    pc = key.provider_config
    echo_table(("FIELD", "VALUE"), [
        ("id", key.id), ("kas", key.kas_uri), ("key_id", key.key_id), ("algorithm", key.algorithm),
        ("status", key.status), ("mode", key.mode), ("legacy", "yes" if key.legacy else "no"),
        ("provider_config", f"{pc.name} ({pc.manager}, {pc.id})" if pc else "-"),
        ("wrapping_key_id", (key.private_key_ctx or {}).get("key_id", "-")),
        ("labels", format_labels(key.labels) or "-"),
        ("created_at", key.created_at.isoformat()),
    ])


@kas_registry.group("key")
def key():
    """KAS keys: create, import, get, list, update, rotate, base, list-mappings, unsafe."""


def _create_options(f):
    for option in reversed([
        click.option("--kas", help="KAS id, uri or name (optional when only one KAS is registered)."),
        click.option("--key-id", required=True, help="The key's id (kid) as clients see it."),
        click.option("--algorithm", "-a", required=True, type=click.Choice(ALGORITHMS)),
        click.option("--mode", "-m", required=True, type=click.Choice(MODES)),
        click.option("--wrapping-key-id", help="Key id inside the manager (provider/remote) or the root key id (local)."),
        click.option("--wrapping-key", "-w", help="Local mode: the root key as hex, to check it is the platform's."),
        click.option("--provider-config-id", "-p", help="Provider config (required for provider and remote modes)."),
        click.option("--public-key-pem", "-e", help="base64 of the PEM (as otdfctl), the PEM, or a file holding it."),
        click.option("--private-key-pem", help="PEM, or a file holding it (local/provider; generated when absent)."),
        click.option("--label", "-l", multiple=True, help="KEY=VALUE, repeatable."),
        click.option("--legacy", is_flag=True, help="A legacy key (at most one per KAS)."),
        click.option("--json", "as_json", is_flag=True),
    ]):
        f = option(f)
    return f


def _create(platform, kas, key_id, algorithm, mode, wrapping_key_id, wrapping_key, provider_config_id,
            public_key_pem, private_key_pem, label, legacy, as_json):
    k = platform.keys.create_key(kas, key_id, algorithm, mode, wrapping_key_id=wrapping_key_id,
                                 wrapping_key=wrapping_key, provider_config_id=provider_config_id,
                                 public_key_pem=_read_pem(public_key_pem), private_key_pem=_read_pem(private_key_pem),
                                 labels=_labels(label), legacy=legacy)
    _print_key(k, as_json)


@key.command("create")
@_create_options
@click.pass_obj
def create(platform, **options):
    """Create a KAS key in any of the four modes."""
    _create(platform, **options)


@key.command("import")
@_create_options
@click.pass_obj
def import_(platform, **options):
    """Import an existing key pair (--public-key-pem, and --private-key-pem for local/provider)."""
    if not options["public_key_pem"]:
        raise click.UsageError("import needs --public-key-pem")
    if options["mode"] in ("local", "provider") and not options["private_key_pem"]:
        raise click.UsageError(f"import in mode {options['mode']} needs --private-key-pem")
    _create(platform, **options)


@key.command("get")
@click.option("--key", "-k", "key_ref", help="The key's UUID or key id.")
@click.option("--kas", help="KAS id, uri or name (when several KAS hold that key id).")
@click.option("--id", "-i", "id_", hidden=True, help="Deprecated: use --key.")
@click.option("--key-id", hidden=True, help="Deprecated: use --key.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def get(platform, key_ref, kas, id_, key_id, as_json):
    """Get a key by --key (UUID or key id) and, if needed, --kas."""
    given = [v for v in (key_ref, id_, key_id) if v]
    if len(given) != 1:
        raise click.UsageError("give --key (the key's UUID or key id)")
    _print_key(platform.keys.find_key(given[0], kas=kas), as_json)


@key.command("list")
@click.option("--kas", help="Only keys of this KAS (id, uri or name).")
@click.option("--algorithm", "-a", type=click.Choice(ALGORITHMS))
@click.option("--legacy", type=click.BOOL, default=None, help="true: only legacy keys; false: only the others.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Page size (default and maximum: the server's).")
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(platform, kas, algorithm, legacy, limit, offset, as_json):
    """List keys with pagination, newest first."""
    keys, total = platform.keys.list_keys(kas=kas, limit=limit, offset=offset, algorithm=algorithm, legacy=legacy)
    if as_json:
        echo_json({"kas_keys": [key_json(k) for k in keys], "pagination": pagination(offset, len(keys), total)})
        return
    echo_table(("ID", "KAS", "KEY_ID", "ALGORITHM", "MODE", "STATUS"),
               [(k.id, k.kas_uri, k.key_id, k.algorithm, k.mode, k.status) for k in keys])
    echo_page_footer(offset, len(keys), total)


@key.command("update")
@click.option("--id", "-i", "id_", required=True, help="The key's UUID.")
@click.option("--label", "-l", multiple=True, help="KEY=VALUE, repeatable; merged into the key's labels.")
@click.option("--force-replace-labels", is_flag=True, help="Replace the labels instead of merging.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def update(platform, id_, label, force_replace_labels, as_json):
    """Update a key's labels (nothing else of a key changes after creation)."""
    labels = _labels(label)
    if not labels and not force_replace_labels:
        _print_key(platform.keys.get_key(id=id_), as_json)
        return
    _print_key(platform.keys.update_key_labels(id_, labels, extend=not force_replace_labels), as_json)


@key.command("rotate")
@click.option("--key", "-k", "old_key", required=True, help="The active key to rotate out: its UUID or key id.")
@click.option("--kas", help="KAS id, uri or name.")
@click.option("--key-id", required=True, help="The key id of the new key.")
@click.option("--algorithm", "-a", required=True, type=click.Choice(ALGORITHMS))
@click.option("--mode", "-m", required=True, type=click.Choice(MODES))
@click.option("--wrapping-key-id")
@click.option("--wrapping-key", "-w", help="Local mode: the root key as hex, to check it is the platform's.")
@click.option("--provider-config-id", "-p")
@click.option("--public-key-pem", "-e")
@click.option("--private-key-pem")
@click.option("--label", "-l", multiple=True, help="KEY=VALUE for the new key (default: the old key's labels).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rotate(platform, old_key, kas, key_id, algorithm, mode, wrapping_key_id, wrapping_key, provider_config_id,
           public_key_pem, private_key_pem, label, as_json):
    """Replace a key: the new one (--key-id) becomes active, the old one (--key) still unwraps."""
    old = platform.keys.find_key(old_key, kas=kas)
    options = {"algorithm": algorithm, "mode": mode, "wrapping_key_id": wrapping_key_id, "wrapping_key": wrapping_key,
               "public_key_pem": _read_pem(public_key_pem), "private_key_pem": _read_pem(private_key_pem)}
    if provider_config_id:
        options["provider_config_id"] = provider_config_id
    if label:
        options["labels"] = _labels(label)
    new, rotated = platform.keys.rotate_key(old.kas_id, old.key_id, key_id, **options)
    if as_json:
        echo_json({"kas_key": key_json(new), "rotated_resources": {"rotated_out_key": key_json(rotated)}})
    else:
        click.echo(f"rotated {rotated.key_id} -> {new.key_id} ({new.algorithm}, {new.mode}) on {new.kas_uri}")


@key.group("base")
def base():
    """The platform's base key (published in the well-known configuration)."""


def _print_base(key, as_json: bool) -> None:
    if as_json:
        echo_json(None if key is None else base_key_json(key))
    elif key is None:
        click.echo("no base key is set")
    else:
        _print_key(key, False)


@base.command("get")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def base_get(platform, as_json):
    """Show the base key."""
    _print_base(platform.keys.base_key(), as_json)


@base.command("set")
@click.option("--key", "-k", "key_ref", required=True, help="The key's UUID or key id.")
@click.option("--kas", help="KAS id, uri or name (when several KAS hold that key id).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def base_set(platform, key_ref, kas, as_json):
    """Make an active key the base key."""
    target = platform.keys.find_key(key_ref, kas=kas)
    new, previous = platform.keys.set_base_key(id=target.id)
    if as_json:
        echo_json({"new_base_key": base_key_json(new),
                   "previous_base_key": None if previous is None else base_key_json(previous)})
    else:
        click.echo(f"base key: {new.key_id} on {new.kas_uri}"
                   + (f" (was {previous.key_id} on {previous.kas_uri})" if previous else ""))


@key.command("list-mappings")
@click.option("--key", "-k", "key_ref", help="The key's UUID or key id.")
@click.option("--kas", help="KAS id, uri or name.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_mappings(platform, key_ref, kas, as_json):
    """Attributes, namespaces and values mapped to keys: none (this platform serves no attributes)."""
    if key_ref:
        platform.keys.find_key(key_ref, kas=kas)
    if as_json:
        echo_json({"key_mappings": [], "pagination": pagination(0, 0, 0)})
    else:
        click.echo("no key mappings (this platform serves no attributes or namespaces)")


@key.group("unsafe")
def unsafe():
    """Changes that can make data undecryptable."""


@unsafe.command("delete")
@click.option("--id", "-i", "id_", required=True, help="The key's UUID.")
@click.option("--key-id", required=True, help="The key's key id (must match).")
@click.option("--kas-uri", required=True, help="The URI of the key's KAS (must match).")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def unsafe_delete(platform, id_, key_id, kas_uri, force, as_json):
    """Delete a key for good: whatever was wrapped to it can no longer be decrypted."""
    if not force:
        click.confirm(f"Delete key {key_id!r} of {kas_uri} for good? Data wrapped to it becomes undecryptable",
                      abort=True)
    _print_key(platform.keys.unsafe_delete_key(id_, key_id, kas_uri), as_json)
