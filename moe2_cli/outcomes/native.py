"""moe2's own outcome files: JSON lines or CSV (format in docs/outcomes.md), read and written.

JSONL, one object per line::

    {"qid": "q1", "category": "math", "text": "...", "features": [0.1, -2.0],
     "scores": {"qwen2.5-7b-instruct": 1, "gemma-2-9b-it": 0.25}}

CSV, one row per query: ``qid``, ``category``, optional ``text``, one ``score:<llm>`` column per
LLM and optional ``feature:<i>`` columns. Either file may be gzip-compressed. A missing score
(that LLM was not asked) is ``null`` in JSONL and an empty cell in CSV.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from moe2_cli.fileio import atomic_output
from moe2_cli.inputs import text_lines
from moe2_cli.outcomes.builder import TableBuilder
from moe2_cli.outcomes.rows import MAX_NUMBER, Problems, as_finite, as_score, describe, json_lines
from moe2_cli.outcomes.table import Outcomes

SCORE_PREFIX = "score:"
FEATURE_PREFIX = "feature:"
TAG_SEPARATOR = ";"  # between the tags of one CSV cell


def read_jsonl(path: str | Path, task_map: Mapping[str, str] | None = None) -> Outcomes:
    """Read the JSONL format; ``task_map`` renames categories (every one must be mapped)."""
    problems = Problems(str(path))
    builder = TableBuilder(problems, task_map)
    for line, row in json_lines(path, "outcomes", problems):
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
        if checked[llm] is None and value is not None:  # null: missing, that LLM was not asked
            return problems.add(line, f"score of {llm!r} must be a number in [0, 1] (got {describe(value)})")
    features = _features(problems, line, row.get("features"))
    tags = _tags(problems, line, row.get("tags"))
    if features is False or tags is False:
        return None
    mapped = builder.category(line, category)
    if mapped is not None:
        builder.add(line, qid, mapped, checked, text=text, features=features, tags=tags)


def _features(problems: Problems, line: int, value: Any):
    """The feature list, None when absent, or False after reporting a bad one."""
    if value is None:
        return None
    numbers = [as_finite(v) for v in value] if isinstance(value, list) else [None]
    if None in numbers:
        problems.add(line, f"features must be a list of finite numbers of size at most {MAX_NUMBER:g} "
                           f"(got {describe(value)})")
        return False
    return numbers


def _tags(problems: Problems, line: int, value: Any):
    """The tag tuple, None when absent, or False after reporting a bad one."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        problems.add(line, f"tags must be a list of non-empty strings (got {describe(value)})")
        return False
    return tuple(value)


def read_csv(path: str | Path, task_map: Mapping[str, str] | None = None) -> Outcomes:
    """Read the CSV format; ``task_map`` renames categories (every one must be mapped)."""
    problems = Problems(str(path))
    reader = csv.reader(text for _, text in text_lines(path, "outcomes"))
    builder = TableBuilder(problems, task_map)
    start = 1
    try:
        header = _csv_header(next(reader, None), problems)
        start = reader.line_num + 1
        for record in reader:
            if any(cell.strip() for cell in record):
                _add_csv_row(builder, header, start, record)
            start = reader.line_num + 1
    except csv.Error as err:  # e.g. a cell longer than the csv module's field limit
        problems.add(start, f"unreadable CSV: {err}")
    return builder.build(str(path))


def _csv_header(header: list[str] | None, problems: Problems) -> list[str]:
    """The header, or every problem with it raised: it must name a category and score columns, once each."""
    if header is None or "category" not in header or not any(h.startswith(SCORE_PREFIX) for h in header):
        problems.add(1, f"the header must name a category column and at least one {SCORE_PREFIX}<llm> column "
                        f"(got {describe(header)})")
    header = header or []
    twice = sorted({h for h in header if header.count(h) > 1 and h})
    if twice:
        problems.add(1, f"the header names a column more than once (got {', '.join(map(repr, twice))})")
    problems.raise_if_any()
    return header


