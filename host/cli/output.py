"""Shared CLI helpers: labels, timestamps, pagination, OpenTDF-shaped JSON, plain tables."""

from __future__ import annotations

import datetime as dt
import json

import click

from host.errors import InvalidArgument


def parse_labels(values: tuple[str, ...]) -> dict[str, str] | None:
    """`k=v` pairs -> dict (None when no --label was given)."""
    if not values:
        return None
    labels = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"--label expects KEY=VALUE, got {item!r}")
        labels[key] = value
    return labels


def rfc3339(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def pagination(offset: int, count: int, total: int) -> dict:
    """OpenTDF's PageResponse: next_offset is 0 when there is no further page."""
    next_offset = offset + count if offset + count < total else 0
    return {"current_offset": offset, "next_offset": next_offset, "total": total}


def echo_json(doc) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False))


def echo_table(header: tuple[str, ...], rows: list[tuple]) -> None:
    table = [header] + [tuple("" if v is None else str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def echo_fields(fields: list[tuple[str, object]]) -> None:
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        click.echo(f"{(key + ':').ljust(width + 1)} {'' if value is None else value}")


def format_labels(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def echo_page_footer(offset: int, count: int, total: int) -> None:
    page = pagination(offset, count, total)
    click.echo(f"Total: {page['total']}  Current Offset: {page['current_offset']}  Next Offset: {page['next_offset']}")
