"""`platform kas public-key|wrap|unwrap|rewrap|stats`: the KAS operations.

`wrap` is what a TDF client does (encrypt a DEK to the KAS public key);
`unwrap` and `rewrap` are what the KAS does with it.
"""

from __future__ import annotations

import base64
import binascii
import json
import os

import click

from host import crypto, errors
from host.cli import main
from host.cli.output import echo_json

MAX_INPUT = 1 << 20


@main.group()
def kas():
    """KAS operations: public key, wrap (client side), unwrap, rewrap, cache stats."""


def _read(path: str, what: str) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > MAX_INPUT:
            raise click.BadParameter(f"{path} is {size} bytes; the limit is {MAX_INPUT}", param_hint=what)
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise click.BadParameter(f"cannot read {path}: {e.strerror}", param_hint=what) from None


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _load_wrapped(path: str) -> dict:
    try:
        doc = json.loads(_read(path, "--in"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise click.BadParameter(f"{path} is not JSON (expected the output of `platform kas wrap`)", param_hint="--in") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("kid"), str) or not isinstance(doc.get("wrapped_key"), str):
        raise click.BadParameter(f"{path} must be a JSON object with string fields kid and wrapped_key", param_hint="--in")
    try:
        doc["_wrapped"] = base64.b64decode(doc["wrapped_key"], validate=True)
    except (binascii.Error, ValueError):
        raise click.BadParameter(f"{path}: wrapped_key is not base64", param_hint="--in") from None
    return doc


@kas.command("public-key")
@click.option("--kas", "kas_ref", help="KAS id, uri or name.")
@click.option("--kid", help="A specific key id.")
@click.option("--algorithm", "-a", type=click.Choice(list(crypto.ALGORITHMS)), help="Active key of this algorithm (default rsa:2048).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def public_key(platform, kas_ref, kid, algorithm, as_json):
    """Print the public key clients wrap DEKs to."""
    key = platform.keys.public_key(kas=kas_ref, kid=kid, algorithm=algorithm)
    if as_json:
        echo_json({"kid": key.key_id, "algorithm": key.algorithm, "public_key": key.public_key_pem, "kas_uri": key.kas_uri})
    else:
        click.echo(key.public_key_pem.rstrip())


@kas.command("wrap")
@click.option("--kas", "kas_ref", help="KAS id, uri or name.")
@click.option("--kid", help="Key id to wrap to (default: the active key of --algorithm).")
@click.option("--algorithm", "-a", type=click.Choice(list(crypto.ALGORITHMS)))
@click.option("--in", "in_path", required=True, help="File with the DEK.")
@click.option("--out", "out_path", required=True, help="Where to write the wrapped-key JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON on stdout (never the DEK).")
@click.pass_obj
def wrap(platform, kas_ref, kid, algorithm, in_path, out_path, as_json):
    """Client side: encrypt a DEK to a KAS public key (RSA-OAEP, EC with an ephemeral key, or ML-KEM / hybrid)."""
    dek = _read(in_path, "--in")
    if not dek:
        raise click.BadParameter(f"{in_path} is empty", param_hint="--in")
    key = platform.keys.public_key(kas=kas_ref, kid=kid, algorithm=algorithm)
    pub = crypto.load_public_pem(key.public_key_pem, key.algorithm)
    doc = {"kid": key.key_id, "kas_uri": key.kas_uri, "algorithm": key.algorithm}
    if crypto.is_ec(key.algorithm):
        wrapped, eph = crypto.ec_wrap(pub, dek)
        doc["ephemeral_public_key"] = eph
    elif key.algorithm in crypto.KEMS:  # OpenTDF's envelope, the ephemeral part inside it
        wrapped = crypto.kem.wrap(pub, crypto.KEMS[key.algorithm], dek)
    else:
        wrapped = crypto.rsa_wrap(pub, dek)
    doc["wrapped_key"] = base64.b64encode(wrapped).decode()
    _write(out_path, json.dumps(doc, indent=2).encode())
    _done(as_json, f"wrapped {len(dek)} bytes to {key.key_id} ({key.algorithm}) -> {out_path}",
          {"kid": key.key_id, "algorithm": key.algorithm, "kas_uri": key.kas_uri, "bytes": len(dek), "out": out_path})


@kas.command("unwrap")
@click.option("--kas", "kas_ref", help="KAS id, uri or name.")
@click.option("--in", "in_path", required=True, help="Wrapped-key JSON from `platform kas wrap`.")
@click.option("--out", "out_path", required=True, help="Where to write the DEK.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON on stdout (never the DEK).")
@click.pass_obj
def unwrap(platform, kas_ref, in_path, out_path, as_json):
    """KAS side: recover the DEK through the key's manager."""
    doc = _load_wrapped(in_path)
    dek = platform.keys.unwrap(doc["kid"], doc["_wrapped"], doc.get("ephemeral_public_key"), kas=kas_ref)
    _write(out_path, dek)
    _done(as_json, f"unwrapped {len(dek)} bytes with {doc['kid']} -> {out_path}",
          {"kid": doc["kid"], "bytes": len(dek), "out": out_path})


@kas.command("rewrap")
@click.option("--kas", "kas_ref", help="KAS id, uri or name.")
@click.option("--in", "in_path", required=True, help="Wrapped-key JSON from `platform kas wrap`.")
@click.option("--client-public-key", required=True, help="PEM file of the client's public key (RSA or EC).")
@click.option("--out", "out_path", required=True, help="Where to write the rewrapped-key JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON on stdout.")
@click.pass_obj
def rewrap(platform, kas_ref, in_path, client_public_key, out_path, as_json):
    """KAS side: unwrap the DEK and re-encrypt it to the client's public key."""
    doc = _load_wrapped(in_path)
    client_pem = _read(client_public_key, "--client-public-key")
    result = platform.keys.rewrap(doc["kid"], doc["_wrapped"], client_pem, doc.get("ephemeral_public_key"), kas=kas_ref)
    _write(out_path, json.dumps(result, indent=2).encode())
    _done(as_json, f"rewrapped with {doc['kid']} for the client key -> {out_path}", {"kid": doc["kid"], "out": out_path})


def _done(as_json: bool, line: str, doc: dict) -> None:
    """One summary: a line on stderr (stdout stays free for pipes), or JSON on stdout with --json."""
    if as_json:
        echo_json(doc)
    else:
        click.echo(line, err=True)


@kas.command("stats")
@click.pass_obj
def stats(platform):
    """Cache and manager-call statistics of this process (JSON)."""
    echo_json(platform.keys.stats())
