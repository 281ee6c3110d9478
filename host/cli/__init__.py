"""The `platform` command: global options, then one module per command group.

    platform [--key-manager-plugin PATH ...] [--db URL] [--root-key-file F] COMMAND
    platform --host URL [--with-access-token T | --with-client-creds-file F] policy ...

Groups mirror otdfctl: `policy keymanagement provider ...`,
`policy kas-registry ...`, plus `kas`, `plugins`, `db` and `serve`.
"""

from __future__ import annotations

import os
import sys

import click

from host.app import Platform, Settings
from host.cli.cobra import CobraGroup
from host.errors import PlatformError

DEPRECATED_FACTORIES_HELP = "Deprecated: NAME=PATH[,NAME=PATH]; use --key-manager-plugin PATH."


def _split_env_paths(value: str | None) -> list[str]:
    """':'-separated; `isolated:` is a prefix of the path after it, not a path."""
    paths: list[str] = []
    for p in (value or "").split(":"):
        if paths and paths[-1] == "isolated":
            paths[-1] = f"isolated:{p}"
        elif p:
            paths.append(p)
    return paths


def _print_version(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from host import __version__
    from host.abi import ABI_MAJOR, ABI_MINOR

    click.echo(f"platform {__version__} (key-manager ABI {ABI_MAJOR}.{ABI_MINOR})")
    ctx.exit()


def _load_config_file(ctx: click.Context, _param, path: str | None) -> None:
    """Eager: fills unset environment variables and option defaults before the other options are read."""
    if not path or ctx.resilient_parsing:
        return
    from host import config_file

    try:
        loaded = config_file.load(path)
    except PlatformError as e:
        raise click.BadParameter(e.message, ctx=ctx, param=_param) from None
    ctx.meta["config_file"] = loaded
    ctx.default_map = {**loaded.default_map, **(ctx.default_map or {})}


# otdfctl's persistent (root) flags that we serve: cobra takes them anywhere on the command line
# (`otdfctl policy kas-registry --host H --with-client-creds-file F list`), click only before the
# subcommand, so PersistentGroup moves them to the front before parsing.
PERSISTENT_OPTIONS = ("--host", "--with-access-token", "--with-client-creds-file", "--with-client-creds", "--log-level")


def hoist_persistent(args: list[str]) -> list[str]:
    """Under `policy` only (`serve` and `doctor` have a --host of their own): the persistent options
    found after `policy` (each with its value) move in front of it, the rest keep their order; `--`
    ends the scan."""
    if "policy" not in args:
        return args
    start = args.index("policy")
    head, args = args[:start], args[start:]
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        name = a.split("=", 1)[0]
        if name in PERSISTENT_OPTIONS:
            if "=" in a or i + 1 >= len(args):
                front.append(a)
                i += 1
            else:
                front.extend(args[i:i + 2])
                i += 2
            continue
        rest.append(a)
        i += 1
    return head + front + rest


class PersistentGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_persistent(list(args)))


LOG_LEVELS = {"debug": 2, "info": 1, "warn": 0, "error": 0}


@click.group(cls=PersistentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="PLATFORM_CONFIG", is_eager=True,
              expose_value=False, callback=_load_config_file, metavar="FILE",
              help="YAML configuration file (docs/platform.example.yaml). Also PLATFORM_CONFIG. "
                   "Flags and environment variables take precedence over it.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print the platform's version and its plugin ABI version, then exit.")
@click.option("--key-manager-plugin", "plugins", multiple=True, metavar="PATH",
              help="Load a key-manager plugin (.so). Repeatable. Also PLATFORM_KEY_MANAGER_PLUGINS (':'-separated). "
                   "isolated:PATH runs it in a supervised child process; PATH#sha256=HEX pins its digest.")
@click.option("--key-manager-factories", "legacy_factories", default=None, metavar="NAME=PATH[,...]",
              help=DEPRECATED_FACTORIES_HELP)
@click.option("--db", "db_url", envvar="PLATFORM_DB_URL", default=None, metavar="URL",
              help="Policy database URL (default: sqlite:///.platform/platform.db). Also PLATFORM_DB_URL.")
@click.option("--root-key-file", type=click.Path(dir_okay=False), envvar="PLATFORM_ROOT_KEY_FILE", default=None,
              help="File holding the 64-hex-char root key (or set PLATFORM_ROOT_KEY).")
@click.option("--host", "api_host", envvar="PLATFORM_HOST", default=None, metavar="URL",
              help="Drive a running platform over its API (as otdfctl) instead of the database. Also PLATFORM_HOST.")
@click.option("--with-access-token", "access_token", default=None, metavar="TOKEN",
              help="With --host: the bearer token to send (never printed).")
@click.option("--with-client-creds-file", "creds_file", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help='With --host: JSON {"clientId", "clientSecret"}; a token is fetched from the platform\'s issuer.')
@click.option("--with-client-creds", "creds_json", default=None, metavar="JSON",
              help="With --host: the same JSON inline (as otdfctl; prefer the file: argv is visible to others).")
@click.option("--allow-plaintext-secrets", is_flag=True, default=False,
              help="Store provider configs holding secrets even without a root key (unencrypted). "
                   "Also PLATFORM_ALLOW_PLAINTEXT_SECRETS=true.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("--log-level", type=click.Choice(sorted(LOG_LEVELS)), default=None,
              help="As otdfctl: debug is -vv, info -v; warn and error add nothing.")
