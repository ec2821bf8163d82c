"""Gate inputs from outcomes, with nothing to download: hashed text n-grams with TF-IDF
weights, standardised numeric features, and a one-hot category.

The layout of a row is ``[text (text_dim) | numeric (numeric_dim) | category one-hot (C) | tags (T)]``:
per-query labels (an LLMRouter task, a file's ``tags``) are one-hot features over the labels the
table carries; a label the spec does not know adds nothing.
Every part is deterministic: the hashing needs no vocabulary, and the only learned state (the
IDF weights and the numeric mean and scale, fitted on training queries) is saved with the gate.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from moe2_cli.gating.hashing import hashed_counts
from moe2_cli.outcomes import Outcomes

if TYPE_CHECKING:
    import scipy.sparse as sp

DEFAULT_TEXT_DIM = 2**14
WORDS = r"(?u)\b\w\w+\b"  # scikit-learn's default: words of two or more characters
WORDS_AND_MARKS = r"(?u)\b\w+\b|[^\w\s]"  # every word, and each punctuation mark on its own


@dataclass(frozen=True)
class FeatureSpec:
    """What the featuriser builds; saved as plain JSON beside the gate weights."""

    categories: tuple[str, ...]
    text_dim: int = 0  # hashed text columns; 0 means no text part
    ngram_max: int = 2  # word n-grams 1..ngram_max
    tfidf: bool = True  # sublinear TF x IDF (else raw counts), then L2-normalised
    numeric_dim: int = 0
    tags: tuple[str, ...] = ()  # the labels that become one-hot features
    punctuation: bool = False  # also one-character words and punctuation marks as tokens

    @classmethod
    def for_outcomes(cls, outcomes: Outcomes, text_dim: int = DEFAULT_TEXT_DIM, **options) -> FeatureSpec:
        """Use the text when the table has it and the numeric features when it has them."""
        tags = () if outcomes.tags is None else tuple(sorted({t for labels in outcomes.tags for t in labels}))
        return cls(categories=tuple(outcomes.categories), text_dim=text_dim if outcomes.texts is not None else 0,
                   numeric_dim=0 if outcomes.features is None else outcomes.features.shape[1], tags=tags, **options)

    @property
    def dim(self) -> int:
        return self.text_dim + self.numeric_dim + len(self.categories) + len(self.tags)

    def to_dict(self) -> dict:
        return {**asdict(self), "categories": list(self.categories), "tags": list(self.tags)}

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(**{**data, "categories": tuple(data["categories"]), "tags": tuple(data.get("tags", ()))})


class QueryFeaturizer:
    """Estimator: ``fit`` on training outcomes learns ``idf_``, ``mean_`` and ``scale_``;
    ``transform`` maps any outcomes with the same categories to a CSR matrix (Q, spec.dim)."""

    idf_: np.ndarray | None
    mean_: np.ndarray | None
    scale_: np.ndarray | None

    def __init__(self, spec: FeatureSpec):
        self.spec = spec

    def fit(self, outcomes: Outcomes) -> QueryFeaturizer:
        self._check(outcomes)
        if self.spec.text_dim:
            self.fit_text(self.text_counts(outcomes.texts))
        if self.spec.numeric_dim:
            features = _present(outcomes.features)
            self.mean_ = features.mean(axis=0)
            std = features.std(axis=0)
            self.scale_ = np.where(std > 0, std, 1.0)
        return self

    def text_counts(self, texts) -> sp.csr_matrix:
        """Hashed n-gram counts of ``texts``, (len(texts), text_dim), before any weighting: a
        caller fitting on several parts of one table hashes each text once."""
        pattern = WORDS_AND_MARKS if self.spec.punctuation else WORDS
        return hashed_counts(texts, self.spec.text_dim, pattern, self.spec.ngram_max)

    def fit_text(self, counts: sp.csr_matrix) -> QueryFeaturizer:
        """Learn the text part's IDF weights from training :meth:`text_counts` alone: all a
        text-only featuriser (a spec with no categories, tags or numbers) fits."""
        if self.spec.tfidf:
            from sklearn.feature_extraction.text import TfidfTransformer

            self.idf_ = TfidfTransformer(sublinear_tf=True).fit(counts).idf_
        else:
            self.idf_ = None
        return self

    def transform(self, outcomes: Outcomes) -> sp.csr_matrix:
        self._check(outcomes)
        sp = _sparse()
        parts = []
        if self.spec.text_dim:
            parts.append(self.text_matrix(self.text_counts(outcomes.texts)))
        if self.spec.numeric_dim:
            parts.append(sp.csr_matrix((_present(outcomes.features) - _present(self.mean_)) / _present(self.scale_)))
        rows = np.arange(outcomes.n_queries)
        parts.append(sp.csr_matrix((np.ones(rows.size), (rows, outcomes.category)),
                                   shape=(rows.size, len(self.spec.categories))))
        if self.spec.tags:
            parts.append(self._tags(outcomes))
        return sp.hstack(parts, format="csr", dtype=np.float64)

    def _tags(self, outcomes: Outcomes) -> sp.csr_matrix:
        index = {t: i for i, t in enumerate(self.spec.tags)}
        pairs = [(q, index[t]) for q, labels in enumerate(outcomes.tags or ()) for t in labels if t in index]
        rows, cols = (np.array(v, dtype=np.int64) for v in zip(*pairs)) if pairs else (np.zeros(0, int),) * 2
        return _sparse().csr_matrix((np.ones(rows.size), (rows, cols)), shape=(outcomes.n_queries, len(index)))

    def text_matrix(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """The text part alone from :meth:`text_counts`: TF-IDF weighted (sublinear counts) and
        L2-normalised row by row; ``counts`` is left as it was."""
        sp = _sparse()
        counts = sp.csr_matrix(counts, copy=True)
        if self.spec.tfidf:
            # The same weighting as TfidfTransformer(sublinear_tf=True), applied with the saved IDF.
            counts.data = (np.log(counts.data) + 1.0) * _present(self.idf_)[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        return sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ counts)

    def _check(self, outcomes: Outcomes) -> None:
        if tuple(outcomes.categories) != self.spec.categories:
            raise ValueError("outcomes categories differ from the feature spec's")
        if self.spec.text_dim and outcomes.texts is None:
            raise ValueError("the feature spec needs question text")
        if self.spec.numeric_dim and (outcomes.features is None or outcomes.features.shape[1] != self.spec.numeric_dim):
            raise ValueError(f"the feature spec needs {self.spec.numeric_dim} numeric features")

    def state(self) -> dict[str, np.ndarray]:
        """The learned arrays, for saving."""
        out: dict[str, np.ndarray] = {}
        if self.spec.text_dim and self.spec.tfidf:
            out["idf"] = _present(self.idf_)
        if self.spec.numeric_dim:
            out["numeric_mean"], out["numeric_scale"] = _present(self.mean_), _present(self.scale_)
        return out

    @classmethod
    def from_state(cls, spec: FeatureSpec, arrays: dict[str, np.ndarray]) -> QueryFeaturizer:
        featurizer = cls(spec)
        featurizer.idf_ = arrays.get("idf")
        featurizer.mean_ = arrays.get("numeric_mean")
        featurizer.scale_ = arrays.get("numeric_scale")
        return featurizer


def _present(array: np.ndarray | None) -> np.ndarray:
    """An array the spec's enabled parts guarantee (``_check`` and ``fit`` see to it)."""
    if array is None:
        raise ValueError("the feature spec needs an array the outcomes or the fitted state lack")
    return array


def _sparse() -> ModuleType:
    # Imported on first use, like scikit-learn above: commands that never build gate inputs
    # (help, show, validate) start without it.
    import scipy.sparse

    return scipy.sparse
