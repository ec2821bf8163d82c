"""Query files for ``moe2 route``: JSON lines with ``id``, ``text`` (or ``messages``, a chat
conversation routed as ``route_on`` says), an optional ``category`` and optional ``tags`` (and
``features``, a numeric vector, for routers fitted on numeric features).

Routers read the category, the text, the features and the tags (the user's labels: what
``label-lookup`` routes by, and tag features of the gate); tags are also carried through to the
output so routes can be grouped by them. A line without a category gets one by the category
policy (:mod:`moe2_cli.serve.categories`): left for inference, a problem, or the default."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from moe2_cli.outcomes.rows import Problems, describe, unique_records
from moe2_cli.serve.conversation import routed_text

if TYPE_CHECKING:
    from moe2_cli.serve.categories import CategoryPolicy


@dataclass(frozen=True)
class Query:
    """One query as a router sees it; ``line`` is where it came from in a file (None live).
    ``category`` is None until one is inferred from the text; ``category_source`` says where it
    came from (``given``, ``inferred`` or ``default``) and ``category_probability`` is the
    classifier's, for an inferred one."""

    id: str
    category: str | None
    text: str
    tags: tuple[str, ...] = ()
    features: tuple[float, ...] | None = None
    line: int | None = None
    category_source: str = "given"
    category_probability: float | None = None


def read_queries(path: str | Path, categories: tuple[str, ...], policy: CategoryPolicy | None = None,
                 route_on: str = "last") -> list[Query]:
    """Every query of a JSONL file; each bad line is reported as ``path:line: ...``. Without a
    ``policy`` every line must name its category."""
    return unique_records(Path(path), lambda line, row, problems: _query(row, line, categories, policy, route_on,
                                                                          problems), "queries")


def _query(row: dict, line: int, categories: tuple[str, ...], policy: CategoryPolicy | None, route_on: str,
           problems: Problems) -> Query | None:
    before = len(problems.items) + problems.dropped
    qid = row.get("id", f"line-{line}")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool):
        problems.add(line, f"id must be a string or an integer (got {describe(qid)})")
    category, source = _category(row, line, categories, policy, problems)
    text = _text(row, line, route_on, problems)
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.add(line, f"tags must be a list of strings (got {describe(tags)})")
    features = row.get("features")
    if features is not None and not (isinstance(features, list) and all(_finite(v) for v in features)):
        problems.add(line, f"features must be a list of finite numbers (got {describe(features)})")
    if len(problems.items) + problems.dropped > before:
        return None
    return Query(id=str(qid), category=category, text=str(text), tags=tuple(tags),
                 features=None if features is None else tuple(float(v) for v in features), line=line,
                 category_source=source)


def _category(row: dict, line: int, categories: tuple[str, ...], policy: CategoryPolicy | None,
              problems: Problems) -> tuple[str | None, str]:
    category = row.get("category")
    if category is None and policy is not None and policy.kind != "require":
        return (None, "inferred") if policy.kind == "infer" else (policy.default, "default")
    if category not in categories:
        problems.add(line, f"category must be one of {', '.join(categories)} (got {describe(category)})")
    return category, "given"


def _text(row: dict, line: int, route_on: str, problems: Problems) -> str | None:
    text, messages = row.get("text"), row.get("messages")
    if messages is None:
        if not isinstance(text, str):
            problems.add(line, f"text must be a string (got {describe(text)})")
        return text
    if text is not None:
        problems.add(line, "give text or messages, not both")
        return None
    try:
        return routed_text(messages, route_on)
    except ValueError as err:
        problems.add(line, str(err))
        return None


def _finite(value) -> bool:
    # An integer beyond a float's range is compared, never converted (that would overflow).
    return not isinstance(value, bool) and (isinstance(value, int) and abs(value) < 1e308
                                            or isinstance(value, float) and math.isfinite(value))
