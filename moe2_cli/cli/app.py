"""The typer app: thin commands that parse options and delegate to one helper each."""

from __future__ import annotations

from typing import Annotated

import typer

from moe2_cli import __version__
from moe2_cli.cli.common import settings
from moe2_cli.cli.frontier import frontier
from moe2_cli.cli.gating import app as gating_app
from moe2_cli.cli.inspect import show, validate
from moe2_cli.cli.measure import measure_command
from moe2_cli.cli.route import route
from moe2_cli.cli.select import compare, select
from moe2_cli.cli.serve import serve
from moe2_cli.cli.stats import app as stats_app
from moe2_cli.cli.synth import synth

app = typer.Typer(
    name="moe2",
    help="Pick which edge LLM experts to run so answers are as good as possible within energy "
    "and latency budgets (MoE²), and show the whole trade-off frontier.",
    no_args_is_help=True,
    add_completion=False,
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
    debug: Annotated[bool, typer.Option("--debug", help="Show Python tracebacks for errors.")] = False,
) -> None:
    """Exit codes: 0 ok; 1 no selection meets the budgets or the accuracy target; 2 bad usage or input."""
    settings.debug = debug


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


def main() -> None:
    app(prog_name="moe2")
