"""The category of a request that names none, read from its text.

A multinomial logistic regression on the gate's hashed TF-IDF n-grams of the question text
alone: the category one-hot is what it predicts, so it is never an input. It is fitted by
full-batch Adam from zero weights, as the logistic router is, with the L2 penalty chosen on a
held-out quarter of the question texts; the seed deals that quarter (and the folds of
:func:`category_inference`), so the same table and seed give the same weights bit for bit.
Two choices were measured on the shipped LLMRouter data, cross-fitted over 5 folds grouped by
question text:

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
from moe2_cli.gating.crossfit import DEFAULT_FOLDS, INNER_FOLDS, assign_folds, usable_folds
from moe2_cli.gating.features import DEFAULT_TEXT_DIM, FeatureSpec, QueryFeaturizer
from moe2_cli.gating.topk import softmax
from moe2_cli.outcomes import Outcomes

# The L2 penalties tried, per query: the one with the least held-out log-loss is kept. On the
# LLMRouter data 1e-5 wins (cross-fitted, words only: 1e-6 91.1 %, 1e-5 93.8 %, 1e-4 93.2 %,
# 1e-3 81.0 %); on a few hundred short texts unique n-grams overfit and 1e-4 or 1e-3 wins.
CATEGORY_L2 = (1e-5, 1e-4, 1e-3)
_ITERATIONS = 100  # 200 steps at half the rate gain under 0.1 point
_RATE = 0.1


class CategoryClassifier:
    """Estimator: ``fit(outcomes)`` learns ``categories_``, ``l2_`` (chosen on a held-out
    quarter of the question texts, dealt by ``seed``), ``featurizer_`` (the IDF weights) and
    ``coef_`` ((text_dim + 1, C), intercepts in the last row) from the table's texts and
    categories; ``predict_proba`` and ``predict`` read raw texts."""

    categories_: tuple[str, ...]
    l2_: float
    featurizer_: QueryFeaturizer
    coef_: np.ndarray

    def __init__(self, text_dim: int = DEFAULT_TEXT_DIM, ngram_max: int = 2,
                 penalties: Sequence[float] = CATEGORY_L2, seed: int = 0):
        self.text_dim = text_dim
        self.ngram_max = ngram_max
        self.penalties = tuple(penalties)
        self.seed = seed

    def settings(self) -> dict:
        return {"text_dim": self.text_dim, "ngram_max": self.ngram_max, "penalties": list(self.penalties),
                "seed": self.seed, "iterations": _ITERATIONS, "rate": _RATE}

    def spec(self) -> FeatureSpec:
        """The gate's featuriser with the text part only: no categories, tags or numbers."""
        return FeatureSpec(categories=(), text_dim=self.text_dim, ngram_max=self.ngram_max, punctuation=True)

    def fit(self, outcomes: Outcomes) -> CategoryClassifier:
        counts = QueryFeaturizer(self.spec()).text_counts(table_texts(outcomes))
        return self.fit_counts(counts, outcomes.category, outcomes.categories, held_out(outcomes, self.seed))

    def fit_counts(self, counts, category: np.ndarray, categories: Sequence[str],
                   held: np.ndarray) -> CategoryClassifier:
        """Fit on hashed counts (``QueryFeaturizer(self.spec()).text_counts``), so that folds of
        one table share one hashing of its texts; ``held`` marks the queries that choose the
        penalty (see :func:`held_out`) before the weights are fitted on every query."""
        self.categories_ = tuple(categories)
        self.l2_ = self._penalty(counts, category, held)
        self.featurizer_ = QueryFeaturizer(self.spec()).fit_text(counts)
        X = self.featurizer_.text_matrix(counts)
        self.coef_ = _fit_softmax(X, category, len(self.categories_), (self.l2_,))[0]
        return self

    def _penalty(self, counts, category: np.ndarray, held: np.ndarray) -> float:
        if len(self.penalties) == 1 or held.all() or not held.any():
            return max(self.penalties)  # nothing to compare on: the strongest penalty overfits least
        featurizer = QueryFeaturizer(self.spec()).fit_text(counts[~held])
        coefs = _fit_softmax(featurizer.text_matrix(counts[~held]), category[~held], len(self.categories_),
                             self.penalties)
        X, y = featurizer.text_matrix(counts[held]), category[held]
        weight = _class_weights(y, len(self.categories_))
        losses = [-(weight * np.log(_proba(coef, X)[np.arange(y.size), y] + 1e-300)).sum() for coef in coefs]
        return self.penalties[int(np.argmin(losses))]

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(Q, C): the probability of each category for each text."""
        if not hasattr(self, "coef_"):
            raise ValueError("the category classifier is not fitted")
        return self.proba_of_counts(self.featurizer_.text_counts(_checked(texts)))

    def proba_of_counts(self, counts) -> np.ndarray:
        """:meth:`predict_proba` from hashed counts."""
        return _proba(self.coef_, self.featurizer_.text_matrix(counts))

    def predict(self, texts: Sequence[str]) -> tuple[tuple[str, ...], np.ndarray]:
        """The likeliest category of each text and its probability (Q,)."""
        proba = self.predict_proba(texts)
        best = proba.argmax(axis=1)
        return tuple(self.categories_[c] for c in best), proba[np.arange(best.size), best]

    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays (no pickled objects) to save beside the gate or in the cache."""
        return {"coef": self.coef_, "idf": _present(self.featurizer_.idf_),
                "categories": np.array(self.categories_, dtype=str),
                "settings": np.array(json.dumps({**self.settings(), "l2": self.l2_}, sort_keys=True))}

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray]) -> CategoryClassifier:
        """The classifier saved by :meth:`state`; ValueError names what is missing or misshapen."""
        missing = sorted({"coef", "idf", "categories", "settings"} - set(arrays))
        if missing:
            raise ValueError(f"category classifier state lacks {', '.join(missing)}")
        settings = _settings(arrays["settings"])
        classifier = cls(settings["text_dim"], settings["ngram_max"], settings["penalties"], settings["seed"])
        categories = tuple(str(c) for c in np.asarray(arrays["categories"]).ravel())
        coef, idf = np.asarray(arrays["coef"], dtype=float), np.asarray(arrays["idf"], dtype=float)
        if coef.shape != (classifier.text_dim + 1, len(categories)) or idf.shape != (classifier.text_dim,):
            raise ValueError(f"category classifier arrays have shapes {coef.shape} and {idf.shape}, not "
                             f"({classifier.text_dim + 1}, {len(categories)}) and ({classifier.text_dim},)")
        if not (np.isfinite(coef).all() and np.isfinite(idf).all()):
            raise ValueError("category classifier weights are not all finite")
        classifier.categories_, classifier.l2_, classifier.coef_ = categories, settings["l2"], coef
        classifier.featurizer_ = QueryFeaturizer.from_state(classifier.spec(), {"idf": idf})
        return classifier


