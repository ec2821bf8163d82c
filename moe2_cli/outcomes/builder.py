"""Accumulate validated rows from any reader into one :class:`Outcomes` table."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from moe2_cli.ids import lookalike_message, lookalikes
from moe2_cli.outcomes.missing import fill_missing
from moe2_cli.outcomes.rows import Problems
from moe2_cli.outcomes.table import Outcomes


class TableBuilder:
    """Rows in, one table out. Each row must score the same columns as the first row, and
    carry features of the same length; a breach is a problem at that row's line. A score may be
    None (missing: that LLM was not asked), but every row needs at least one."""

    def __init__(self, problems: Problems, task_map: Mapping[str, str] | None = None):
        self.problems = problems
        self.task_map = dict(task_map or {})
        self.columns: tuple[str, ...] | None = None
        self.feature_dim: int | None = None
        self.has_text = False
        self.qids: list[str] = []
        self.cats: list[str] = []
        self.texts: list[str | None] = []
        self.features: list[list[float] | None] = []
        self.tags: list[tuple[str, ...]] = []
        self.has_tags = False
        self.scores: list[list[float]] = []
        self.seen: dict[str, int] = {}
        self.unmapped: set[str] = set()

    def category(self, line: int, raw: str) -> str | None:
        """``raw`` through the task map (unchanged without one); unmapped names are a problem
        reported once, at their first line."""
        if not self.task_map:
            return raw
        if raw in self.task_map:
            return self.task_map[raw]
        if raw not in self.unmapped:
            self.unmapped.add(raw)
            known = ", ".join(sorted(self.task_map))
            self.problems.add(line, f"task {raw!r} is not in the task map (it maps: {known})")
        return None

    def add(self, line: int, qid: str, category: str, scores: Mapping[str, float | None],
            text: str | None = None, features: list[float] | None = None,
            tags: tuple[str, ...] | None = None) -> None:
        """One query; ``tags`` may be given on some rows only (the others have none)."""
        if qid in self.seen:
            self.problems.add(line, f"duplicate qid {qid!r} (first at line {self.seen[qid]})")
            return
        names = tuple(scores)
        if all(v is None for v in scores.values()):
            self.problems.add(line, "scores must give at least one score (got none: every one is missing)")
            return
        if self.columns is None:
            self.columns = names
        elif set(names) != set(self.columns):
            extra = sorted(set(names) - set(self.columns))
            lack = sorted(set(self.columns) - set(names))
            what = f"missing {', '.join(lack)}" if lack else f"unexpected {', '.join(extra)}"
            self.problems.add(line, f"scores must name the same LLMs as the first row ({what})")
            return
        dim = None if features is None else len(features)
        if not self.qids:
            self.feature_dim, self.has_text = dim, text is not None
        elif dim != self.feature_dim:
            self.problems.add(line, f"features must have length {self.feature_dim} like the first row (got {dim})")
            return
        elif (text is not None) != self.has_text:
            self.problems.add(line, "text must be given on every row or on none (the first row "
                                    f"{'has' if self.has_text else 'has no'} text)")
            return
        self.seen[qid] = line
        self.qids.append(qid)
        self.cats.append(category)
        self.texts.append(text)
        self.features.append(features)
        self.tags.append(tags or ())
        self.has_tags = self.has_tags or tags is not None
        self.scores.append([np.nan if scores[c] is None else scores[c] for c in self.columns])  # type: ignore[misc]

    def build(self, source: str) -> Outcomes:
        """The table, or every problem found as one InputError."""
        if not self.qids and not self.problems.items:
            self.problems.add(None, "no outcome rows found")
        for what, names in (("LLM", self.columns or ()), ("category", dict.fromkeys(self.cats))):
            for earlier, later in lookalikes(names):
                self.problems.add(None, lookalike_message(what, earlier, later))
        self.problems.raise_if_any()
        categories = tuple(dict.fromkeys(self.cats))
        position = {c: i for i, c in enumerate(categories)}
        category = np.array([position[c] for c in self.cats], dtype=np.int64)
        assert self.columns is not None  # a row was added
        scores, observed = fill_missing(np.array(self.scores, dtype=float).reshape(len(self.qids), -1), category,
                                        categories, self.columns, self.problems)
        return Outcomes(
            qids=tuple(self.qids), categories=categories, category=category,
            columns=self.columns, scores=scores, observed=observed,
            texts=tuple(self.texts) if self.has_text else None,  # type: ignore[arg-type]
            features=np.array(self.features, dtype=float) if self.feature_dim is not None else None,
            source=source, tags=tuple(self.tags) if self.has_tags else None,
        )
