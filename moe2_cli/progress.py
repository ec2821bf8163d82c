"""One progress protocol for long work: solvers, frontier sweeps, gate training checks and EM.

The core never prints. Long work calls a :data:`ProgressCallback` with a :class:`ProgressEvent`
now and then; the command line draws it on stderr, and library users may log it or ignore it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    """How far one piece of work is: ``done`` of ``total`` steps (``None``: not known in
    advance), and what it has found so far in ``values`` (a solve: ``objective``, ``bound``)."""

    task: str
    done: int
    total: int | None = None
    values: Mapping[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]


def no_progress(event: ProgressEvent) -> None:
    """The callback for work nobody watches."""


def step_counter(task: str, total: int | None, progress: ProgressCallback | None) -> Callable[[], None]:
    """A function that reports one more finished step of ``task`` each time it is called."""
    report = progress or no_progress
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        report(ProgressEvent(task, done, total))

    return step
