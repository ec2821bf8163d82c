"""Progress as plain lines, for a run whose stderr is a log file or a CI job rather than a
terminal: a redrawn bar would be noise there, and nothing at all leaves the reader guessing
whether a long run is alive.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from moe2_cli.progress import ProgressEvent

LINE_EVERY_S = 30.0
LINE_EVERY_SHARE = 0.10


def _stderr_line(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class ProgressLines:
    """A progress callback that writes a line each time another tenth of the work is done, or
    LINE_EVERY_S after its last line, whichever comes first (checked as each step ends)."""

    def __init__(self, description: str, write: Callable[[str], None] = _stderr_line,
                 clock: Callable[[], float] = time.monotonic):
        self.description = description
        self.write = write
        self.clock = clock
        self._began = clock()
        self._last_at = self._began
        self._start_done: int | None = None  # steps already done when the run began (a resumed run)
        self._next_share = LINE_EVERY_SHARE

    def __call__(self, event: ProgressEvent) -> None:
        if not event.total:
            return
        now = self.clock()
        if self._start_done is None:
            self._start_done = event.done
            self._next_share = (event.done / event.total // LINE_EVERY_SHARE + 1) * LINE_EVERY_SHARE
            return
        share = event.done / event.total
        if share + 1e-9 < self._next_share and now - self._last_at < LINE_EVERY_S:
            return
        while self._next_share <= share + 1e-9:
            self._next_share += LINE_EVERY_SHARE
        self._last_at = now
        self.write(self._line(event, now))

    def _line(self, event: ProgressEvent, now: float) -> str:
        assert event.total and self._start_done is not None
        elapsed = now - self._began
        line = (f"{self.description}: {event.done}/{event.total} ({100 * event.done / event.total:.0f}%), "
                f"{_duration(elapsed)} elapsed")
        steps = event.done - self._start_done
        if steps > 0 and event.done < event.total:
            line += f", about {_duration(elapsed / steps * (event.total - event.done))} left"
        return f"{line}; last: {event.task}"


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
