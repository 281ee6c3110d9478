"""`platform config show`: every file setting's effective value and where it came from.

Sources: flag > env > file > default (host.config_file). Secrets are never shown: the
root key only by its source, a database URL without its password.
"""

from __future__ import annotations

import json
import os

import click
from click.core import ParameterSource

from host import config_file
from host.cli import main

_OPTION_ENV = {"db_url": "PLATFORM_DB_URL", "root_key_file": "PLATFORM_ROOT_KEY_FILE"}


def _redacted_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show only the scheme
        return url.split(":", 1)[0] + ":***"


def _source(var: str | None, loaded: config_file.FileSettings | None, present: bool) -> str:
    if not present:
        return "default"
    if loaded is not None and var in loaded.env_filled:
        return "file"
    return "env"


def rows(ctx: click.Context) -> list[dict]:
    root = ctx.find_root()
    loaded: config_file.FileSettings | None = root.meta.get("config_file")
    platform = ctx.obj
    out = []
    db_source = root.get_parameter_source("db_url")
    out.append({"setting": "database.url", "value": _redacted_url(platform.settings.effective_db_url),
                "source": "flag" if db_source == ParameterSource.COMMANDLINE
                else _source("PLATFORM_DB_URL", loaded, db_source == ParameterSource.ENVIRONMENT)})
    key_file_source = root.get_parameter_source("root_key_file")
    if platform.settings.root_key_file:
        out.append({"setting": "root_key.file", "value": platform.settings.root_key_file,
                    "source": "flag" if key_file_source == ParameterSource.COMMANDLINE
                    else _source("PLATFORM_ROOT_KEY_FILE", loaded, True)})
    elif config_file.ROOT_KEY_ENV in os.environ:
        where = loaded.root_key_source if loaded and config_file.ROOT_KEY_ENV in loaded.env_filled else None
        out.append({"setting": "root_key", "value": f"(set, from {where or config_file.ROOT_KEY_ENV})",
                    "source": _source(config_file.ROOT_KEY_ENV, loaded, True)})
    else:
        out.append({"setting": "root_key", "value": "(none)", "source": "default"})
    plugin_source = "flag/env" if platform.settings.plugin_paths and not (
        loaded and platform.settings.plugin_paths == loaded.plugins) else ("file" if loaded and loaded.plugins
                                                                           else "default")
    out.append({"setting": "plugins", "value": list(platform.settings.plugin_paths), "source": plugin_source})
    for key, var in config_file.ENV_SETTINGS.items():
        if key in ("database.url", "root_key.file"):
            continue
        present = var in os.environ
        out.append({"setting": key, "value": os.environ.get(var) if present else None,
                    "source": _source(var, loaded, present)})
    for key, (command, option) in config_file.OPTION_SETTINGS.items():
        in_file = loaded is not None and key in loaded.values
        out.append({"setting": key, "value": loaded.values[key] if in_file else None,
                    "source": "file" if in_file else "default" + (f" (see `platform {command} --help`)"
                                                                  if command else "")})
    return out


@main.group("config")
def config():
    """The configuration file (--config / PLATFORM_CONFIG)."""


@config.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show(ctx, as_json):
    """Effective settings and their source (flag, env, file, default); secrets redacted."""
    table = rows(ctx)
    if as_json:
        click.echo(json.dumps({"config_file": getattr(ctx.find_root().meta.get("config_file"), "path", None),
                               "settings": table}, indent=2))
        return
    width = max(len(r["setting"]) for r in table)
    for r in table:
        value = "-" if r["value"] is None else (",".join(r["value"]) or "-") if isinstance(r["value"], list) \
            else str(r["value"])
        click.echo(f"{r['setting'].ljust(width)}  {value}  [{r['source']}]")
