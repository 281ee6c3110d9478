"""`platform abi`: where the installed C ABI header is, for plugin authors outside this repository.

    cc -shared -fPIC $(platform abi --cflags) -o my-manager.so my_manager.c
    platform abi --pkg-config > keymanager.pc   # then PKG_CONFIG_PATH=. pkg-config --cflags keymanager
"""

from __future__ import annotations

import click

from host import __version__
from host.cli import main


def _abi() -> tuple[str, str]:
    """(ABI version, include dir); imported late: host.abi parses the header."""
    from host import abi

    return f"{abi.ABI_MAJOR}.{abi.ABI_MINOR}", str(abi.header_path().parent)


def pkg_config_text() -> str:
    version, include_dir = _abi()
    return (f"includedir={include_dir}\n\n"
            "Name: keymanager\n"
            "Description: KAS key-manager plugin C ABI (keymanager.h)\n"
            f"Version: {version}\n"
            "Cflags: -I${includedir}\n")


@main.command("abi")
@click.option("--include-dir", "what", flag_value="include-dir", help="Print the directory holding keymanager.h.")
@click.option("--cflags", "what", flag_value="cflags", help="Print the compiler flag that finds keymanager.h.")
@click.option("--pkg-config", "what", flag_value="pkg-config", help="Print a keymanager.pc for pkg-config.")
def abi_(what):
    """The key-manager C ABI this platform speaks, and where its header is installed."""
    version, include_dir = _abi()
    if what == "include-dir":
        click.echo(include_dir)
    elif what == "cflags":
        click.echo(f"-I{include_dir}")
    elif what == "pkg-config":
        click.echo(pkg_config_text(), nl=False)
    else:
        click.echo(f"key-manager ABI {version} (platform {__version__})\nheader: {include_dir}/keymanager.h")
