"""`platform policy kas-registry key ...` with otdfctl's commands and flags.

    create | import     a key (import: the key pair is given, otdfctl's name for it)
    get --key/-k        by UUID or key id (and --kas)
    list                --kas, --algorithm, --legacy, --limit/--offset
    update --id/-i      labels
    rotate --key/-k OLD --key-id NEW --algorithm --mode ...   (otdfctl: --key is the old key)
    base get | base set --key/-k
    list-mappings       always empty here (no attributes/namespaces are served)
    unsafe delete --id --key-id --kas-uri
    unsafe update --id [--mode remote|public_key] [--provider-config-id]

`--public-key-pem` is base64 of the PEM as otdfctl takes it (a raw PEM or a
file holding one works too). Every rule is the key service's: the commands
send OpenTDF's requests through host.cli.remote (the API, or its handlers in
this process). As otdfctl, the new key pair is made here and its private key
wrapped before it is sent (see key_contexts).
"""

from __future__ import annotations

import base64

import click

from host import crypto, errors
from host.cli import gojson, kas_registry, records
from host.cli.output import echo_page_footer, echo_table, format_labels
from host.cli.cobra import LegacyFlag, OtdfctlChoice, failure, missing_flag
from host.cli.remote import api
from host.managers.base import CallContext
from host.server import convert, newer_fields
from host.server.protos import common_pb2, key_management_pb2 as km, kasregistry_pb2 as kr, objects_pb2
from host.service.keys import normalize_mode, pem_base64, pem_text

MANAGER_TIMEOUT_S = 30.0

ALGORITHMS = list(crypto.ALGORITHMS)
MODES = ["local", "provider", "remote", "public_key"]
# otdfctl's refusals: create/rotate say "invalid algorithm"/"invalid mode", list and import "Invalid algorithm"
ALGORITHM = OtdfctlChoice(ALGORITHMS, "Invalid algorithm: invalid algorithm")
MODE = OtdfctlChoice(MODES, "Invalid key parameters: invalid mode")


def _labels(values) -> dict[str, str]:
    out = {}
    for item in values:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--label")
        out[k] = v
    return out


def _read_pem(value: str | None, flag: str = "pem") -> str | None:
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
        if not value.startswith("@") and _is_base64(value):
            return value  # base64 of something else: the key check says what is wrong with it
        # otdfctl's words first (it takes base64 only)
        raise errors.InvalidArgument(f"{flag} must be base64 encoded (or a PEM block, or a readable PEM file)") \
            from None


def _is_base64(value: str) -> bool:
    import binascii

    try:
        return bool(base64.b64decode("".join(value.split()), validate=True))
    except (binascii.Error, ValueError):
        return False


def _is_base64_pem(value: str) -> bool:
    import base64
    import binascii

    try:
        return base64.b64decode("".join(value.split()), validate=True).lstrip().startswith(b"-----BEGIN")
    except (binascii.Error, ValueError):
        return False


def _print_kas_key(message, as_json: bool) -> None:
    """A policy.KasKey: otdfctl's --json (host.cli.gojson), or the table."""
    if as_json:
        gojson.echo_message(message)
    else:
        _print_key(records.key(message), False)


def _print_key(key, as_json: bool) -> None:
    if as_json:
        gojson.echo_message(key.message)
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


def _create_options(f, default_mode: str | None = None):
    for option in reversed([
        click.option("--kas", help="KAS id, uri or name."),
        click.option("--key-id", required=True, help="The key's id (kid) as clients see it."),
        click.option("--algorithm", "-a", required=True, type=ALGORITHM),
        # (click 8.5 takes an explicit default=None as a default: a required option gets no default at all)
        click.option("--mode", "-m", type=MODE,
                     **({"required": True} if default_mode is None else {"default": default_mode, "show_default": True})),
        click.option("--wrapping-key-id", help="Key id inside the manager (provider/remote) or the root key id (local)."),
        click.option("--default-wrapping-key", is_flag=True,
                     help="Provider/remote mode, ours: the provider config's default key (an empty key id) "
                          "instead of --wrapping-key-id."),
        click.option("--wrapping-key", "-w", help="Local mode: the root key as hex, to check it is the platform's."),
        click.option("--provider-config-id", "-p", help="Provider config (required for provider and remote modes)."),
        click.option("--public-key-pem", "-e", help="base64 of the PEM (as otdfctl), the PEM, or a file holding it."),
        click.option("--fetch-public-key", is_flag=True,
                     help="Remote mode, ours: ask the provider config's manager for the public key instead of "
                          "--public-key-pem (its plugin loaded on this side)."),
        click.option("--private-key-pem", help="PEM, or a file holding it (local/provider; generated when absent)."),
        click.option("--label", "-l", multiple=True, help="KEY=VALUE, repeatable."),
        # otdfctl's `--legacy true|false`; a bare --legacy is true.
        click.option("--legacy", type=LegacyFlag(), is_flag=False, flag_value=True, default=False,
                     help="A legacy key (at most one per KAS): --legacy [true|false]."),
        click.option("--json", "as_json", is_flag=True),
    ]):
        f = option(f)
    return f


