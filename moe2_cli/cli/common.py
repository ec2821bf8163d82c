"""What every command shares: option types, the error boundary, and progress on stderr."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from moe2_cli.cli.render import stderr_console
from moe2_cli.errors import EXIT_BAD_INPUT, Moe2Error

EXIT_INTERNAL = 70  # a bug in moe2, not in the input


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


FormatOpt = Annotated[
    OutputFormat,
    typer.Option("--format", "-f", help="Output format: a table for people, json or csv for scripts."),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for every random choice; same seed, same output.")]


class _Settings:
    """Process-wide CLI settings from the root options (the CLI runs one command per process)."""

    debug = False


settings = _Settings()


def debug_enabled() -> bool:
    return settings.debug


def handles_errors(fn: Callable) -> Callable:
    """The one place errors meet the user: one line per problem on stderr, then the exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Moe2Error as err:
            if debug_enabled():
                traceback.print_exc()
            for line in err.lines():
                print(line, file=sys.stderr)
            raise typer.Exit(err.exit_code)
        except KeyboardInterrupt:
            print("moe2: interrupted", file=sys.stderr)
            raise typer.Exit(130)
        except Exception as err:  # a bug: still no traceback unless asked for
            if debug_enabled():
                traceback.print_exc()
            print(f"moe2: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)",
                  file=sys.stderr)
            raise typer.Exit(EXIT_INTERNAL)

    return wrapper


def fail_usage(message: str) -> None:
    """Report bad usage the way click does: one line, exit 2."""
    print(f"moe2: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Yield an ``advance(n)`` callback; draws a bar on stderr only when stderr is a terminal.
    ``total=None`` draws a pulsing bar for work whose length is not known in advance."""
    console = stderr_console()
    if not console.is_terminal:
        yield lambda n=1: None
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
