"""`python -m host.cli ...`: the `platform` command (used by `platform serve` to start itself again)."""

from host.cli import run

run()
