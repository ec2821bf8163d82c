"""moe2's own outcome files: JSON lines or CSV (format in docs/outcomes.md), read and written.

JSONL, one object per line::

    {"qid": "q1", "category": "math", "text": "...", "features": [0.1, -2.0],
     "scores": {"qwen2.5-7b-instruct": 1, "gemma-2-9b-it": 0.25}}

CSV, one row per query: ``qid``, ``category``, optional ``text``, one ``score:<llm>`` column per
LLM and optional ``feature:<i>`` columns. Either file may be gzip-compressed.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.outcomes.builder import TableBuilder
from moe2_cli.outcomes.rows import Problems, as_score, describe, json_lines, read_text
from moe2_cli.outcomes.table import Outcomes

SCORE_PREFIX = "score:"
FEATURE_PREFIX = "feature:"


def read_jsonl(path: str | Path, task_map: Mapping[str, str] | None = None) -> Outcomes:
    """Read the JSONL format; ``task_map`` renames categories (every one must be mapped)."""
    problems = Problems(str(path))
    builder = TableBuilder(problems, task_map)
    for line, row in json_lines(read_text(Path(path)), problems):
        _add_json_row(builder, line, row)
    return builder.build(str(path))


def _add_json_row(builder: TableBuilder, line: int, row: dict[str, Any]) -> None:
    problems = builder.problems
    qid = row.get("qid", f"line-{line}")
    category = row.get("category")
    text = row.get("text")
    scores = row.get("scores")
    if not isinstance(qid, str) or not qid:
        return problems.add(line, f"qid must be a non-empty string (got {describe(qid)})")
    if not isinstance(category, str) or not category:
        return problems.add(line, f"category must be a non-empty string (got {describe(category)})")
    if text is not None and not isinstance(text, str):
        return problems.add(line, f"text must be a string (got {describe(text)})")
    if not isinstance(scores, dict) or not scores:
        return problems.add(line, f"scores must be an object of LLM name to score (got {describe(scores)})")
    checked = {}
    for llm, value in scores.items():
        checked[llm] = as_score(value)
        if checked[llm] is None:
            return problems.add(line, f"score of {llm!r} must be a number in [0, 1] (got {describe(value)})")
    features = _features(problems, line, row.get("features"))
    if features is False:
        return None
    mapped = builder.category(line, category)
    if mapped is not None:
        builder.add(line, qid, mapped, checked, text=text, features=features)


def _features(problems: Problems, line: int, value: Any):
    """The feature list, None when absent, or False after reporting a bad one."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(_finite_number(v) for v in value):
        problems.add(line, f"features must be a list of finite numbers (got {describe(value)})")
        return False
    return [float(v) for v in value]


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) < float("inf")


def read_csv(path: str | Path, task_map: Mapping[str, str] | None = None) -> Outcomes:
    """Read the CSV format; ``task_map`` renames categories (every one must be mapped)."""
    problems = Problems(str(path))
    reader = csv.reader(io.StringIO(read_text(Path(path)), newline=""))
    header = next(reader, None)
    if header is None or "category" not in header or not any(h.startswith(SCORE_PREFIX) for h in header):
        problems.add(1, f"the header must name a category column and at least one {SCORE_PREFIX}<llm> column "
                        f"(got {describe(header)})")
        problems.raise_if_any()
    builder = TableBuilder(problems, task_map)
    start = reader.line_num + 1
    for record in reader:
        if any(cell.strip() for cell in record):
            _add_csv_row(builder, header, start, record)
        start = reader.line_num + 1
    return builder.build(str(path))


def _add_csv_row(builder: TableBuilder, header: list[str], line: int, record: list[str]) -> None:
    problems = builder.problems
    if len(record) != len(header):
        return problems.add(line, f"expected {len(header)} cells like the header (got {len(record)})")
    cells = dict(zip(header, record))
    scores = {}
    for name, cell in cells.items():
        if name.startswith(SCORE_PREFIX):
            scores[name[len(SCORE_PREFIX):]] = _csv_number(cell, as_score)
            if scores[name[len(SCORE_PREFIX):]] is None:
                return problems.add(line, f"{name} must be a number in [0, 1] (got {describe(cell)})")
    feature_names = [h for h in header if h.startswith(FEATURE_PREFIX)]
    features = [_csv_number(cells[h], lambda v: v if abs(v) < float("inf") else None) for h in feature_names]
    if any(f is None for f in features):
        return problems.add(line, "feature cells must be finite numbers")
    category = cells["category"].strip()
    if not category:
        return problems.add(line, "category must not be empty")
    mapped = builder.category(line, category)
    if mapped is not None:
        builder.add(line, cells.get("qid") or f"line-{line}", mapped, scores, text=cells.get("text"),
                    features=features or None)


def _csv_number(cell: str, check):
    try:
        return check(float(cell))
    except ValueError:
        return None


# ---------------------------------------------------------------- writing


def _open_out(path: Path):
    """A text stream to ``path``, gzip-compressed (with no timestamp, so reproducible) for .gz."""
    if path.suffix == ".gz":
        raw = open(path, "wb")
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename=""), encoding="utf-8",
                                newline=""), raw
    return open(path, "w", encoding="utf-8", newline=""), None


def write_outcomes(outcomes: Outcomes, path: str | Path) -> None:
    """Write JSONL, or CSV when the name ends in .csv (optionally .gz); same table, same bytes."""
    path = Path(path)
    try:
        stream, raw = _open_out(path)
    except OSError as err:
        raise InputError(Diagnostic(str(path), None, None, f"cannot write outcomes: {err.strerror or err}"))
    try:
        if path.name.removesuffix(".gz").endswith(".csv"):
            _write_csv(outcomes, stream)
        else:
            _write_jsonl(outcomes, stream)
    finally:
        stream.close()
        if raw is not None:
            raw.close()


def _json_row(outcomes: Outcomes, q: int) -> dict[str, Any]:
    row: dict[str, Any] = {"qid": outcomes.qids[q], "category": outcomes.categories[outcomes.category[q]]}
    if outcomes.texts is not None:
        row["text"] = outcomes.texts[q]
    if outcomes.features is not None:
        row["features"] = outcomes.features[q].tolist()
    row["scores"] = dict(zip(outcomes.columns, outcomes.scores[q].tolist()))
    return row


def _write_jsonl(outcomes: Outcomes, stream) -> None:
    for q in range(outcomes.n_queries):
        stream.write(json.dumps(_json_row(outcomes, q), ensure_ascii=False) + "\n")


def _write_csv(outcomes: Outcomes, stream) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    dim = 0 if outcomes.features is None else outcomes.features.shape[1]
    text = ["text"] if outcomes.texts is not None else []
    writer.writerow(["qid", "category", *text, *(SCORE_PREFIX + c for c in outcomes.columns),
                     *(f"{FEATURE_PREFIX}{i}" for i in range(dim))])
    for q in range(outcomes.n_queries):
        row = _json_row(outcomes, q)
        writer.writerow([row["qid"], row["category"], *([row["text"]] if text else []),
                         *(repr(v) for v in row["scores"].values()), *(repr(v) for v in row.get("features", []))])
