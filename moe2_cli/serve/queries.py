"""Query files for ``moe2 route``: JSON lines with ``id``, ``category``, ``text`` and optional
``tags`` (and ``features``, a numeric vector, for routers fitted on numeric features).

Routers read the category, the text, the features and the tags (the user's labels: what
``label-lookup`` routes by, and tag features of the gate); tags are also carried through to the
output so routes can be grouped by them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from moe2_cli.outcomes.rows import Problems, describe, unique_records


@dataclass(frozen=True)
class Query:
    """One query as a router sees it; ``line`` is where it came from in a file (None live)."""

    id: str
    category: str
    text: str
    tags: tuple[str, ...] = ()
    features: tuple[float, ...] | None = None
    line: int | None = None


def read_queries(path: str | Path, categories: tuple[str, ...]) -> list[Query]:
    """Every query of a JSONL file; each bad line is reported as ``path:line: ...``."""
    return unique_records(Path(path), lambda line, row, problems: _query(row, line, categories, problems),
                          "queries")


def _query(row: dict, line: int, categories: tuple[str, ...], problems: Problems) -> Query | None:
    before = len(problems.items) + problems.dropped
    qid = row.get("id", f"line-{line}")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool):
        problems.add(line, f"id must be a string or an integer (got {describe(qid)})")
    category = row.get("category")
    if category not in categories:
        problems.add(line, f"category must be one of {', '.join(categories)} (got {describe(category)})")
    text = row.get("text")
    if not isinstance(text, str):
        problems.add(line, f"text must be a string (got {describe(text)})")
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.add(line, f"tags must be a list of strings (got {describe(tags)})")
    features = row.get("features")
    if features is not None and not (isinstance(features, list) and all(_finite(v) for v in features)):
        problems.add(line, f"features must be a list of finite numbers (got {describe(features)})")
    if len(problems.items) + problems.dropped > before:
        return None
    return Query(id=str(qid), category=str(category), text=str(text), tags=tuple(tags),
                 features=None if features is None else tuple(float(v) for v in features), line=line)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
