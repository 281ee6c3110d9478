"""Shared CLI output helpers: OpenTDF-shaped JSON for keys, and plain tables."""

from __future__ import annotations

import base64
import json

import click


def iso(ts) -> str | None:
    return None if ts is None else ts.isoformat().replace("+00:00", "Z")


def key_json(key) -> dict:
    """A KAS key in the shape otdfctl prints (policy.KasKey)."""
    pc = key.provider_config
    ctx = key.private_key_ctx
    return {
        "kas_id": key.kas_id,
        "kas_uri": key.kas_uri,
        "key": {
            "id": key.id,
            "key_id": key.key_id,
            "key_algorithm": key.algorithm,
            "key_status": key.status,
            "key_mode": key.mode,
            "public_key_ctx": {"pem": base64.b64encode((key.public_key_pem or "").encode()).decode()},
            "private_key_ctx": None if ctx is None else {"key_id": ctx.get("key_id", ""),
                                                         "wrapped_key": ctx.get("wrapped_key", "")},
            "provider_config": None if pc is None else {"id": pc.id, "name": pc.name, "manager": pc.manager},
            "metadata": {"labels": key.labels, "created_at": iso(key.created_at), "updated_at": iso(key.updated_at)},
        },
    }


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def echo_table(header: tuple, rows: list[tuple]) -> None:
    table = [header] + [tuple("" if v is None else str(v) for v in r) for r in rows]
    widths = [max(len(str(r[i])) for r in table) for i in range(len(header))]
    for r in table:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
