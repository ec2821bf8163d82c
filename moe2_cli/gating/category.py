"""The category of a request that names none, read from its text.

A multinomial logistic regression on the gate's hashed TF-IDF n-grams of the question text
alone: the category one-hot is what it predicts, so it is never an input. It is fitted by
full-batch Adam from zero weights, as the logistic router is; nothing is drawn at random, so
the same table gives the same weights bit for bit (the seed of :func:`category_inference`
only deals the folds). Two choices were measured on the shipped LLMRouter data, cross-fitted
over 5 folds grouped by question text:

- single characters and punctuation marks are tokens too: option letters ("A."), the comma
  lists of concept-to-sentence prompts and code punctuation tell apart what words of two or
  more letters confuse (93.8 % -> 95.4 %; character n-grams reach 95.9 % but hash 6x slower);
- classes are weighted inversely to their size, so the largest category does not take the
  short open questions (open_qa 86 % -> 90 %, overall 95.4 % -> 95.7 %).

A table without question text has no classifier: :func:`category_inference` gives None and
:meth:`CategoryClassifier.fit` raises, so a caller must then require the category.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.gating.cache import GateCache, entry_key
from moe2_cli.gating.crossfit import DEFAULT_FOLDS, assign_folds, usable_folds
from moe2_cli.gating.features import DEFAULT_TEXT_DIM, FeatureSpec, QueryFeaturizer
from moe2_cli.gating.topk import softmax
from moe2_cli.outcomes import Outcomes

# Cross-fitted accuracy on the LLMRouter data by L2 (words only, unweighted): 1e-6 91.1 %,
# 1e-5 93.8 %, 1e-4 93.2 %, 1e-3 81.0 %; with marks and class weights 1e-5 95.8 %, 3e-5 95.7 %.
CATEGORY_L2 = 1e-5
_ITERATIONS = 100  # 200 steps at half the rate gain under 0.1 point
_RATE = 0.1


class CategoryClassifier:
    """Estimator: ``fit(outcomes)`` learns ``categories_``, ``featurizer_`` (the IDF weights)
    and ``coef_`` ((text_dim + 1, C), intercepts in the last row) from the table's texts and
    categories; ``predict_proba`` and ``predict`` read raw texts."""

    categories_: tuple[str, ...]
    featurizer_: QueryFeaturizer
    coef_: np.ndarray

    def __init__(self, text_dim: int = DEFAULT_TEXT_DIM, ngram_max: int = 2, l2: float = CATEGORY_L2):
        self.text_dim = text_dim
        self.ngram_max = ngram_max
        self.l2 = l2

    def settings(self) -> dict:
        return {"text_dim": self.text_dim, "ngram_max": self.ngram_max, "l2": self.l2,
                "iterations": _ITERATIONS, "rate": _RATE}

    def spec(self) -> FeatureSpec:
        """The gate's featuriser with the text part only: no categories, tags or numbers."""
        return FeatureSpec(categories=(), text_dim=self.text_dim, ngram_max=self.ngram_max, punctuation=True)

    def fit(self, outcomes: Outcomes) -> CategoryClassifier:
        counts = QueryFeaturizer(self.spec()).text_counts(table_texts(outcomes))
        return self.fit_counts(counts, outcomes.category, outcomes.categories)

    def fit_counts(self, counts, category: np.ndarray, categories: Sequence[str]) -> CategoryClassifier:
        """Fit on hashed counts (``QueryFeaturizer(self.spec()).text_counts``), so that folds of
        one table share one hashing of its texts."""
        self.categories_ = tuple(categories)
        self.featurizer_ = QueryFeaturizer(self.spec()).fit_text(counts)
        self.coef_ = _fit_softmax(self.featurizer_.text_matrix(counts), category, len(self.categories_), self.l2)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(Q, C): the probability of each category for each text."""
        if not hasattr(self, "coef_"):
            raise ValueError("the category classifier is not fitted")
        return self.proba_of_counts(self.featurizer_.text_counts(_checked(texts)))

    def proba_of_counts(self, counts) -> np.ndarray:
        """:meth:`predict_proba` from hashed counts."""
        X = self.featurizer_.text_matrix(counts)
        return softmax(np.asarray(X @ self.coef_[:-1]) + self.coef_[-1], axis=1)

    def predict(self, texts: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
        """The likeliest category of each text and its probability (Q,)."""
        proba = self.predict_proba(texts)
        best = proba.argmax(axis=1)
        return tuple(self.categories_[c] for c in best), proba[np.arange(best.size), best]

    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays (no pickled objects) to save beside the gate or in the cache."""
        return {"coef": self.coef_, "idf": _present(self.featurizer_.idf_),
                "categories": np.array(self.categories_, dtype=str),
                "settings": np.array(json.dumps(self.settings(), sort_keys=True))}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> CategoryClassifier:
        """The classifier saved by :meth:`state`; ValueError names what is missing or misshapen."""
        missing = sorted({"coef", "idf", "categories", "settings"} - set(arrays))
        if missing:
            raise ValueError(f"category classifier state lacks {', '.join(missing)}")
        settings = _settings(arrays["settings"])
        classifier = cls(settings["text_dim"], settings["ngram_max"], settings["l2"])
        categories = tuple(str(c) for c in np.asarray(arrays["categories"]).ravel())
        coef, idf = np.asarray(arrays["coef"], dtype=float), np.asarray(arrays["idf"], dtype=float)
        if coef.shape != (classifier.text_dim + 1, len(categories)) or idf.shape != (classifier.text_dim,):
            raise ValueError(f"category classifier arrays have shapes {coef.shape} and {idf.shape}, not "
                             f"({classifier.text_dim + 1}, {len(categories)}) and ({classifier.text_dim},)")
        if not (np.isfinite(coef).all() and np.isfinite(idf).all()):
            raise ValueError("category classifier weights are not all finite")
        classifier.categories_, classifier.coef_ = categories, coef
        classifier.featurizer_ = QueryFeaturizer.from_state(classifier.spec(), {"idf": idf})
        return classifier


