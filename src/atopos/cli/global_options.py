"""Global options (`--server`, `--pin-spki`, `--ca-file`, `--tor`) before or after the command.

click parses a group's options only before the subcommand's name, while people type
`atopos secret create --server URL` as readily as `atopos --server URL secret create`
(DESIGN.md accepts both). Every command below the root therefore gets a copy of each global
option, parsed by click like its own options; before the command's body runs, the two
spellings are merged: an option given after the command wins over its environment variable
and default, and one given both before and after with different values is a usage error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import typer
from typer.core import TyperArgument, TyperGroup

from atopos.errors import InvalidInput

__all__ = ["GlobalValues", "accept_after_commands", "is_global_option"]

# Commands for which a global option after the name means nothing: `atopos serve` runs
# the server and talks to none.
_WITHOUT_GLOBAL_OPTIONS = frozenset({"serve"})
_META_KEY = "atopos.global_options_after_command"

# The merged values by name, handed to the function that puts them in force.
GlobalValues = dict[str, Any]


def accept_after_commands(
    root: TyperGroup, put_in_force: Callable[[typer.Context, GlobalValues], None]
) -> None:
    """Give every command under `root` the root's global options, and tidy the help.

    `put_in_force(root_context, values)` runs once, after the command's own options are
    parsed and before its body: it receives the merged global options.
    """
    originals = [param for param in root.params if is_global_option(param)]
    _tidy_help(root)
    for command in _commands(root):
        if command.name not in _WITHOUT_GLOBAL_OPTIONS:
            command.params.extend(_after_command_copy(option) for option in originals)
        _tidy_help(command)
        command.__class__ = _MergingCommand
        assert isinstance(command, _MergingCommand)
        command.put_in_force = put_in_force


def is_global_option(param: Any) -> bool:
    """Every option of the root callback is global, except those that act at once and exit
    (`--version`, `--help`): a new one (`--tor`) is accepted after the command unasked."""
    return isinstance(param, typer.core.TyperOption) and not param.is_eager


def _commands(group: TyperGroup) -> Iterator[typer.core.TyperCommand]:
    for command in group.commands.values():
        if isinstance(command, TyperGroup):
            _tidy_help(command)
            yield from _commands(command)
        elif isinstance(command, typer.core.TyperCommand):
            yield command


def _after_command_copy(option: Any) -> Any:
    """The root's option as the command's own: no environment variable or default (those
    belong to the root's copy), and its value recorded instead of passed to the body."""
    late = copy.copy(option)
    late.envvar = None
    late.default = None
    late.required = False
    late.expose_value = False
    late.callback = _remember_after_command
    return late


def _remember_after_command(ctx: typer.Context, param: Any, value: object) -> object:
    if value is not None:
        ctx.meta.setdefault(_META_KEY, {})[param.name] = value
    return value


class _MergingCommand(typer.core.TyperCommand):
    """A command that first puts the merged global options in force, then runs its body."""

    put_in_force: Callable[[typer.Context, GlobalValues], None]

    def invoke(self, ctx: Any) -> Any:
        self.put_in_force(ctx.find_root(), _merged(ctx))
        return super().invoke(ctx)


def _merged(ctx: Any) -> GlobalValues:
    root = ctx.find_root()
    after: dict[str, object] = ctx.meta.get(_META_KEY, {})
    values: GlobalValues = {
        param.name: root.params.get(param.name)
        for param in root.command.params
        if is_global_option(param) and param.name is not None
    }
    for name, value in after.items():
        source = root.get_parameter_source(name)
        given_before = source is not None and source.name == "COMMANDLINE"
        if given_before and values[name] != value:
            flag = "--" + name.replace("_", "-")
            raise InvalidInput(
                f"{flag} was given twice with different values (before and after the "
                "command); give it once."
            )
        values[name] = value
    return values


class _UntypedArgument(TyperArgument):
    """An argument whose help row shows its metavar only, not typer's `<str>`."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def _tidy_help(command: Any) -> None:
    """Flags (`--help` included) take no value, so their help shows no `<bool>`; arguments
    show their metavar only."""
    # The help option is made on first use and kept: make it now, to tidy it too.
    help_option = command.get_help_option(typer.Context(command))
    for param in [*command.params, help_option]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        if type(param) is TyperArgument:
            param.__class__ = _UntypedArgument
