"""Sample files: (X, Y) pairs as CSV (header ``x1,...,xd,y``) or JSON lines (``{"x": [...], "y": v}``)."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from moe2_cli.errors import Diagnostic, InputError

SAMPLE_FORMATS = ("csv", "jsonl")
_MAX_REPORTED = 20  # a broken file reports this many problems, not one per line


def format_for(path: str | Path) -> str:
    """``jsonl`` for a .jsonl/.json/.ndjson name, else ``csv``."""
    return "jsonl" if Path(path).suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"


def samples_to_text(X: np.ndarray, Y: np.ndarray, fmt: str) -> str:
    """The samples as CSV or JSON lines; floats are written with round-trip precision."""
    if fmt == "jsonl":
        return "".join(json.dumps({"x": [float(v) for v in x], "y": float(y)}) + "\n" for x, y in zip(X, Y))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([f"x{j + 1}" for j in range(X.shape[1])] + ["y"])
    writer.writerows([*map(repr, map(float, x)), repr(float(y))] for x, y in zip(X, Y))
    return buf.getvalue()


def _finite(value, source: str, line: int, what: str, problems: list) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        problems.append(Diagnostic(source, line, None, f"{what} must be a finite number (got {value!r})"))
        return 0.0
    return number


def _parse_csv(text: str, source: str, problems: list) -> list[list[float]]:
    reader = csv.reader(io.StringIO(text))
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


def _parse_jsonl(text: str, source: str, problems: list) -> list[list[float]]:
    rows, dim = [], None
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except json.JSONDecodeError as err:
            problems.append(Diagnostic(source, line, err.colno, f"invalid JSON: {err.msg}"))
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


def parse_samples(text: str, source: str = "<samples>") -> tuple[np.ndarray, np.ndarray]:
    """X (n, d) and Y (n,) from CSV or JSON-lines text (JSON lines when the first character is '{')."""
    problems: list[Diagnostic] = []
    parse = _parse_jsonl if text.lstrip().startswith("{") else _parse_csv
    rows = parse(text, source, problems)
    if not problems and not rows:
        problems.append(Diagnostic(source, None, None, "no samples found"))
    if problems:
        raise InputError(problems[:_MAX_REPORTED])
    data = np.array(rows, dtype=float)
    return data[:, :-1], data[:, -1]


def load_samples(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample file written by ``moe2 stats simulate``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(Diagnostic(str(path), None, None, f"cannot read samples: {err}"))
    return parse_samples(text, str(path))
