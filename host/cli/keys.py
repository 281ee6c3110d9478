"""`platform policy kas-registry key create|get|list|rotate` (as otdfctl)."""

from __future__ import annotations

import click

from host.cli import kas_registry
from host.cli.output import echo_json, echo_page_footer, echo_table, format_labels, key_json, pagination

ALGORITHMS = ["rsa:2048", "rsa:4096", "ec:secp256r1", "ec:secp384r1", "ec:secp521r1"]
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
    """A PEM given inline, or @path / a path to a file holding it."""
    if value is None:
        return None
    if value.lstrip().startswith("-----BEGIN"):
        return value
    path = value[1:] if value.startswith("@") else value
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        raise click.BadParameter("must be a PEM block or a readable PEM file", param_hint="PEM option") from None


def _print_key(key, as_json: bool) -> None:
    if as_json:
        echo_json(key_json(key))
        return
    pc = key.provider_config
    echo_table(("FIELD", "VALUE"), [
        ("id", key.id), ("kas", key.kas_uri), ("key_id", key.key_id), ("algorithm", key.algorithm),
        ("status", key.status), ("mode", key.mode),
        ("provider_config", f"{pc.name} ({pc.manager}, {pc.id})" if pc else "-"),
        ("wrapping_key_id", (key.private_key_ctx or {}).get("key_id", "-")),
        ("labels", format_labels(key.labels) or "-"),
        ("created_at", key.created_at.isoformat()),
    ])


@kas_registry.group("key")
def key():
    """KAS keys: create, get, list, rotate."""


@key.command("create")
@click.option("--kas", help="KAS id, uri or name (optional when only one KAS is registered).")
@click.option("--key-id", required=True, help="The key's id (kid) as clients see it.")
@click.option("--algorithm", "-a", required=True, type=click.Choice(ALGORITHMS))
@click.option("--mode", "-m", required=True, type=click.Choice(MODES))
@click.option("--wrapping-key-id", help="Key id inside the manager (provider/remote) or the root key id (local).")
@click.option("--wrapping-key", help="Local mode: the root key as hex, to check it is the platform's.")
@click.option("--provider-config-id", "-p", help="Provider config (required for provider and remote modes).")
@click.option("--public-key-pem", help="PEM, or a file holding it.")
@click.option("--private-key-pem", help="PEM, or a file holding it (local/provider; generated when absent).")
@click.option("--label", "-l", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def create(platform, kas, key_id, algorithm, mode, wrapping_key_id, wrapping_key, provider_config_id,
           public_key_pem, private_key_pem, label, as_json):
    """Create a KAS key in any of the four modes."""
    k = platform.keys.create_key(kas, key_id, algorithm, mode, wrapping_key_id=wrapping_key_id,
                                 wrapping_key=wrapping_key, provider_config_id=provider_config_id,
                                 public_key_pem=_read_pem(public_key_pem), private_key_pem=_read_pem(private_key_pem),
                                 labels=_labels(label))
    _print_key(k, as_json)


@key.command("get")
@click.option("--id", "-i", "id_", help="Key UUID.")
@click.option("--key-id", help="Key id (kid).")
@click.option("--kas", help="KAS id, uri or name.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def get(platform, id_, key_id, kas, as_json):
    """Get a key by UUID, or by key id (and KAS)."""
    _print_key(platform.keys.get_key(id=id_, kas=kas, key_id=key_id), as_json)


@key.command("list")
@click.option("--kas", help="Only keys of this KAS (id, uri or name).")
@click.option("--algorithm", "-a", type=click.Choice(ALGORITHMS))
@click.option("--limit", type=click.IntRange(1, 1000), default=None)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(platform, kas, algorithm, limit, offset, as_json):
    """List keys with pagination."""
    keys, total = platform.keys.list_keys(kas=kas, limit=limit, offset=offset, algorithm=algorithm)
    if as_json:
        echo_json({"kas_keys": [key_json(k) for k in keys], "pagination": pagination(offset, len(keys), total)})
        return
    echo_table(("ID", "KAS", "KEY_ID", "ALGORITHM", "MODE", "STATUS"),
               [(k.id, k.kas_uri, k.key_id, k.algorithm, k.mode, k.status) for k in keys])
    echo_page_footer(offset, len(keys), total)


@key.command("rotate")
@click.option("--kas", help="KAS id, uri or name.")
@click.option("--key-id", required=True, help="The active key to rotate out.")
@click.option("--new-key-id", required=True, help="The id of the replacement key.")
@click.option("--algorithm", "-a", type=click.Choice(ALGORITHMS), help="Default: the old key's.")
@click.option("--mode", "-m", type=click.Choice(MODES), help="Default: the old key's.")
@click.option("--wrapping-key-id")
@click.option("--provider-config-id", "-p")
@click.option("--public-key-pem")
@click.option("--private-key-pem")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rotate(platform, kas, key_id, new_key_id, algorithm, mode, wrapping_key_id, provider_config_id,
           public_key_pem, private_key_pem, as_json):
    """Replace a key: the new one becomes active, the old one still unwraps."""
    options = {"algorithm": algorithm, "mode": mode, "wrapping_key_id": wrapping_key_id,
               "public_key_pem": _read_pem(public_key_pem), "private_key_pem": _read_pem(private_key_pem)}
    if provider_config_id:
        options["provider_config_id"] = provider_config_id
    new, old = platform.keys.rotate_key(kas, key_id, new_key_id, **options)
    if as_json:
        echo_json({"kas_key": key_json(new), "rotated_resources": {"rotated_out_key": key_json(old)}})
    else:
        click.echo(f"rotated {old.key_id} -> {new.key_id} ({new.algorithm}, {new.mode}) on {new.kas_uri}")