def key_contexts(platform, mode: str, algorithm: str, wrapping_key_id, wrapping_key, provider_config_id,
                 public_key_pem, private_key_pem, fetch_public_key: bool = False, default_wrapping_key: bool = False):
    """(public_key_ctx, private_key_ctx or None) of a CreateKey/RotateKey, made as otdfctl makes them:
    the private key is generated (or read) here and wrapped before it leaves this process, in local
    mode by --wrapping-key (default: this process's root key), in provider mode by the provider
    config's manager built here (its plugin must be loaded: --key-manager-plugin). The server checks
    all of it; nothing here decides whether a key is acceptable."""
    mode = normalize_mode(mode)
    precheck(platform, mode, wrapping_key, public_key_pem, wrapping_key_id=wrapping_key_id,
             fetch_public_key=fetch_public_key, default_wrapping_key=default_wrapping_key)
    if mode in ("provider", "remote") and not provider_config_id:
        raise errors.InvalidArgument("Flag '--provider-config-id' is required")
    if public_key_pem:
        _check_public_pem(public_key_pem, algorithm)
    public = objects_pb2.PublicKeyCtx(pem=public_key_pem or "")
    if private_key_pem and mode in ("remote", "public_key"):  # never send it anywhere
        raise errors.InvalidArgument(f"mode {mode} keeps no private key here; remove --private-key-pem")
    if mode == "public_key":
        return public, None
    if wrapping_key and mode != "local":
        raise errors.InvalidArgument("--wrapping-key applies to local mode only")
    if mode == "remote":
        if not public_key_pem:  # --fetch-public-key
            public.pem = pem_base64(_manager_call(platform, provider_config_id,
                                                  lambda m, ctx: m.public_key(wrapping_key_id or "", ctx)))
        return public, (objects_pb2.PrivateKeyCtx(key_id=wrapping_key_id) if wrapping_key_id else None)
    private = crypto.load_private_pem(pem_text(private_key_pem, "--private-key-pem"), algorithm) if private_key_pem else \
        crypto.generate_private_key(algorithm)
    pem = crypto.private_pem(private)
    if not public_key_pem:
        public.pem = pem_base64(crypto.public_pem(private))
    if mode == "local":
        root = _wrapping_root_key(platform, wrapping_key)
        key_id, wrapped = wrapping_key_id, root.encrypt(pem)
    else:
        key_id = wrapping_key_id or ""
        wrapped = b"" if not provider_config_id else \
            _manager_call(platform, provider_config_id, lambda m, ctx: m.wrap(key_id, pem, ctx))
    return public, objects_pb2.PrivateKeyCtx(key_id=key_id, wrapped_key=base64.b64encode(wrapped).decode("ascii"))


def precheck(platform, mode: str, wrapping_key, public_key_pem, missing=None, *, wrapping_key_id=None,
             fetch_public_key: bool = False, default_wrapping_key: bool = False, missing_wrapping_key_id=None) -> None:
    """otdfctl's flag checks, in its order, made before anything is read or sent (`missing`: the
    error for a local-mode call with neither --wrapping-key nor a root key in this process)."""
    mode = normalize_mode(mode)
    if default_wrapping_key:
        if mode not in ("provider", "remote") or wrapping_key_id:
            raise errors.InvalidArgument("--default-wrapping-key is for provider and remote mode, "
                                         "without --wrapping-key-id")
    elif mode != "public_key" and not wrapping_key_id:
        raise missing_wrapping_key_id or errors.InvalidArgument(f"wrapping-key-id is required for mode {mode}")
    if mode == "remote" and not public_key_pem and not fetch_public_key:
        raise errors.InvalidArgument("Flag '--public-key-pem' is required")
    if mode == "public_key" and not public_key_pem:
        raise errors.InvalidArgument("Flag '--public-key-pem' is required")
    if mode == "local":
        if wrapping_key and any(c not in "0123456789abcdefABCDEF" for c in wrapping_key):
            raise errors.InvalidArgument("wrapping-key must be hex encoded (--wrapping-key)")  # otdfctl's words
        if not wrapping_key and platform.root_key is None:
            raise missing or errors.FailedPrecondition(
                "Flag '--wrapping-key' is required: local mode wraps the new private key with the platform's root "
                "key: give it as --wrapping-key (hex), or set PLATFORM_ROOT_KEY / --root-key-file")


