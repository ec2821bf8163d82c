"""Power from a power-meter log that another program writes while moe2 measures.

One reading per line: a timestamp and watts, separated by a comma, a semicolon, a tab or spaces.
The timestamp is Unix seconds or ISO 8601 (without an offset it is the local time of this
machine). Lines that do not start with a timestamp (headers, comments) are skipped. Readings
are aligned with the requests by wall clock, so the meter's clock and this machine's must agree.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from moe2_cli.measure.power import PowerError, SampledPower

_SEPARATOR = re.compile(r"[,;\t ]+")


def parse_reading(line: str) -> tuple[float, float] | None:
    """(Unix time, watts) from one log line, or None for a header, a comment or a blank."""
    cells = _SEPARATOR.split(line.strip())
    if len(cells) < 2:
        return None
    if len(cells) >= 3 and _timestamp(cells[0]) is None:
        cells = [cells[0] + "T" + cells[1], *cells[2:]]  # "2026-12-01 21:00:00.5,42.0"
    t = _timestamp(cells[0])
    try:
        watts = float(cells[1])
    except ValueError:
        return None
    return (t, watts) if t is not None else None


def _timestamp(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(cell.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class PowerLog(SampledPower):
    """Follows the log as it grows, reading only the new complete lines each time."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.method = f"file:{path.name} (power-meter log)"
        self._offset = 0

    def start(self) -> None:
        if not self.path.is_file():
            raise PowerError(f"power file:{self.path}: no such file (start the power-meter logger first)")

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                chunk = fh.read()
        except OSError as err:
            raise PowerError(f"power file:{self.path}: cannot read ({err.strerror or err})") from None
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next poll
        self._offset += len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            reading = parse_reading(line)
            if reading is not None:
                self.trace.add(*reading)
