"""`platform dev-setup`: first-run content for `make run` (idempotent)."""

from __future__ import annotations

import click

from host import crypto
from host.cli import main


@main.command("dev-setup", hidden=True)
@click.option("--kas-uri", required=True)
@click.pass_obj
def dev_setup(platform, kas_uri):
    """Register this KAS and one local key per algorithm when the database is empty."""
    platform.keys.check_startup()
    _, total = platform.store.kas.list(limit=1)
    if total:
        click.echo(f"database {platform.store.url}: {total} KAS already registered")
        return
    server = platform.store.kas.create(kas_uri, "default")
    for algorithm in crypto.ALGORITHMS:
        kid = "r1" if algorithm == "rsa:2048" else "e1" if algorithm == "ec:secp256r1" else algorithm.replace(":", "-")
        platform.keys.create_key(server.id, kid, algorithm, "local")
    click.echo(f"registered KAS {kas_uri} with one local key per algorithm (r1 = rsa:2048, e1 = ec:secp256r1)")