def deployed_classifier(outcomes: Outcomes, seed: int = 0, use_cache: bool = True) -> CategoryClassifier:
    """The classifier ``route`` and ``serve`` infer categories with: fitted on every query of
    the table, from the gate cache when it holds it (an entry that does not load is a miss)."""
    table_texts(outcomes)
    cache = GateCache(use_cache)
    key = entry_key("category", outcomes, {**CategoryClassifier(seed=seed).settings(), "fitted_on": "all"})
    hit = cache.load_arrays(key)
    if hit is not None:
        try:
            return CategoryClassifier.from_state(hit)
        except ValueError:
            pass
    classifier = CategoryClassifier(seed=seed).fit(outcomes)
    cache.store_arrays(key, classifier.state())
    return classifier


def held_out(outcomes: Outcomes, seed: int) -> np.ndarray:
    """The queries that choose the penalty: a quarter of the question texts, stratified by
    category, as the gate's early stopping holds out (none with fewer than 4 texts)."""
    if len(dict.fromkeys(outcomes.group_keys())) < INNER_FOLDS:
        return np.zeros(outcomes.n_queries, dtype=bool)
    return assign_folds(outcomes, INNER_FOLDS, seed) == 0


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
                "penalties": tuple(float(p) for p in settings["penalties"]), "seed": int(settings["seed"]),
                "l2": float(settings["l2"])}
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise ValueError(f"category classifier settings are unreadable ({err})") from None