def _check_public_pem(pem: str, algorithm: str) -> None:
    """otdfctl's `invalid public key pem: ...` for a PEM that is not a public key of the algorithm."""
    try:
        crypto.load_public_pem(pem_text(pem, "--public-key-pem"), algorithm)
    except errors.InvalidArgument as e:
        raise errors.InvalidArgument(f"invalid public key pem: {e.message}") from None
    except ValueError as e:
        raise errors.InvalidArgument(f"invalid public key pem: {e}") from None


def _wrapping_root_key(platform, wrapping_key):
    from host.rootkey import RootKey

    if wrapping_key:
        return RootKey.from_hex(wrapping_key, "--wrapping-key")
    return platform.root_key  # precheck made sure there is one


def _manager_call(platform, provider_config_id: str, fn):
    """fn(manager, ctx) on the provider config's manager, built in this process from the stored config."""
    pc = api().km("GetProviderConfig", km.GetProviderConfigRequest(id=provider_config_id)).provider_config
    manager = platform.registry.build(pc.manager, bytes(pc.config_json))
    try:
        return fn(manager, CallContext.with_timeout(MANAGER_TIMEOUT_S))
    finally:
        manager.close()


def kas_id(ref: str) -> str:
    """The id of --kas (id, uri or name)."""
    with failure(f"Failed to resolve KAS identifier '{ref}'"):
        resp = api().kr("GetKeyAccessServer", kr.GetKeyAccessServerRequest(**records.kas_identifier(ref)))
    return resp.key_access_server.id


def find_key(ref: str, kas: str | None = None) -> records.Key:
    """otdfctl's --key: the key's UUID, or with --kas its key id on that KAS."""
    from host.store.validation import is_uuid

    if kas:
        ident = kr.KasKeyIdentifier(kid=ref, **records.kas_identifier(kas))
        try:
            return records.key(api().kr("GetKey", kr.GetKeyRequest(key=ident)).kas_key)
        except errors.NotFound:
            if not is_uuid(ref):
                raise  # else the key's UUID, given with its KAS
    elif not is_uuid(ref):
        raise errors.InvalidArgument("Flag '--kas' is required")  # a key id is only unique on its KAS
    return records.key(api().kr("GetKey", kr.GetKeyRequest(id=ref)).kas_key)


def _metadata(target, labels: dict[str, str] | None) -> None:
    if labels:
        target.metadata.labels.update(labels)


def _create(platform, kas, key_id, algorithm, mode, wrapping_key_id, default_wrapping_key, wrapping_key,
            provider_config_id, public_key_pem, fetch_public_key, private_key_pem, label, legacy, as_json,
            action="Failed to create kas key"):
    importing = action == "Failed to import kas key"
    if not kas:
        raise missing_flag("kas")
    precheck(platform, mode, wrapping_key, public_key_pem, wrapping_key_id=wrapping_key_id,
             fetch_public_key=fetch_public_key, default_wrapping_key=default_wrapping_key,
             missing=missing_flag("wrapping-key") if importing else None,
             missing_wrapping_key_id=missing_flag("wrapping-key-id") if importing else None)
    public, private = key_contexts(platform, mode, algorithm, wrapping_key_id, wrapping_key, provider_config_id,
                                   _read_pem(public_key_pem, "public-key-pem"),
                                   _read_pem(private_key_pem, "private-key-pem"), fetch_public_key,
                                   default_wrapping_key)
    req = kr.CreateKeyRequest(kas_id=kas_id(kas), key_id=key_id, key_algorithm=convert.algorithm_enum(algorithm),
                              key_mode=_mode_enum(mode), public_key_ctx=public, legacy=legacy,
                              provider_config_id=provider_config_id or "")
    if private is not None:
        req.private_key_ctx.CopyFrom(private)
    _metadata(req, _labels(label))
    with failure(action):
        made = api().kr("CreateKey", req).kas_key
    _print_kas_key(made, as_json)


