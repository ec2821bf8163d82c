"""Missing scores: an LLM that was never asked a query has no score for it.

The table keeps a mask of the scores present and fills each missing one with its LLM's mean
score over the queries of the same category where that LLM has a score. Filling with that mean
leaves every LLM's accuracy per category (and so any share-weighted accuracy) exactly the mean
over its present scores, and lets F, its bounds and its bootstrap read one dense array. The
gate's training loss reads the mask instead, and skips the missing entries.
"""

from __future__ import annotations

import numpy as np

from moe2_cli.outcomes.rows import Problems


def fill_missing(scores: np.ndarray, category: np.ndarray, categories: tuple[str, ...], columns: tuple[str, ...],
                 problems: Problems) -> tuple[np.ndarray, np.ndarray | None]:
    """``scores`` (NaN where missing) filled with per-category column means, and the mask of
    present scores (None when none is missing). A column with no score at all in a category that
    has queries is a problem: nothing says how that LLM does there."""
    present = ~np.isnan(scores)
    if present.all():
        return scores, None
    n_cat = len(categories)
    counts = np.zeros((n_cat, scores.shape[1]))
    sums = np.zeros((n_cat, scores.shape[1]))
    np.add.at(counts, category, present)
    np.add.at(sums, category, np.where(present, scores, 0.0))
    queries = np.bincount(category, minlength=n_cat)
    for c, m in zip(*np.nonzero((counts == 0) & (queries[:, None] > 0))):
        problems.add(None, f"no score of {columns[m]!r} in category {categories[c]!r} (its {queries[c]} queries "
                           "all lack one): a missing score is filled with the category's mean over the queries "
                           "that have one")
    problems.raise_if_any()
    means = sums / np.maximum(counts, 1)
    return np.where(present, scores, means[category]), present