def _add_csv_row(builder: TableBuilder, header: list[str], line: int, record: list[str]) -> None:
    problems = builder.problems
    if len(record) != len(header):
        return problems.add(line, f"expected {len(header)} cells like the header (got {len(record)})")
    cells = dict(zip(header, record))
    scores = {}
    for name, cell in cells.items():
        if name.startswith(SCORE_PREFIX):
            scores[name[len(SCORE_PREFIX):]] = _csv_number(cell, as_score)
            if scores[name[len(SCORE_PREFIX):]] is None and cell.strip():  # an empty cell: missing
                return problems.add(line, f"{name} must be a number in [0, 1] (got {describe(cell)})")
    feature_names = [h for h in header if h.startswith(FEATURE_PREFIX)]
    features = [_csv_number(cells[h], as_finite) for h in feature_names]
    if any(f is None for f in features):
        return problems.add(line, f"feature cells must be finite numbers of size at most {MAX_NUMBER:g}")
    category = cells["category"].strip()
    if not category:
        return problems.add(line, "category must not be empty")
    tags = tuple(t.strip() for t in cells["tags"].split(TAG_SEPARATOR) if t.strip()) if "tags" in cells else None
    mapped = builder.category(line, category)
    if mapped is not None:
        builder.add(line, cells.get("qid") or f"line-{line}", mapped, scores, text=cells.get("text"),
                    features=features or None, tags=tags)


def _csv_number(cell: str, check):
    try:
        return check(float(cell))
    except ValueError:
        return None


# ---------------------------------------------------------------- writing


def write_outcomes(outcomes: Outcomes, path: str | Path) -> None:
    """Write JSONL, or CSV when the name ends in .csv; gzip-compressed (with no timestamp, so
    reproducible) when it ends in .gz. Same table, same bytes; the file appears whole or not at all."""
    path = Path(path)
    write = _write_csv if path.name.removesuffix(".gz").endswith(".csv") else _write_jsonl
    with atomic_output(path, "wb") as raw:
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as packed:
                _write_text(packed, write, outcomes)
        else:
            _write_text(raw, write, outcomes)


def _write_text(binary, write, outcomes: Outcomes) -> None:
    stream = io.TextIOWrapper(binary, encoding="utf-8", newline="", write_through=False)
    write(outcomes, stream)
    stream.flush()
    stream.detach()  # leave the binary stream open for its owner to finish


def _json_row(outcomes: Outcomes, q: int) -> dict[str, Any]:
    row: dict[str, Any] = {"qid": outcomes.qids[q], "category": outcomes.categories[outcomes.category[q]]}
    if outcomes.texts is not None:
        row["text"] = outcomes.texts[q]
    if outcomes.features is not None:
        row["features"] = outcomes.features[q].tolist()
    if outcomes.tags is not None:
        row["tags"] = list(outcomes.tags[q])
    scores = outcomes.scores[q].tolist()
    if outcomes.observed is not None:  # a filled-in mean is not a score: it is written as missing
        scores = [v if present else None for v, present in zip(scores, outcomes.observed[q].tolist())]
    row["scores"] = dict(zip(outcomes.columns, scores))
    return row


def _write_jsonl(outcomes: Outcomes, stream) -> None:
    for q in range(outcomes.n_queries):
        stream.write(json.dumps(_json_row(outcomes, q), ensure_ascii=False) + "\n")


def _write_csv(outcomes: Outcomes, stream) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    dim = 0 if outcomes.features is None else outcomes.features.shape[1]
    text = ["text"] if outcomes.texts is not None else []
    tags = ["tags"] if outcomes.tags is not None else []
    writer.writerow(["qid", "category", *text, *tags, *(SCORE_PREFIX + c for c in outcomes.columns),
                     *(f"{FEATURE_PREFIX}{i}" for i in range(dim))])
    for q in range(outcomes.n_queries):
        row = _json_row(outcomes, q)
        writer.writerow([row["qid"], row["category"], *([row["text"]] if text else []),
                         *([TAG_SEPARATOR.join(row["tags"])] if tags else []),
                         *("" if v is None else repr(v) for v in row["scores"].values()),
                         *(repr(v) for v in row.get("features", []))])