def _present(idf: np.ndarray | None) -> np.ndarray:
    if idf is None:
        raise ValueError("the category classifier is not fitted")
    return idf


def _proba(coef: np.ndarray, X) -> np.ndarray:
    return softmax(np.asarray(X @ coef[:-1]) + coef[-1], axis=1)


def _class_weights(y: np.ndarray, classes: int) -> np.ndarray:
    """Each query's weight: every present class carries the same total, whatever its size."""
    counts = np.bincount(y, minlength=classes)
    return (1.0 / (np.count_nonzero(counts) * np.maximum(counts, 1)))[y]


def _fit_softmax(X, y: np.ndarray, classes: int, penalties: Sequence[float]) -> np.ndarray:
    """For each penalty, minimise the class-weighted mean cross-entropy of a softmax over
    ``classes`` plus ``l2 / 2 * |W|^2`` (intercepts unpenalised) by full-batch Adam; returns
    (penalties, D + 1, classes) weights. The problems are independent, so one run fits them
    side by side."""
    # Hashed columns no training text reaches get no gradient and keep weight 0: leaving them
    # out changes nothing and spares most of the work on small tables.
    dim, used = X.shape[1], np.unique(X.indices)
    X = X[:, used]
    q, g = len(y), len(penalties)
    weight = _class_weights(y, classes)[:, None]
    target = np.tile(np.eye(classes)[y], g)
    l2 = np.repeat(np.asarray(penalties, dtype=float), classes)
    coef = np.zeros((used.size + 1, g * classes))
    m, v = np.zeros_like(coef), np.zeros_like(coef)
    for it in range(1, _ITERATIONS + 1):
        z = (np.asarray(X @ coef[:-1]) + coef[-1]).reshape(q, g, classes)
        residual = (softmax(z, axis=2).reshape(q, g * classes) - target) * weight
        grad = np.vstack([np.asarray(X.T @ residual) + l2 * coef[:-1], residual.sum(axis=0)])
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        coef -= _RATE * (m / (1 - 0.9**it)) / (np.sqrt(v / (1 - 0.999**it)) + 1e-8)
    full = np.zeros((dim + 1, g * classes))
    full[used], full[-1] = coef[:-1], coef[-1]
    return full.reshape(dim + 1, g, classes).transpose(1, 0, 2)


# ---------------------------------------------------------------- measured out of fold


def out_of_fold_categories(outcomes: Outcomes, folds: int = DEFAULT_FOLDS, seed: int = 0,
                           use_cache: bool = True) -> tuple[np.ndarray, int]:
    """The category each query is given by a classifier that did not see its question text
    (folds grouped by text and stratified by category, as the gate's), and the folds used.
    Cached by content, like the gate's cross-fit."""
    table_texts(outcomes)
    folds = usable_folds(outcomes, folds)
    cache = GateCache(use_cache)
    key = entry_key("category", outcomes, {**CategoryClassifier(seed=seed).settings(), "folds": folds})
    hit = cache.load_arrays(key)
    if hit is not None and hit.get("predicted", np.zeros(0)).shape == (outcomes.n_queries,):
        return hit["predicted"], folds
    fold = assign_folds(outcomes, folds, seed)
    counts = QueryFeaturizer(CategoryClassifier().spec()).text_counts(outcomes.texts)
    predicted = np.empty(outcomes.n_queries, dtype=np.int64)
    for f in range(folds):
        train, scored = np.flatnonzero(fold != f), fold == f
        held = held_out(outcomes.subset(train), seed)
        classifier = CategoryClassifier(seed=seed).fit_counts(counts[train], outcomes.category[train],
                                                              outcomes.categories, held)
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