def table_texts(outcomes: Outcomes) -> tuple[str, ...]:
    """The question texts, or a one-line error saying the category cannot be inferred."""
    if outcomes.texts is None:
        raise InputError(Diagnostic(outcomes.source, None, None, "the outcomes carry no question text, so a "
                                    "request's category cannot be inferred: it must name one"))
    return outcomes.texts


def _checked(texts: Sequence[str]) -> Sequence[str]:
    # A lone string would be read as a sequence of one-character texts.
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a sequence of strings")
    return texts


def _settings(value: np.ndarray) -> dict:
    try:
        settings = json.loads(str(np.asarray(value)[()]))
        return {"text_dim": int(settings["text_dim"]), "ngram_max": int(settings["ngram_max"]),
                "l2": float(settings["l2"])}
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise ValueError(f"category classifier settings are unreadable ({err})") from None


def _present(idf: np.ndarray | None) -> np.ndarray:
    if idf is None:
        raise ValueError("the category classifier is not fitted")
    return idf


def _fit_softmax(X, y: np.ndarray, classes: int, l2: float) -> np.ndarray:
    """Minimise the class-weighted mean cross-entropy of a softmax over ``classes`` plus
    ``l2 / 2 * |W|^2`` (intercepts unpenalised) by full-batch Adam; (D + 1, classes) weights."""
    counts = np.bincount(y, minlength=classes)
    # Every present class carries the same total weight, whatever its size.
    weight = (1.0 / (np.count_nonzero(counts) * np.maximum(counts, 1)))[y]
    target = np.eye(classes)[y]
    coef = np.zeros((X.shape[1] + 1, classes))
    m, v = np.zeros_like(coef), np.zeros_like(coef)
    for it in range(1, _ITERATIONS + 1):
        g = (softmax(np.asarray(X @ coef[:-1]) + coef[-1], axis=1) - target) * weight[:, None]
        grad = np.vstack([np.asarray(X.T @ g) + l2 * coef[:-1], g.sum(axis=0)])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        coef -= _RATE * (m / (1 - 0.9**it)) / (np.sqrt(v / (1 - 0.999**it)) + 1e-8)
    return coef


# ---------------------------------------------------------------- measured out of fold


def out_of_fold_categories(outcomes: Outcomes, folds: int = DEFAULT_FOLDS, seed: int = 0,
                           use_cache: bool = True) -> tuple[np.ndarray, int]:
    """The category each query is given by a classifier that did not see its question text
    (folds grouped by text and stratified by category, as the gate's), and the folds used.
    Cached by content, like the gate's cross-fit."""
    table_texts(outcomes)
    folds = usable_folds(outcomes, folds)
    cache = GateCache(use_cache)
    key = entry_key("category", outcomes, {**CategoryClassifier().settings(), "folds": folds, "seed": seed})
    hit = cache.load_arrays(key)
    if hit is not None and hit.get("predicted", np.zeros(0)).shape == (outcomes.n_queries,):
        return hit["predicted"], folds
    fold = assign_folds(outcomes, folds, seed)
    counts = QueryFeaturizer(CategoryClassifier().spec()).text_counts(outcomes.texts)
    predicted = np.empty(outcomes.n_queries, dtype=np.int64)
    for f in range(folds):
        train, scored = fold != f, fold == f
        classifier = CategoryClassifier().fit_counts(counts[train], outcomes.category[train], outcomes.categories)
        predicted[scored] = classifier.proba_of_counts(counts[scored]).argmax(axis=1)
    cache.store_arrays(key, {"predicted": predicted})
    return predicted, folds


def category_inference(outcomes: Outcomes, folds: int = DEFAULT_FOLDS, seed: int = 0,
                       use_cache: bool = True) -> dict | None:
    """How often the category inferred from a query's text is its true category, out of fold:
    overall and per category (None where a category has no queries); None without text."""
    if outcomes.texts is None:
        return None
    predicted, folds = out_of_fold_categories(outcomes, folds, seed, use_cache)
    right = predicted == outcomes.category
    per_category = []
    for c, name in enumerate(outcomes.categories):
        rows = outcomes.category == c
        per_category.append({"category": name, "queries": int(rows.sum()),
                             "accuracy": float(right[rows].mean()) if rows.any() else None})
    return {"accuracy": float(right.mean()), "queries": outcomes.n_queries, "folds": folds,
            "per_category": per_category}