@click.pass_context
def main(ctx: click.Context, plugins, legacy_factories, db_url, root_key_file, api_host, access_token, creds_file,
         creds_json, allow_plaintext_secrets, verbose, log_level):
    """KAS key-manager platform.

    --host, --with-access-token, --with-client-creds-file, --with-client-creds and --log-level may
    also come after the subcommand (otdfctl's persistent flags).
    """
    if log_level is not None:
        verbose = max(verbose, LOG_LEVELS[log_level])
    if allow_plaintext_secrets:  # read where configs are stored (host.plaintext), in this process
        from host import plaintext

        os.environ[plaintext.ALLOW_ENV] = "true"
    _api_target(ctx, api_host, access_token, creds_file, creds_json)
    paths = list(plugins) + _split_env_paths(os.environ.get("PLATFORM_KEY_MANAGER_PLUGINS"))
    if not paths and "config_file" in ctx.meta:  # the file's plugins only when neither flag nor env names any
        paths = list(ctx.meta["config_file"].plugins)
    if legacy_factories:
        legacy_paths = _parse_legacy_factories(legacy_factories)
        new_form = " ".join(f"--key-manager-plugin={p}" for p in legacy_paths)
        click.echo(f"warning: --key-manager-factories is deprecated; use {new_form}", err=True)
        paths.extend(legacy_paths)
    if db_url:  # an explicit SQLite path: relative, or in a directory to be created, is said so
        from host.cli import dburl

        for warning in dburl.check(db_url):
            click.echo(warning, err=True)
    settings = Settings(plugin_paths=tuple(paths), db_url=db_url, root_key_file=root_key_file, verbosity=verbose)
    ctx.obj = Platform(settings)
    ctx.call_on_close(ctx.obj.close)


def _api_target(ctx: click.Context, api_host, access_token, creds_file, creds_json=None) -> None:
    """Where `policy ...` goes (host.cli.remote): --host, or the database (--db, the default)."""
    from click.core import ParameterSource

    given = [v for v in (access_token, creds_file, creds_json) if v is not None]
    if api_host is None:
        if given:
            raise click.UsageError("--with-access-token, --with-client-creds-file and --with-client-creds need --host")
        return
    if ctx.get_parameter_source("db_url") == ParameterSource.COMMANDLINE:
        raise click.UsageError("give --host (the API) or --db (the database), not both")
    if len(given) > 1:
        raise click.UsageError("give one of --with-access-token, --with-client-creds-file or --with-client-creds, "
                               "not both")
    if "://" not in api_host:
        api_host = f"https://{api_host}"  # as otdfctl: a bare host name is https
    ctx.meta["api_target"] = {"host": api_host, "token": access_token, "creds_file": creds_file,
                              "creds_json": creds_json}


def _parse_legacy_factories(value: str) -> list[str]:
    paths = []
    for item in value.split(","):
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--key-manager-factories")
        paths.append(path.strip())
    return paths


@main.group(cls=CobraGroup)
def policy():
    """Policy: provider configurations, KAS registry and keys."""


@policy.group("keymanagement")
def keymanagement():
    """Key management (provider configurations)."""


@policy.group("kas-registry")
def kas_registry():
    """Key Access Server registry and KAS keys."""


# Command modules attach themselves to the groups above.
from host.cli import plugins as _plugins  # noqa: E402,F401
from host.cli import keys as _keys  # noqa: E402,F401
from host.cli import kas as _kas  # noqa: E402,F401
from host.cli import dev as _dev  # noqa: E402,F401
from host.cli import provider as _provider  # noqa: E402,F401
from host.cli import kas_servers as _kas_servers  # noqa: E402,F401
from host.cli import db as _db  # noqa: E402,F401
from host.cli import serve as _serve  # noqa: E402,F401
from host.cli import abi as _abi  # noqa: E402,F401
from host.cli import config as _config  # noqa: E402,F401
from host.cli import doctor as _doctor  # noqa: E402,F401


def json_errors(args: list[str]) -> bool:
    """otdfctl's --json on a `policy ...` command: its errors are JSON too (handleExecuteError, ExitWithError)."""
    if "policy" not in args:
        return False
    rest = args[args.index("policy") + 1:]
    if "--" in rest:
        rest = rest[:rest.index("--")]
    return any(a == "--json" or a.lower() in ("--json=true", "--json=1") for a in rest)


def _json_error(message: str) -> None:
    """otdfctl's error with --json: {"message", "status": "ERROR"} on stderr, exit 1."""
    from host.cli import gojson

    gojson.echo(gojson.status_json("ERROR", message), err=True)
    sys.exit(1)


def run() -> None:
    """Entry point wrapper: PlatformError -> one line on stderr, exit 1, no traceback (with --json on a
    policy command, otdfctl's JSON error instead)."""
    as_json = json_errors(sys.argv[1:])
    try:
        main.main(standalone_mode=False)
    except click.exceptions.Abort:
        if as_json:
            _json_error("aborted")
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as e:
        if as_json:
            _json_error(getattr(e, "cobra_message", None) or e.format_message())
        e.show()
        sys.exit(e.exit_code)
    except PlatformError as e:
        if as_json:
            _json_error(e.message)
        click.echo(f"error: {e.message} [{e.code}]", err=True)  # the Connect code, e.g. permission_denied
        sys.exit(1)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:  # a bug of ours or a plugin's: one line (the type and where), no traceback
        import traceback

        frame = traceback.extract_tb(e.__traceback__)[-1]
        click.echo(f"error: internal error ({type(e).__name__} at {frame.filename.rsplit('/', 1)[-1]}:"
                   f"{frame.lineno}); run with PLATFORM_TRACEBACK=1 for the traceback [internal]", err=True)
        if os.environ.get("PLATFORM_TRACEBACK") == "1":
            traceback.print_exc()
        sys.exit(1)
