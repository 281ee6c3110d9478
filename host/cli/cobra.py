"""otdfctl's command-line conventions (cobra's) for the `policy ...` commands.

- A missing required flag is cobra's `required flag(s) "NAME" not set`.
- A command without positional parameters takes and ignores stray words, as a cobra leaf
  command does (`--config {invalid: json}` unquoted sends `{invalid:`, not a usage error).
- `failure("Failed to get kas key")`: an API error raised inside is otdfctl's line for it,
  `Failed to get kas key: not_found: <message>` (its prefix, then the Connect error as
  connect-go prints it: code, colon, message); the code stays the error's code.
"""

from __future__ import annotations

import contextlib

import click

from host.errors import PlatformError


def missing_flag(name: str, ctx: click.Context | None = None) -> click.UsageError:
    err = click.UsageError(f'required flag(s) "{name}" not set (--{name})', ctx=ctx)
    err.cobra_message = f'required flag(s) "{name}" not set'  # the --json error's message, cobra's exactly
    return err


class CobraCommand(click.Command):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not any(isinstance(p, click.Argument) for p in self.params):
            self.allow_extra_args = True

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.MissingParameter as e:
            param = e.param
            if isinstance(param, click.Option):
                longs = [o for o in param.opts if o.startswith("--")] or param.opts
                raise missing_flag(longs[0].lstrip("-"), ctx) from None
            raise


class CobraGroup(click.Group):
    command_class = CobraCommand
    group_class = type  # subgroups are CobraGroups too


@contextlib.contextmanager
def failure(prefix: str):
    try:
        yield
    except PlatformError as e:
        if not getattr(e, "otdfctl_prefixed", False):
            e.message = f"{prefix}: {e.code}: {getattr(e, 'public_text', e.message)}"
            e.otdfctl_prefixed = True
        raise


class OtdfctlChoice(click.Choice):
    """A choice whose refusal is otdfctl's line for it (`invalid mode`, `Invalid algorithm: ...`)."""

    def __init__(self, choices, message: str):
        super().__init__(choices)
        self.message = message

    def convert(self, value, param, ctx):
        if value in self.choices:
            return value
        raise click.UsageError(f"{self.message} {value!r} (one of: {', '.join(self.choices)})", ctx=ctx)


class LegacyFlag(click.types.BoolParamType):
    """otdfctl's `--legacy true|false`."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            raise click.UsageError("Invalid legacy flag: invalid value for legacy flag. Must be true or false "
                                   f"(--legacy {value})", ctx=ctx) from None