def _mode_enum(mode: str) -> int:
    return {v: k for k, v in convert.KEY_MODES.items()}[normalize_mode(mode)]


@key.command("create")
@_create_options
@click.pass_obj
def create(platform, **options):
    """Create a KAS key in any of the four modes."""
    _create(platform, **options)


@key.command("import")
@lambda f: _create_options(f, default_mode="local")  # otdfctl's import has no --mode: a local key
@click.pass_obj
def import_(platform, **options):
    """Import an existing key pair (--public-key-pem, and --private-key-pem for local/provider)."""
    if not options["public_key_pem"]:
        raise missing_flag("public-key-pem")
    if options["mode"] in ("local", "provider") and not options["private_key_pem"]:
        raise missing_flag("private-key-pem")  # (otdfctl's import is local only)
    _create(platform, **options, action="Failed to import kas key")


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
    if not given:
        raise missing_flag("key")  # cobra's words (otdfctl marks --key required)
    if len(given) != 1:
        raise click.UsageError("give --key (the key's UUID or key id)")
    with failure("Failed to get kas key"):
        found = find_key(given[0], kas=kas)
    _print_key(found, as_json)


@key.command("list")
@click.option("--kas", help="Only keys of this KAS (id, uri or name).")
@click.option("--algorithm", "-a", type=ALGORITHM)
@click.option("--legacy", type=LegacyFlag(), default=None, help="true: only legacy keys; false: only the others.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Page size (default and maximum: the server's).")
@click.option("--offset", type=click.IntRange(0), default=0)
@records.sort_options(("key_id", "created_at", "updated_at", "key_status"))
@records.search_option("a substring of the key id, any case")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_(platform, kas, algorithm, legacy, limit, offset, sort_field, order, search, as_json):
    """List keys with pagination, newest first unless --sort/--order."""
    req = kr.ListKeysRequest(pagination=records.page(limit, offset),
                             sort=records.sort(kr.KasKeysSort, "SORT_KAS_KEYS_TYPE", sort_field, order),
                             key_algorithm=convert.algorithm_enum(algorithm) if algorithm else 0)
    if kas:
        ((field, value),) = records.kas_identifier(kas).items()
        setattr(req, {"kas_id": "kas_id", "uri": "kas_uri", "name": "kas_name"}[field], value)
    if legacy is not None:
        req.legacy = legacy
    with failure("Failed to list kas keys"):  # as otdfctl: an empty --search is none
        resp = api().kr("ListKeys", newer_fields.with_search(req, search or None))
    if as_json:  # the whole ListKeysResponse
        gojson.echo_message(resp)
        return
    keys, total = [records.key(k) for k in resp.kas_keys], resp.pagination.total
    echo_table(("ID", "KAS", "KEY_ID", "ALGORITHM", "MODE", "STATUS", "PROVIDER"),
               [(k.id, k.kas_uri, k.key_id, k.algorithm, k.mode, k.status,
                 k.provider_config.name if k.provider_config else "-") for k in keys])
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
    req = kr.UpdateKeyRequest(id=id_)
    if labels or force_replace_labels:
        req.metadata.labels.update(labels)
        req.metadata.SetInParent()  # an empty REPLACE clears the labels
        req.metadata_update_behavior = (common_pb2.METADATA_UPDATE_ENUM_REPLACE if force_replace_labels
                                        else common_pb2.METADATA_UPDATE_ENUM_EXTEND)
    with failure("Failed to update kas key"):
        updated = api().kr("UpdateKey", req).kas_key
    if as_json:  # as otdfctl: the key read back
        with failure("Failed to get kas key"):
            updated = api().kr("GetKey", kr.GetKeyRequest(id=updated.key.id)).kas_key
    _print_kas_key(updated, as_json)


