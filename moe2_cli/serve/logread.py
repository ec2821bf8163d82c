"""Reading the request log of ``moe2 serve --log DIR`` back: the files of a directory in the
order they were written (``requests.jsonl.4`` … ``.1``, then ``requests.jsonl``), or one file,
each line checked for the fields a summary needs.

A line that is not such a record is an error at ``path:line`` (every one is reported), unless
the caller skips malformed lines: then they are counted and the first few named, since a server
killed mid-write can leave a cut last line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.fileio import exists_as
from moe2_cli.outcomes.rows import Problems, as_finite, describe, json_lines
from moe2_cli.serve.requestlog import KEEP_FILES, LOG_NAME


@dataclass(frozen=True)
class Line:
    """One logged request, as far as a summary reads it."""

    category: str
    status: int
    latency_s: float
    upstream_s: float | None  # None in a log written before the field existed
    estimated_j: float
    measured_j: float | None
    baseline: str | None  # the baseline expert, when served with --baseline
    baseline_j: float | None
    baseline_s: float | None
    estimated_latency_s: float | None
    saved_j: float | None
    saved_s: float | None


@dataclass
class Read:
    """The lines of a log, the files they came from (oldest first) and the malformed lines
    skipped (their count and the first diagnostics)."""

    files: list[str]
    lines: list[Line] = field(default_factory=list)
    skipped: int = 0
    skipped_first: list[str] = field(default_factory=list)


def log_files(path: Path) -> list[Path]:
    """The files of the log at ``path``: a directory's rotated files, oldest first, or the file."""
    if exists_as(path, "file"):
        return [path]
    if not exists_as(path, "dir"):
        raise InputError(Diagnostic(str(path), None, None, "no such log file or directory"))
    names = [path / f"{LOG_NAME}.{i}" for i in range(KEEP_FILES - 1, 0, -1)] + [path / LOG_NAME]
    files = [p for p in names if exists_as(p, "file")]
    if not files:
        raise InputError(Diagnostic(str(path), None, None, f"no request log here ({LOG_NAME} or its rotated "
                                                           f"files)"))
    return files


def read_log(path: Path, skip_malformed: bool = False) -> Read:
    """Every request line of the log at ``path``; InputError for a malformed line (unless
    ``skip_malformed``) and for a log without any request."""
    files = log_files(path)
    read = Read(files=[str(f) for f in files])
    for file in files:
        problems = Problems(str(file))
        for number, row in json_lines(file, "request log", problems):
            line = _line(row, problems, number)
            if line is not None:
                read.lines.append(line)
        if problems.items and not skip_malformed:
            problems.raise_if_any()
        read.skipped += len(problems.items) + problems.dropped
        read.skipped_first += [str(d) for d in problems.items][:3 - len(read.skipped_first)]
    if not read.lines:
        raise InputError(Diagnostic(str(path), None, None, "the log holds no request"
                                    + (f" ({read.skipped} malformed lines skipped)" if read.skipped else "")))
    return read


def _line(row: dict[str, Any], problems: Problems, number: int) -> Line | None:
    """The line's record, or None after reporting what is wrong with it."""
    wrong = _wrong(row)
    if wrong:
        problems.add(number, wrong)
        return None
    base = row.get("baseline")
    return Line(category=row["category"], status=row["status"], latency_s=float(row["latency_s"]),
                upstream_s=_number(row.get("upstream_s")), estimated_j=float(row["estimated_j"]),
                measured_j=_number(row.get("measured_j")), baseline=None if base is None else base["expert"],
                baseline_j=None if base is None else float(base["energy_j"]),
                baseline_s=None if base is None else float(base["latency_s"]),
                estimated_latency_s=_number(row.get("estimated_latency_s")), saved_j=_number(row.get("saved_j")),
                saved_s=_number(row.get("saved_s")))


def _wrong(row: dict[str, Any]) -> str | None:
    """What makes ``row`` no request line (None when it is one)."""
    category, status = row.get("category"), row.get("status")
    if not isinstance(category, str) or not category:
        return f"category must be a non-empty string (got {describe(category)})"
    if isinstance(status, bool) or not isinstance(status, int):
        return f"status must be an HTTP status (got {describe(status)})"
    for key in ("latency_s", "estimated_j"):
        if not _is_amount(row.get(key)):
            return f"{key} must be a number >= 0 (got {describe(row.get(key))})"
    for key in ("upstream_s", "measured_j", "estimated_latency_s", "saved_j", "saved_s"):
        value = row.get(key)
        if value is not None and not _is_number(value):
            return f"{key} must be a number or null (got {describe(value)})"
    return _wrong_baseline(row.get("baseline"))


def _wrong_baseline(base: Any) -> str | None:
    if base is None:
        return None
    if not isinstance(base, dict) or not isinstance(base.get("expert"), str) or not base["expert"]:
        return f"baseline must be an object with an expert id, energy_j and latency_s (got {describe(base)})"
    for key in ("energy_j", "latency_s"):
        if not _is_amount(base.get(key)):
            return f"baseline.{key} must be a number >= 0 (got {describe(base.get(key))})"
    return None


def _is_number(value: Any) -> bool:
    return as_finite(value) is not None


def _is_amount(value: Any) -> bool:
    return _is_number(value) and value >= 0


def _number(value: Any) -> float | None:
    return None if value is None else float(value)
