"""The typer app: thin commands that parse options and delegate to one helper each."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Annotated, Any, cast

import typer
from typer.core import TyperGroup

from moe2_cli import __version__
from moe2_cli.cli.cache import app as cache_app
from moe2_cli.cli.common import report, settings
from moe2_cli.cli.frontier import frontier
from moe2_cli.cli.gating import app as gating_app
from moe2_cli.cli.inspect import show, validate
from moe2_cli.cli.measure import measure_command
from moe2_cli.cli.route import route
from moe2_cli.cli.select import compare, select
from moe2_cli.cli.serve import serve
from moe2_cli.cli.stats import app as stats_app
from moe2_cli.cli.synth import synth
from moe2_cli.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED


class Moe2Group(TyperGroup):
    """The root command: click's own usage errors in moe2's one-line style, ``--debug`` accepted
    anywhere, and numpy's RuntimeWarnings (NaN in a mean of nothing, ...) kept off stderr."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, windows_expand_args: bool = True,
             **extra: Any) -> Any:
        args = list(sys.argv[1:] if args is None else args)
        settings.debug = "--debug" in _options(args)
        args = [a for a in args if a != "--debug"] if settings.debug else args
        with warnings.catch_warnings():
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


def _options(args: list[str]) -> list[str]:
    """The arguments before ``--`` (after it, ``--debug`` would be a value)."""
    return args[: args.index("--")] if "--" in args else args


def _usage_message(err: typer.TyperException) -> str:
    """``invalid value for '--seed': -1 is not in the range 0<=x<=2147483647 (see 'moe2 select --help')``."""
    message = (err.format_message() if hasattr(err, "format_message") else str(err)).rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(err, "ctx", None)
    return message + (f" (see '{ctx.command_path} --help')" if ctx is not None else "")


app = typer.Typer(
    cls=Moe2Group,
    name="moe2",
    help="Pick which edge LLM experts to run so answers are as good as possible within energy "
    "and latency budgets (MoE²), and show the whole trade-off frontier.",
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


app.command()(select)
app.command()(frontier)
app.command()(compare)
app.command()(show)
app.command()(validate)
app.command()(synth)
app.command(name="measure")(measure_command)
app.command()(route)
app.command()(serve)
app.add_typer(gating_app, name="gating")
app.add_typer(stats_app, name="stats")
app.add_typer(cache_app, name="cache")

