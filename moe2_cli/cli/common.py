"""What every command shares: option types, the error boundary, and progress on stderr."""

from __future__ import annotations

import functools
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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
from rich.status import Status

from moe2_cli.cli.render import stderr_console
from moe2_cli.errors import EXIT_BAD_INPUT, Moe2Error
from moe2_cli.progress import ProgressCallback, ProgressEvent, no_progress

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
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            print("moe2: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None
        except Exception as err:  # a bug: still no traceback unless asked for
            if debug_enabled():
                traceback.print_exc()
            print(f"moe2: internal error: {type(err).__name__}: {err} (run with --debug for the traceback)",
                  file=sys.stderr)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def fail_usage(message: str) -> None:
    """Report bad usage the way click does: one line, exit 2."""
    print(f"moe2: {message}", file=sys.stderr)
    raise typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[ProgressCallback]:
    """Yield a progress callback that draws a bar on stderr, only when stderr is a terminal.
    Events that know their total set it; without one the bar pulses."""
    console = stderr_console()
    if not console.is_terminal:
        yield no_progress
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda event: progress.update(task, completed=event.done, total=event.total or total)


# A solve that ends within this many seconds shows nothing: a flash of status would only distract.
SOLVER_STATUS_AFTER_S = 1.0


@contextmanager
def solver_status(description: str) -> Iterator[ProgressCallback]:
    """Yield a progress callback for a solver; once a solve has run for more than
    SOLVER_STATUS_AFTER_S on a terminal, stderr shows its iterations, incumbent and bound."""
    console = stderr_console()
    if not console.is_terminal:
        yield no_progress
        return
    start = time.perf_counter()
    with ExitStack() as stack:
        shown: list[Status] = []  # the status line, drawn from the first event after the delay

        def show(event: ProgressEvent) -> None:
            if time.perf_counter() - start <= SOLVER_STATUS_AFTER_S:
                return
            if not shown:
                shown.append(stack.enter_context(console.status(description)))
            shown[0].update(f"{description}: {solver_progress_line(event)}")

        yield show


def solver_progress_line(event: ProgressEvent) -> str:
    """``iterations 12, incumbent 71.20%, bound 74.03%`` for a solver's progress event."""
    values = event.values
    return (f"iterations {event.done}, incumbent {_percent(values.get('objective'))}, "
            f"bound {_percent(values.get('bound'))}")


def _percent(value: float | None) -> str:
    return "-" if value is None or value != value or abs(value) == float("inf") else f"{100 * value:.2f}%"
