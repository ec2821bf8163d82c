"""What every outcome reader shares: JSON lines with their line numbers (read within the
input caps), score checks, and collecting one diagnostic per bad row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from moe2_cli import jsontext
from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.inputs import text_lines

MAX_DIAGNOSTICS = 50  # a wholly wrong file should not print thousands of lines
MAX_NUMBER = 1e12  # larger features are an error in the file, and overflow standardisation


class Problems:
    """Collects ``path:line: message`` diagnostics; raises them all at once."""

    def __init__(self, path: str):
        self.path = path
        self.items: list[Diagnostic] = []
        self.dropped = 0

    def add(self, line: int | None, message: str) -> None:
        if len(self.items) < MAX_DIAGNOSTICS:
            self.items.append(Diagnostic(self.path, line, None, message))
        else:
            self.dropped += 1

    def raise_if_any(self) -> None:
        if self.dropped:
            self.items.append(Diagnostic(self.path, None, None, f"... and {self.dropped} more problems"))
        if self.items:
            raise InputError(self.items)


def json_lines(path: str | Path, what: str, problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of ``path``, read within the input caps
    (:mod:`moe2_cli.inputs`); bad JSON or non-objects become problems. ``what`` names the kind
    of file (``outcomes``) in a refusal."""
    for number, line in text_lines(path, what):
        if not line.strip():
            continue
        try:
            # Without its line end, a line cut short is wrong at its last column, not the next line's first.
            row = jsontext.loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as err:
            problems.add(number, f"invalid JSON: {err.msg} (column {err.colno})")
            continue
        except (ValueError, RecursionError) as err:  # a limit of jsontext; nesting past the stack
            problems.add(number, f"invalid JSON: {jsontext.why(err)}")
            continue
        if not isinstance(row, dict):
            problems.add(number, f"each line must be a JSON object (got {type(row).__name__})")
            continue
        yield number, row


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Record = TypeVar("Record", bound=_Identified)


def unique_records(path: Path, parse: Callable[[int, dict[str, Any], Problems], Record | None],
                   what: str) -> list[Record]:
    """Every JSON line of ``path`` parsed by ``parse(line, row, problems)`` (None for a bad row),
    with ids unique across the file; an empty file is a problem too."""
    problems = Problems(str(path))
    records: list[Record] = []
    seen: set[str] = set()
    for line, row in json_lines(path, what, problems):
        record = parse(line, row, problems)
        if record is None:
            continue
        if record.id in seen:
            problems.add(line, f"duplicate id {record.id!r}")
            continue
        seen.add(record.id)
        records.append(record)
    if not records and not problems.items:
        problems.add(None, f"no {what} in the file")
    problems.raise_if_any()
    return records

def as_score(value: Any) -> float | None:
    """A score in [0, 1] (booleans count as 0/1), or None if ``value`` is not one."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:  # NaN fails; huge ints compare exactly
        return float(value)
    return None


def as_finite(value: Any) -> float | None:
    """A finite float from a JSON number that fits one (not a bool), or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -MAX_NUMBER <= value <= MAX_NUMBER:
        return None
    return float(value)


def describe(value: Any) -> str:
    """A short rendering of a bad value for a message."""
    if value is None:
        return "nothing"
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (ValueError, RecursionError):  # too deep, or an integer too long to print
        text = f"a {type(value).__name__}"
    return text if len(text) <= 40 else text[:37] + "..."
