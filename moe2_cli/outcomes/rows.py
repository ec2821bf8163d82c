"""What every outcome reader shares: opening plain or gzip text, JSON lines with their line
numbers, score checks, and collecting one diagnostic per bad row."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from moe2_cli.errors import Diagnostic, InputError

MAX_DIAGNOSTICS = 50  # a wholly wrong file should not print thousands of lines
MAX_TEXT_BYTES = 1 << 30  # an outcomes file, after decompression
MAX_NUMBER = 1e12  # larger features are an error in the file, and overflow standardisation
_GZIP_MAGIC = b"\x1f\x8b"


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


def read_text(path: Path) -> str:
    """The file's text, gunzipped when it starts with the gzip magic bytes."""
    shown = str(path)
    try:
        raw = Path(path).read_bytes()
    except (OSError, ValueError) as err:
        reason = getattr(err, "strerror", None) or err
        raise InputError(Diagnostic(shown, None, None, f"cannot read outcomes: {reason}")) from None
    if raw[:2] == _GZIP_MAGIC:
        raw = _gunzip(shown, raw)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise InputError(Diagnostic(shown, line, None, f"not UTF-8 text (got byte 0x{raw[err.start]:02x})")) from None


def _gunzip(shown: str, raw: bytes) -> bytes:
    """The decompressed bytes, at most MAX_TEXT_BYTES of them (a small file may unpack to gigabytes)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as packed:
            out = packed.read(MAX_TEXT_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(Diagnostic(shown, None, None, f"corrupt gzip data ({err})")) from None
    if len(out) > MAX_TEXT_BYTES:
        raise InputError(Diagnostic(shown, None, None, f"decompresses to more than {MAX_TEXT_BYTES} bytes"))
    return out


def json_lines(text: str, problems: Problems) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; bad JSON or non-objects become problems.

    Lines end at "\n" only: str.splitlines would also split at U+2028 and friends, which JSON
    allows unescaped inside strings."""
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.add(number, f"invalid JSON: {err.msg} (column {err.colno})")
            continue
        except (ValueError, RecursionError) as err:  # an integer of thousands of digits; nesting past the stack
            problems.add(number, f"invalid JSON: {_why(err)}")
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
    for line, row in json_lines(read_text(path), problems):
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

def _why(err: Exception) -> str:
    return "nested too deeply" if isinstance(err, RecursionError) else str(err).split(";")[0]


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
