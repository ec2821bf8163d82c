"""Cross-fitting: folds grouped by text and stratified by category; each query scored by a gate
that did not see it; the deployed gate trained on every query; the cache gives the same bits."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.cache import GateCache, clear_cache
from moe2_cli.gating.crossfit import assign_folds, cross_fit, gate_logits
from moe2_cli.gating.pipeline import build_objective, deployed_gate, out_of_fold, scenario_outcomes
from moe2_cli.outcomes import Outcomes
from moe2_cli.scenario.scenario import load_scenario


@pytest.fixture(scope="module")
def default():
    return load_scenario(None)


def _table(n: int = 300) -> Outcomes:
    texts = tuple(f"question {i % 100}" for i in range(n))  # every text three times
    category = np.array([(i % 100) % 3 for i in range(n)])  # a text's queries share a category
    return Outcomes(qids=tuple(map(str, range(n))), categories=("a", "b", "c"), category=category, columns=("x",),
                    scores=np.ones((n, 1)), texts=texts)


def test_folds_keep_each_text_together_and_every_category_spread():
    table = _table()
    fold = assign_folds(table, 5, seed=1)
    for text in set(table.texts):
        assert len({fold[i] for i, t in enumerate(table.texts) if t == text}) == 1
    for c in range(3):
        counts = np.bincount(fold[table.category == c], minlength=5)
        assert counts.max() - counts.min() <= 3  # one text (three queries) apart at most
    assert not np.array_equal(fold, assign_folds(table, 5, seed=2))


def test_each_query_is_scored_by_the_gate_that_did_not_see_it(default):
    outcomes = scenario_outcomes(default, queries=400, seed=0)
    fit, gates = cross_fit(outcomes, 3, 2, seed=0, max_iter=30)
    for f, saved in enumerate(gates):
        rows = np.flatnonzero(fit.fold == f)
        np.testing.assert_array_equal(fit.logits[rows], gate_logits(saved, outcomes.subset(rows)))
        other = np.flatnonzero(fit.fold != f)
        # A gate scores its own training queries differently from the gate that held them out.
        assert not np.allclose(fit.logits[other], gate_logits(saved, outcomes.subset(other)))


def test_cache_hit_gives_the_same_bits_and_does_not_retrain(default, private_gate_cache, monkeypatch):
    clear_cache()
    first = build_objective(default, queries=400, folds=3).all_values()
    assert any(private_gate_cache.iterdir())

    def no_training(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    with monkeypatch.context() as patch:
        patch.setattr("moe2_cli.gating.pipeline.cross_fit", no_training)
        again = build_objective(default, queries=400, folds=3).all_values()
    assert again.tobytes() == first.tobytes()
    uncached = build_objective(default, queries=400, folds=3, use_cache=False).all_values()
    assert uncached.tobytes() == first.tobytes()
    assert clear_cache() >= 1 and not any(p.suffix == ".entry" for p in private_gate_cache.iterdir())


def test_a_disabled_cache_neither_reads_nor_writes(tmp_path):
    cache = GateCache(enabled=False, root=tmp_path)
    cache.store_arrays("crossfit-x", {"x": np.ones(3)})
    assert cache.load_arrays("crossfit-x") is None and not any(tmp_path.iterdir())


def test_one_fold_keeps_the_plain_split_and_the_deployed_gate_sees_every_query(default):
    fit = out_of_fold(scenario_outcomes(default, queries=300), 2, folds=1, use_cache=False)
    assert fit.rows.size == 100 and (fit.fold >= 0).sum() == 100
    saved = deployed_gate(default, seed=0)
    assert saved.experts == default.instance.expert_ids
    assert saved.gate.logits(saved.featurizer.transform(scenario_outcomes(default))).shape[1] == len(saved.columns)
