"""Gate features: hashed TF-IDF text, standardised numbers and a one-hot category."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.features import FeatureSpec, QueryFeaturizer
from moe2_cli.outcomes import Outcomes

TEXTS = ("What is 2 + 2?", "Write a Python function that reverses a list.", "Who wrote Hamlet?",
         "Solve for x: 3x + 1 = 10.", "Which planet is largest?", "what is 2 + 2?")


def outcomes(texts=TEXTS, features=True) -> Outcomes:
    n = len(texts)
    rng = np.random.default_rng(0)
    return Outcomes(qids=tuple(f"q{i}" for i in range(n)), categories=("math", "code", "open_qa"),
                    category=np.array([0, 1, 2, 0, 2, 0])[:n], columns=("a",), scores=np.ones((n, 1)),
                    texts=tuple(texts), features=rng.normal(3.0, 2.0, (n, 3)) if features else None)


def test_layout_text_then_numbers_then_one_hot_category():
    table = outcomes()
    spec = FeatureSpec.for_outcomes(table, text_dim=64)
    X = QueryFeaturizer(spec).fit(table).transform(table).toarray()
    assert X.shape == (6, 64 + 3 + 3) == (6, spec.dim)
    np.testing.assert_allclose(np.linalg.norm(X[:, :64], axis=1), 1.0)  # L2-normalised text
    np.testing.assert_allclose(X[:, 64:67].mean(axis=0), 0.0, atol=1e-12)  # standardised on the fit set
    np.testing.assert_array_equal(X[:, 67:].argmax(axis=1), table.category)
    np.testing.assert_array_equal(X[:, 67:].sum(axis=1), 1.0)
    # lower-casing: the first and last questions differ only in case
    np.testing.assert_allclose(X[0, :64], X[5, :64])


def test_deterministic_and_restorable_from_saved_state():
    table = outcomes()
    spec = FeatureSpec.for_outcomes(table, text_dim=256)
    fitted = QueryFeaturizer(spec).fit(table.subset([0, 1, 2, 3]))
    restored = QueryFeaturizer.from_state(FeatureSpec.from_dict(spec.to_dict()), fitted.state())
    a, b = fitted.transform(table), restored.transform(table)
    assert (a != b).nnz == 0
    again = QueryFeaturizer(spec).fit(table.subset([0, 1, 2, 3])).transform(table)
    assert (a != again).nnz == 0


def test_idf_down_weights_common_words():
    texts = ("the cat", "the dog", "the bird", "the fish")
    table = Outcomes(qids=("1", "2", "3", "4"), categories=("x",), category=np.zeros(4), columns=("a",),
                     scores=np.ones((4, 1)), texts=texts)
    spec = FeatureSpec.for_outcomes(table, text_dim=1024, ngram_max=1)
    row = QueryFeaturizer(spec).fit(table).transform(table.subset([0])).toarray()[0, :1024]
    weights = sorted(row[row > 0])
    assert len(weights) == 2 and weights[0] < weights[1]  # "the" weighs less than "cat"
    plain = QueryFeaturizer(FeatureSpec.for_outcomes(table, text_dim=1024, ngram_max=1, tfidf=False))
    row = plain.fit(table).transform(table.subset([0])).toarray()[0, :1024]
    np.testing.assert_allclose(sorted(row[row > 0]), [2 ** -0.5] * 2)


def test_tables_without_text_use_numbers_and_category_only():
    table = outcomes(features=True)
    table = Outcomes(qids=table.qids, categories=table.categories, category=table.category, columns=table.columns,
                     scores=table.scores, features=table.features)
    spec = FeatureSpec.for_outcomes(table)
    assert spec.text_dim == 0 and spec.dim == 6
    assert QueryFeaturizer(spec).fit(table).transform(table).shape == (6, 6)


def test_mismatched_tables_are_refused():
    table = outcomes()
    featurizer = QueryFeaturizer(FeatureSpec.for_outcomes(table, text_dim=32)).fit(table)
    other = Outcomes(qids=table.qids, categories=("math", "code", "other"), category=table.category,
                     columns=table.columns, scores=table.scores, texts=table.texts, features=table.features)
    with pytest.raises(ValueError):
        featurizer.transform(other)
