"""What every command shares: the error boundary, progress on stderr, and how F is shown.

The shared option types live in :mod:`moe2_cli.cli.options`.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

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
from typer._click.globals import get_current_context

from moe2_cli.cli.progress_lines import ProgressLines
from moe2_cli.cli.render import stderr_console
from moe2_cli.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERRUPTED,
    InputError,
    Moe2Error,
    Moe2Warning,
    UsageError,
    printable,
)
from moe2_cli.progress import ProgressCallback, ProgressEvent, no_progress

EXIT_INTERNAL = 70  # a bug in moe2, not in the input


class _Settings:
    """Process-wide CLI settings from the root options (the CLI runs one command per process)."""

    debug = False


settings = _Settings()


def debug_enabled() -> bool:
    return settings.debug


def error_lines(err: Moe2Error) -> list[str]:
    """One line per problem in one style: ``path:line:col: what`` for a place in a file,
    ``moe2: what`` for everything else (the GNU convention). A bad value is named by the
    running command's flag (``--top-k``) where the core names its parameter (``top_k``). Characters
    that do not print as themselves are escaped (:func:`moe2_cli.errors.printable`)."""
    if isinstance(err, InputError):
        lines = err.lines()
    elif isinstance(err, UsageError) and err.subject is not None:
        lines = [f"moe2: {_flag_for(err.subject)} {err.message}"]
    else:
        lines = [f"moe2: {line}" for line in err.lines()]
    return [printable(line) for line in lines]


def _flag_for(subject: str) -> str:
    """``top_k`` as ``--top-k`` when the running command has that flag, else as it is."""
    flag = "--" + subject.replace("_", "-")
    ctx = get_current_context(silent=True)
    options = {opt for param in ctx.command.params for opt in param.opts} if ctx is not None else set()
    return flag if flag in options else subject


def report(message: str) -> None:
    """One ``moe2: message`` line on stderr."""
    print(printable(f"moe2: {message}"), file=sys.stderr)


def route_warnings() -> None:
    """Show moe2's own warnings (:class:`Moe2Warning`) as one ``moe2: warning: ...`` line each, once
    per message and run; others as Python shows them. Call inside ``warnings.catch_warnings()``,
    which undoes this when the command ends."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, Moe2Warning):
            report(f"warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.simplefilter("default", Moe2Warning)
    warnings.showwarning = show


def handles_errors(fn: Callable) -> Callable:
    """The one place errors meet the user: one line per problem on stderr, then the exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Moe2Error as err:
            if debug_enabled():
                traceback.print_exc()
            for line in error_lines(err):
                print(line, file=sys.stderr)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            report("interrupted")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            # Nobody reads stdout any more: say nothing, and keep Python's own final flush of
            # stdout from failing on the closed pipe too.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as err:  # a bug: still no traceback unless asked for
            if debug_enabled():
                traceback.print_exc()
            report(f"internal error: {type(err).__name__}: {err} (run with --debug for the traceback)")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


@contextmanager
def progress_bar(description: str, total: int | None = None, *, lines: bool = False) -> Iterator[ProgressCallback]:
    """Yield a progress callback that draws a bar on stderr, only when stderr is a terminal.
    Events that know their total set it; without one the bar pulses. Without a terminal and
    with ``lines``, it writes a progress line now and then instead (:class:`ProgressLines`)."""
    console = stderr_console()
    if not console.is_terminal:
        yield ProgressLines(description) if lines else no_progress
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    # stdout stays the command's own: data written under a bar must not be drawn on stderr.
    with Progress(*columns, console=console, transient=True, redirect_stdout=False) as progress:
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


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 expert``, ``2 experts``; ``many`` for a plural that is not ``word + "s"``."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def objective_cell(metric: str) -> Callable[[float], str]:
    """F as people read it: accuracy in percent; other metrics (a negative log-loss) as plain numbers."""
    return (lambda v: f"{100 * v:.2f}%") if metric == "accuracy" else (lambda v: f"{v:.4f}")


def difference_cell(metric: str) -> Callable[[float], str]:
    """A difference of two F values: percentage points for accuracy, plain otherwise."""
    return (lambda v: f"{100 * v:.2f} pts") if metric == "accuracy" else (lambda v: f"{v:.4f}")


def accuracy_target(text: str | None, metric: str) -> float | None:
    """``--min-accuracy``: a fraction in [0, 1] (``0.75``) or a percentage (``75%``). NaN, other
    values and other metrics are refused, so that a CI gate never passes or fails by accident."""
    if text is None:
        return None
    if metric != "accuracy":
        raise UsageError(f"--min-accuracy needs --metric accuracy (got --metric {metric})")
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw.removesuffix("%")) / (100 if percent else 1)
    except ValueError:
        raise UsageError(f"--min-accuracy must be a fraction like 0.75 or a percentage like 75% "
                         f"(got {text!r})") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise UsageError(f"--min-accuracy must be within 0-1, or 0%-100% (got {text!r})")
    return value