@key.command("rotate")
@click.option("--key", "-k", "old_key", required=True, help="The active key to rotate out: its UUID or key id.")
@click.option("--kas", help="KAS id, uri or name.")
@click.option("--key-id", required=True, help="The key id of the new key.")
@click.option("--algorithm", "-a", required=True, type=ALGORITHM)
@click.option("--mode", "-m", required=True, type=MODE)
@click.option("--wrapping-key-id")
@click.option("--default-wrapping-key", is_flag=True, help="Provider/remote mode, ours: the config's default key.")
@click.option("--wrapping-key", "-w", help="Local mode: the root key as hex, to check it is the platform's.")
@click.option("--provider-config-id", "-p")
@click.option("--public-key-pem", "-e")
@click.option("--fetch-public-key", is_flag=True, help="Remote mode, ours: the public key from the manager.")
@click.option("--private-key-pem")
@click.option("--label", "-l", multiple=True, help="KEY=VALUE for the new key (default: the old key's labels).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def rotate(platform, old_key, kas, key_id, algorithm, mode, wrapping_key_id, default_wrapping_key, wrapping_key,
           provider_config_id, public_key_pem, fetch_public_key, private_key_pem, label, as_json):
    """Replace a key: the new one (--key-id) becomes active, the old one (--key) still unwraps."""
    # as otdfctl: every flag of the new key is checked before the old key is looked up
    precheck(platform, mode, wrapping_key, public_key_pem, wrapping_key_id=wrapping_key_id,
             fetch_public_key=fetch_public_key, default_wrapping_key=default_wrapping_key)
    if normalize_mode(mode) in ("provider", "remote") and not provider_config_id:
        raise errors.InvalidArgument("Flag '--provider-config-id' is required")
    with failure("Invalid key identifier"):
        old = find_key(old_key, kas=kas)
    public, private = key_contexts(platform, mode, algorithm, wrapping_key_id, wrapping_key, provider_config_id,
                                   _read_pem(public_key_pem, "public-key-pem"),
                                   _read_pem(private_key_pem, "private-key-pem"), fetch_public_key,
                                   default_wrapping_key)
    new_key = kr.RotateKeyRequest.NewKey(key_id=key_id, algorithm=convert.algorithm_enum(algorithm),
                                         key_mode=_mode_enum(mode), public_key_ctx=public,
                                         provider_config_id=provider_config_id or "")
    if private is not None:
        new_key.private_key_ctx.CopyFrom(private)
    if label:
        _metadata(new_key, _labels(label))
    with failure("Failed to rotate key"):
        resp = api().kr("RotateKey", kr.RotateKeyRequest(id=old.id, new_key=new_key))
    new, rotated = records.key(resp.kas_key), records.key(resp.rotated_resources.rotated_out_key)
    if as_json:  # otdfctl's RotateKeyResult: its two fields have no omitempty
        gojson.echo({"kas_key": gojson.go_json(resp.kas_key if resp.HasField("kas_key") else None),
                     "rotated_resources": gojson.go_json(resp.rotated_resources
                                                         if resp.HasField("rotated_resources") else None)})
    else:
        click.echo(f"rotated {rotated.key_id} -> {new.key_id} ({new.algorithm}, {new.mode}) on {new.kas_uri}")


@key.group("base")
def base():
    """The platform's base key (published in the well-known configuration)."""


@base.command("get")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def base_get(platform, as_json):
    """Show the base key."""
    with failure("Failed to get base key"):
        resp = api().kr("GetBaseKey", kr.GetBaseKeyRequest())
    if not resp.HasField("base_key"):  # otdfctl's ExitWithError("No base key found", nil)
        raise errors.NotFound("No base key found" if as_json else
                              "No base key found: set one with `key base set --key KEY`", worded=True)
    if as_json:  # the policy.SimpleKasKey
        gojson.echo_message(resp.base_key)
    else:  # the table shows the whole key
        _print_key(records.key(api().kr("GetKey", kr.GetKeyRequest(key=kr.KasKeyIdentifier(
            kas_id=resp.base_key.kas_id, kid=resp.base_key.public_key.kid))).kas_key), False)


