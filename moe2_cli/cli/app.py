"""The typer app: thin commands that parse options and delegate to one helper each."""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Annotated, Any, cast

import typer
from typer._click import Command
from typer.core import TyperGroup

from moe2_cli import __version__
from moe2_cli.cli.common import report, route_warnings, settings
from moe2_cli.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED

# Each command's module (and through it numpy, the solvers, the gates...) is imported only when
# that command is looked up, so `moe2 --version` and a command's own run load nothing they do
# not use. Order is the order `moe2 --help` lists them in.
COMMANDS = {
    "select": "moe2_cli.cli.select:select",
    "frontier": "moe2_cli.cli.frontier:frontier",
    "compare": "moe2_cli.cli.select:compare",
    "show": "moe2_cli.cli.inspect:show",
    "validate": "moe2_cli.cli.inspect:validate",
    "synth": "moe2_cli.cli.synth:synth",
    "measure": "moe2_cli.cli.measure:measure_command",
    "score": "moe2_cli.cli.score:score",
    "route": "moe2_cli.cli.route:route",
    "serve": "moe2_cli.cli.serve:serve",
    "report": "moe2_cli.cli.report:report",
    "gating": "moe2_cli.cli.gating:app",
    "stats": "moe2_cli.cli.stats:app",
    "cache": "moe2_cli.cli.cache:app",
}


def _load_command(name: str) -> Command:
    """The click command for ``name``, built by typer from the function or sub-app named in COMMANDS."""
    module, attr = COMMANDS[name].split(":")
    target = getattr(importlib.import_module(module), attr)
    holder = typer.Typer()
    if isinstance(target, typer.Typer):
        holder.add_typer(target, name=name)
    else:
        holder.command(name=name)(target)
    return typer.main.get_group(holder).commands[name]


class _LazyCommands(MutableMapping[str, Command]):
    """The root group's name -> command table, loading each command on first access."""

    def __init__(self, loaded: Mapping[str, Command]) -> None:
        self._loaded = dict(loaded)

    def __getitem__(self, name: str) -> Command:
        if name not in self._loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self._loaded[name] = _load_command(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Command) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(COMMANDS), **dict.fromkeys(self._loaded)})

    def __len__(self) -> int:
        return len(set(COMMANDS) | set(self._loaded))


class Moe2Group(TyperGroup):
    """The root command: click's own usage errors in moe2's one-line style, ``--debug`` accepted
    anywhere, numpy's RuntimeWarnings (NaN in a mean of nothing, ...) kept off stderr, moe2's own
    warnings as one line each, and the commands loaded lazily (see COMMANDS)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands(self.commands)

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        settings.debug, args = _take_debug(list(sys.argv[1:] if args is None else args))
        with warnings.catch_warnings():
            route_warnings()
            if not settings.debug:
                warnings.simplefilter("ignore", RuntimeWarning)
            if not standalone_mode:
                return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            try:
                code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
            except typer.TyperException as err:  # click's usage errors, raised before any command runs
                _show_usage_error(err)
                sys.exit(getattr(err, "exit_code", EXIT_BAD_INPUT))
            except typer.Abort:
                report("interrupted")
                sys.exit(EXIT_INTERRUPTED)
            sys.exit(code if isinstance(code, int) else 0)


def _show_usage_error(err: typer.TyperException) -> None:
    if type(err).__name__ == "NoArgsIsHelpError":  # a bare group: its help is the message
        cast(Any, err).show()
    else:
        report(_usage_message(err))


def _take_debug(args: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is given before or after the command, and the arguments without it.
    After ``--`` it would be a value, so it is left there."""
    end = args.index("--") if "--" in args else len(args)
    head = [a for a in args[:end] if a != "--debug"]
    return len(head) < end, head + args[end:]


def _usage_message(err: typer.TyperException) -> str:
    """click's message as one line: ``no such option: --sede (Possible options: --seed) (see 'moe2 select --help')``."""
    message = (err.format_message() if hasattr(err, "format_message") else str(err)).rstrip(".")
    message = message.replace("Value error, ", "")  # the validator's prefix says nothing the reader needs
    message = message[:1].lower() + message[1:]
    ctx = getattr(err, "ctx", None)
    return message + (f" (see '{ctx.command_path} --help')" if ctx is not None else "")


app = typer.Typer(
    cls=Moe2Group,
    name="moe2",
    help="Pick which edge LLM experts to run so answers are as good as possible within energy "
    "and latency budgets (MoE²), and show the whole trade-off frontier. Tables show accuracy in percent "
    "and differences of accuracy in points; json and csv give both as fractions.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"moe2 {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool | None, typer.Option("--version", callback=_print_version, is_eager=True,
                                                    help="Print the version and exit.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors (also accepted after "
                                                          "the command).")] = False,
) -> None:
    """Exit codes: 0 ok; 1 no selection meets the budgets or the accuracy target; 2 bad usage or input;
    130 interrupted."""


