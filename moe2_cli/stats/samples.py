"""Sample files: (X, Y) pairs as CSV (header ``x1,...,xd,y``) or JSON lines (``{"x": [...], "y": v}``)."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from moe2_cli import jsontext
from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.inputs import shown_as, text_lines
from moe2_cli.progress import ProgressCallback, ProgressEvent, no_progress

SAMPLE_FORMATS = ("csv", "jsonl")
MAX_MAGNITUDE = 1e12  # larger values overflow the EM's squares long before they mean anything
_CHUNK_ROWS = 65_536


def format_for(path: str | Path) -> str:
    """``jsonl`` for a .jsonl/.json/.ndjson name, else ``csv``."""
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


def samples_to_text(X: np.ndarray, Y: np.ndarray, fmt: str) -> str:
    """The samples as CSV or JSON lines; floats are written with round-trip precision."""
    return "".join(sample_chunks(X, Y, fmt))


def sample_chunks(X: np.ndarray, Y: np.ndarray, fmt: str, rows: int = _CHUNK_ROWS,
                  progress: ProgressCallback | None = None) -> Iterator[str]:
    """The text of :func:`samples_to_text` in pieces of ``rows`` samples, so that millions of
    samples stream to a file without the whole text in memory; ``progress`` gets a ``samples``
    event as each piece is taken."""
    report = progress or no_progress
    if fmt != "jsonl":
        yield ",".join([f"x{j + 1}" for j in range(X.shape[1])] + ["y"]) + "\n"
    for start in range(0, len(Y), rows):
        yield _chunk_text(X[start:start + rows], Y[start:start + rows], fmt)
        report(ProgressEvent("samples", min(start + rows, len(Y)), len(Y)))


def _chunk_text(X: np.ndarray, Y: np.ndarray, fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(json.dumps({"x": [float(v) for v in x], "y": float(y)}) + "\n" for x, y in zip(X, Y))
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([*map(repr, map(float, x)), repr(float(y))] for x, y in zip(X, Y))
    return buf.getvalue()


def _finite(value, source: str, line: int, what: str, problems: list) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer of hundreds of digits
        number = math.nan
    if isinstance(value, bool) or not abs(number) <= MAX_MAGNITUDE:
        problems.append(Diagnostic(source, line, None, f"{what} must be a finite number of size at most "
                                                       f"{MAX_MAGNITUDE:g} (got {_shown(value)})"))
        return 0.0
    return number


def _shown(value) -> str:
    """A value for a message: short, and never the hundreds of digits of a huge integer."""
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_MAGNITUDE:
        return "an integer too large"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_csv(lines: Iterator[tuple[int, str]], source: str, problems: list) -> list[list[float]]:
    reader = csv.reader(text for _, text in lines)
    try:
        return _csv_rows(reader, source, problems)
    except csv.Error as err:  # e.g. a cell longer than the csv module's field limit
        problems.append(Diagnostic(source, reader.line_num or 1, None, f"unreadable CSV: {err}"))
        return []


def _csv_rows(reader, source: str, problems: list) -> list[list[float]]:
    header = next(reader, None)
    if not header or len(header) < 2 or header[-1].strip() != "y":
        problems.append(Diagnostic(source, 1, None, "CSV samples need a header x1,...,xd,y"))
        return []
    rows = []
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != len(header):
            problems.append(Diagnostic(source, line, None, f"expected {len(header)} fields (got {len(row)})"))
            continue
        rows.append([_finite(v, source, line, name.strip(), problems) for v, name in zip(row, header)])
    return rows


def _parse_jsonl(lines: Iterator[tuple[int, str]], source: str, problems: list) -> list[list[float]]:
    rows, dim = [], None
    for line, raw in lines:
        if not raw.strip():
            continue
        try:
            item = jsontext.loads(raw)
        except json.JSONDecodeError as err:
            problems.append(Diagnostic(source, line, err.colno, f"invalid JSON: {err.msg}"))
            continue
        except (ValueError, RecursionError) as err:  # a limit of jsontext; nesting past the stack
            problems.append(Diagnostic(source, line, None, f"invalid JSON: {jsontext.why(err)}"))
            continue
        x = item.get("x") if isinstance(item, dict) else None
        if not isinstance(x, list) or not x or "y" not in item:
            problems.append(Diagnostic(source, line, None, 'expected {"x": [numbers], "y": number}'))
            continue
        dim = dim or len(x)
        if len(x) != dim:
            problems.append(Diagnostic(source, line, None, f"x has {len(x)} entries, earlier lines have {dim}"))
            continue
        rows.append([_finite(v, source, line, "x", problems) for v in x]
                    + [_finite(item["y"], source, line, "y", problems)])
    return rows


def _parse(lines: Iterator[tuple[int, str]], source: str) -> tuple[np.ndarray, np.ndarray]:
    """X and Y from numbered lines: JSON lines when the first non-blank one starts with '{'."""
    head = []
    for numbered in lines:
        head.append(numbered)
        if numbered[1].strip():
            break
    parse = _parse_jsonl if head and head[-1][1].lstrip().startswith("{") else _parse_csv
    problems: list[Diagnostic] = []
    rows = parse(itertools.chain(head, lines), source, problems)
    if not problems and not rows:
        problems.append(Diagnostic(source, None, None, "no samples found"))
    if problems:
        raise InputError(problems)
    data = np.array(rows, dtype=float)
    return data[:, :-1], data[:, -1]


def parse_samples(text: str, source: str = "<samples>") -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) and Y (n,) from CSV or JSON-lines text (JSON lines when the first character is '{')."""
    lines = text.removeprefix("\ufeff").split("\n")
    return _parse(((n, line + "\n") for n, line in enumerate(lines, start=1)), source)


def load_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample file written by ``moe2 stats simulate`` (``-``: standard input), plain or
    gzipped, within the input caps (:mod:`moe2_cli.inputs`)."""
    return _parse(text_lines(path, "samples"), shown_as(path))
