"""`platform plugins list|inspect|runner`: what the loaded plugins offer, and the isolated-plugin runner."""

from __future__ import annotations

import json

import click

from host.cli import main
from host.loader import load_plugin
from host.pinning import file_digest


@main.group()
def plugins():
    """Inspect key-manager plugins."""


def _print_managers(rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"managers": rows}, indent=2))
        return
    if not rows:
        click.echo("no managers")
        return
    header = ("NAME", "PLUGIN", "VERSION", "ABI", "THREAD-SAFE", "CAPABILITIES", "PATH")
    table = [header] + [(r["name"], r["plugin"], r["plugin_version"], r["abi_version"],
                         "yes" if r["thread_safe"] else "no", ",".join(r["capabilities"]), r["path"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_(platform, as_json):
    """Managers registered by the built-ins and the loaded plugins."""
    _print_managers([f.describe() for f in platform.registry.factories()], as_json)


@plugins.command("inspect")
@click.argument("path", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def inspect(path, as_json):
    """Load PATH on its own and show its descriptor and the sha256 to pin it with."""
    plugin = load_plugin(path)
    digest = file_digest(path)  # after loading: load_plugin names a missing or non-ELF file
    rows = [f.describe() for f in plugin.factories]
    if as_json:
        click.echo(json.dumps({"path": plugin.path, "plugin": plugin.name, "plugin_version": plugin.version,
                               "abi_version": plugin.abi_version, "sha256": digest, "managers": rows}, indent=2))
    else:
        click.echo(f"{plugin.path}: plugin {plugin.name} {plugin.version}, ABI {plugin.abi_version}")
        click.echo(f"sha256: {digest}  (pin: --key-manager-plugin '{plugin.path}#sha256={digest}')")
        _print_managers(rows, False)


@plugins.command("runner")
def runner_():
    """Print the path of km-plugin-host, which runs isolated: plugins; build it first if needed."""
    from host.isolation import runner

    click.echo(runner.path())