@base.command("set")
@click.option("--key", "-k", "key_ref", required=True, help="The key's UUID or key id.")
@click.option("--kas", help="KAS id, uri or name (when several KAS hold that key id).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def base_set(platform, key_ref, kas, as_json):
    """Make an active key the base key."""
    with failure("Invalid key identifier"):
        target = find_key(key_ref, kas=kas)
    with failure("Failed to set base key"):
        resp = api().kr("SetBaseKey", kr.SetBaseKeyRequest(id=target.id))
    if as_json:  # the whole SetBaseKeyResponse
        gojson.echo_message(resp)
        return
    new = records.simple_key(resp.new_base_key)
    previous = records.simple_key(resp.previous_base_key) if resp.HasField("previous_base_key") else None
    if True:
        click.echo(f"base key: {new.key_id} on {new.kas_uri}"
                   + (f" (was {previous.key_id} on {previous.kas_uri})" if previous else ""))


@key.command("list-mappings")
@click.option("--id", "-i", "id_", help="The key's UUID.")
@click.option("--key-id", help="The key's key id (with --kas).")
@click.option("--kas", help="KAS id, uri or name.")
@click.option("--key", "-k", "key_ref", help="The key's UUID or key id (this CLI's form of --id/--key-id).")
@click.option("--limit", "-l", type=click.IntRange(1), default=None, help="Page size (default: the server's).")
@click.option("--offset", "-o", type=click.IntRange(0), default=0)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_mappings(platform, id_, key_id, kas, key_ref, limit, offset, as_json):
    """Attributes, namespaces and values mapped to keys: none (this platform serves no attributes)."""
    # otdfctl's flag groups, in its words
    if (key_id is None) != (kas is None) and key_ref is None:
        missing = "kas" if kas is None else "key-id"
        raise click.UsageError("if any flags in the group [key-id kas] are set they must all be set; "
                               f"missing [{missing}]")
    if id_ is not None and kas is not None:
        raise click.UsageError("if any flags in the group [kas id] are set none of the others can be; "
                               "[id kas] were all set")
    req = kr.ListKeyMappingsRequest(pagination=records.page(limit, offset))
    if id_ is not None:
        req.id = id_
    elif key_id is not None:
        req.key.CopyFrom(kr.KasKeyIdentifier(kid=key_id, **records.kas_identifier(kas)))
    elif key_ref:
        req.id = find_key(key_ref, kas=kas).id
    resp = api().kr("ListKeyMappings", req)  # the server's answer is always empty (see the README)
    if as_json:  # the whole ListKeyMappingsResponse
        gojson.echo_message(resp)
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
    from host.server.kasregistry import unsafe_pb2

    with failure(f"Failed to delete key ({id_})"):
        resp = api().unsafe("UnsafeDeleteKasKey", unsafe_pb2.UnsafeDeleteKasKeyRequest(id=id_, kid=key_id,
                                                                                       kas_uri=kas_uri))
    _print_kas_key(resp.key, as_json)


@unsafe.command("update")
@click.option("--id", "-i", "id_", required=True, help="The key's UUID.")
@click.option("--mode", "-m", default=None, help='The new mode: "remote" or "public_key".')
@click.option("--provider-config-id", "-p", default=None,
              help="Provider config: needed for remote mode, or alone to move a remote key to another.")
@click.option("--force", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def unsafe_update(platform, id_, mode, provider_config_id, force, as_json):
    """Switch a key between remote and public_key mode, or change a remote key's provider config, in
    place (its key id, KAS and public key stay): what decrypts with it changes retroactively."""
    from host.store.validation import is_uuid

    if not is_uuid(id_):
        raise click.UsageError(f"Flag '--id' received value '{id_}' and must be a valid UUID")
    if provider_config_id is not None and not is_uuid(provider_config_id):
        raise click.UsageError(f"Optional flag '--provider-config-id' received value '{provider_config_id}' "
                               "and must be a valid UUID if used")
    target = 0
    if mode:
        if mode not in ("remote", "public_key"):
            raise click.UsageError('Invalid key mode: mode must be "remote" or "public_key"')
        target = _mode_enum(mode)
    with failure("Failed to get kas key"):
        existing = records.key(api().kr("GetKey", kr.GetKeyRequest(id=id_)).kas_key)
    if not force:
        click.confirm(f"Unsafely update key {existing.key_id!r} ({existing.id}) of {existing.kas_uri}? What "
                      "decrypts with it changes", abort=True)
    with failure("Failed to update kas key"):
        resp = api().unsafe("UnsafeUpdateKey", newer_fields.UnsafeUpdateKeyRequest(
            id=id_, target_key_mode=target, provider_config_id=provider_config_id or ""))
    _print_kas_key(resp.key, as_json)
