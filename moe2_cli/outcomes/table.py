"""The one in-memory form of per-query outcomes: categories, features or text, and scores.

Scores are keyed by column name. Readers key columns by LLM, so one model hosted on two
servers shares its answers; :meth:`Outcomes.for_instance` then expands the LLM columns to the
instance's experts, in expert order, and re-indexes categories to the instance's categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.problem import Instance


def _frozen(array, dtype) -> np.ndarray:
    out = np.array(array, dtype=dtype)
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Outcomes:
    """Q queries x M score columns.

    ``category[q]`` indexes ``categories``; ``scores[q, m]`` in [0, 1] is the probability that
    column m answers query q correctly (or its 0/1 correctness). ``texts`` (question text) and
    ``features`` (numeric vectors, shape (Q, D)) are optional; the gate needs at least the
    category. ``tags`` are optional labels per query (a file's ``tags``, a benchmark's task).
    ``source`` names where the table came from, for messages.

    ``observed[q, m]`` says whether column m has a score for query q (None: every score is
    present). A missing score is filled with the column's mean over the present scores of its
    category (see :mod:`moe2_cli.outcomes.missing`), so ``scores`` is dense; the gate's
    training skips the missing entries.
    """

    qids: tuple[str, ...]
    categories: tuple[str, ...]
    category: np.ndarray
    columns: tuple[str, ...]
    scores: np.ndarray
    texts: tuple[str, ...] | None = None
    features: np.ndarray | None = None
    source: str = "outcomes"
    tags: tuple[tuple[str, ...], ...] | None = None  # labels per query (a file's tags, a benchmark task)
    observed: np.ndarray | None = None  # (Q, columns) bool, True where the score is present; None: all are

    def __post_init__(self):
        q = len(self.qids)
        object.__setattr__(self, "category", _frozen(self.category, np.int64))
        object.__setattr__(self, "scores", _frozen(self.scores, float))
        if self.category.shape != (q,) or self.scores.shape != (q, len(self.columns)):
            raise ValueError("category must have shape (Q,) and scores (Q, columns)")
        if q and (self.category.min() < 0 or self.category.max() >= len(self.categories)):
            raise ValueError("category index out of range")
        if not np.all((self.scores >= 0.0) & (self.scores <= 1.0)):
            raise ValueError("scores must lie in [0, 1]")
        if self.texts is not None:
            object.__setattr__(self, "texts", tuple(self.texts))
            if len(self.texts) != q:
                raise ValueError("texts must have one entry per query")
        if self.tags is not None:
            object.__setattr__(self, "tags", tuple(tuple(t) for t in self.tags))
            if len(self.tags) != q:
                raise ValueError("tags must have one entry per query")
        if self.features is not None:
            object.__setattr__(self, "features", _frozen(self.features, float))
            if self.features.ndim != 2 or self.features.shape[0] != q:
                raise ValueError("features must have shape (Q, D)")
        if self.observed is not None:
            # All present is the same table as no mask: one form, so the same data gives the same gate.
            object.__setattr__(self, "observed", None if np.all(self.observed) else _frozen(self.observed, bool))
            if self.observed is not None and self.observed.shape != self.scores.shape:
                raise ValueError("observed must have the shape of scores")

    @property
    def n_missing(self) -> int:
        """How many scores are missing (filled with category means)."""
        return 0 if self.observed is None else int(self.observed.size - np.count_nonzero(self.observed))

    def observed_at(self, columns) -> np.ndarray | None:
        """The mask of present scores of ``columns`` (indices), or None when all are present."""
        return None if self.observed is None else self.observed[:, np.asarray(columns)]

    @property
    def n_queries(self) -> int:
        return len(self.qids)

    def subset(self, rows) -> Outcomes:
        """The queries at ``rows`` (indices or a boolean mask), in that order."""
        rows = np.arange(self.n_queries)[np.asarray(rows)]
        return Outcomes(
            qids=tuple(self.qids[i] for i in rows), categories=self.categories, category=self.category[rows],
            columns=self.columns, scores=self.scores[rows],
            texts=None if self.texts is None else tuple(self.texts[i] for i in rows),
            features=None if self.features is None else self.features[rows], source=self.source,
            tags=None if self.tags is None else tuple(self.tags[i] for i in rows),
            observed=None if self.observed is None else self.observed[rows],
        )

    def select_columns(self, names) -> Outcomes:
        """The score columns ``names``, in that order (a name may repeat)."""
        index = {c: i for i, c in enumerate(self.columns)}
        missing = [n for n in names if n not in index]
        if missing:
            raise InputError(Diagnostic(self.source, None, None, f"no scores for {missing[0]!r} "
                                        f"(have: {', '.join(self.columns)})"))
        cols = [index[n] for n in names]
        return Outcomes(qids=self.qids, categories=self.categories, category=self.category,
                        columns=tuple(names), scores=self.scores[:, cols], texts=self.texts,
                        features=self.features, source=self.source, tags=self.tags,
                        observed=None if self.observed is None else self.observed[:, cols])

    def group_keys(self) -> tuple[str, ...]:
        """What a split must keep together: the question text, or the query id without text."""
        return self.texts if self.texts is not None else self.qids

    def for_instance(self, instance: Instance, per: str = "expert") -> Outcomes:
        """Columns become the instance's experts, each with its LLM's scores (``per="expert"``),
        or the instance's distinct LLMs in first-seen order (``per="llm"``); categories become
        the instance's, in its order.

        Every instance LLM needs a column, every outcome category must be an instance category,
        and every category with a positive traffic share needs at least one query.
        """
        problems = []
        have = set(self.columns)
        for llm in dict.fromkeys(instance.expert_llms):
            if llm not in have:
                problems.append(f"no scores for LLM {llm!r} (have: {', '.join(self.columns)})")
        position = {c: i for i, c in enumerate(instance.categories)}
        counts = np.bincount(self.category, minlength=len(self.categories))
        for c, name in enumerate(self.categories):
            if counts[c] and name not in position:
                problems.append(f"category {name!r} ({counts[c]} queries) is not a category of {instance.name!r} "
                                f"(it has: {', '.join(instance.categories)})")
        if not problems:
            remap = np.array([position.get(name, -1) for name in self.categories], dtype=np.int64)
            category = remap[self.category]
            present = np.bincount(category, minlength=len(instance.categories))
            for c, name in enumerate(instance.categories):
                if instance.shares[c] > 0 and present[c] == 0:
                    problems.append(f"category {name!r} has traffic share {instance.shares[c]:g} but no queries")
        if problems:
            raise InputError([Diagnostic(self.source, None, None, p) for p in problems])
        llms = list(instance.expert_llms) if per == "expert" else list(dict.fromkeys(instance.expert_llms))
        expanded = self.select_columns(llms)
        return Outcomes(qids=self.qids, categories=instance.categories, category=category,
                        columns=instance.expert_ids if per == "expert" else tuple(llms), scores=expanded.scores,
                        texts=self.texts, features=self.features, source=self.source, tags=self.tags,
                        observed=expanded.observed)

    def mean_scores(self) -> np.ndarray:
        """Mean score of every column per category, shape (M, C); NaN where a category is empty."""
        sums = np.zeros((len(self.categories), len(self.columns)))
        np.add.at(sums, self.category, self.scores)
        counts = np.bincount(self.category, minlength=len(self.categories)).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (sums / counts[:, None]).T
