"""F reweighted to a stated traffic mix: the weights, the notes, and F through the pipeline."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.errors import UsageError
from moe2_cli.gating.confidence import Bootstrap, query_values
from moe2_cli.gating.drift import prediction, verdict
from moe2_cli.gating.ensemble import share_weights
from moe2_cli.gating.mix import Mix, mix_of, sample_se, weighting
from moe2_cli.gating.pipeline import estimate_objective, scenario_outcomes
from moe2_cli.outcomes import Outcomes
from moe2_cli.scenario.scenario import load_scenario


def _tagged() -> tuple[Outcomes, np.ndarray]:
    """Two categories; a: tags t1 (6 queries) and t2 (2); b: tag t3 (4)."""
    tags = [("t1",)] * 6 + [("t2",)] * 2 + [("t3",)] * 4
    category = [0] * 8 + [1] * 4
    table = Outcomes(qids=tuple(f"q{i}" for i in range(12)), categories=("a", "b"), category=np.array(category),
                     columns=("llm",), scores=np.zeros((12, 1)), tags=tuple(tags), source="t")
    return table, np.array([0.7, 0.3])


class _Instance:
    name, categories, shares = "toy", ("a", "b"), np.array([0.7, 0.3])


def test_the_training_mix_gives_the_weights_f_already_has():
    table, shares = _tagged()
    mix = mix_of(table, _Instance(), "t")
    assert mix.tags == pytest.approx({"t1": 0.525, "t2": 0.175, "t3": 0.3})
    assert mix.categories == pytest.approx({"a": 0.7, "b": 0.3})
    w = weighting(mix, table, shares)
    np.testing.assert_allclose(share_weights(w.strata, w.shares), share_weights(table.category, shares))
    assert w.notes == () and w.record["by"] == "tag"


def test_tags_of_the_mix_without_training_queries_are_noted_and_the_rest_renormalised():
    table, shares = _tagged()
    w = weighting(Mix(categories=None, tags={"t1": 0.5, "t3": 0.3, "t9": 0.2}, source="m"), table, shares)
    assert w.record["shares"] == pytest.approx({"t1": 0.625, "t2": 0.0, "t3": 0.375})
    assert w.record["unseen"] == {"t9": 0.2}
    assert len(w.notes) == 1 and "t9" in w.notes[0] and "cannot cover" in w.notes[0]
    weights = share_weights(w.strata, w.shares)
    assert weights[:6].sum() == pytest.approx(0.625) and weights[6:8].sum() == 0.0


def test_a_mix_none_of_whose_tags_were_seen_or_tags_without_tagged_outcomes_is_refused():
    table, shares = _tagged()
    with pytest.raises(UsageError, match="no tag with a positive share that the training"):
        weighting(Mix(categories=None, tags={"t9": 1.0}, source="m"), table, shares)
    untagged = Outcomes(qids=table.qids, categories=table.categories, category=table.category,
                        columns=table.columns, scores=table.scores, source="t")
    with pytest.raises(UsageError, match="carry no tags"):
        weighting(Mix(categories=None, tags={"t1": 1.0}, source="m"), untagged, shares)


@pytest.fixture(scope="module")
def default_estimate():
    scenario = load_scenario(None)
    options = {"queries": 600, "folds": 2}
    return scenario, options, estimate_objective(scenario, **options)


def test_reweighting_to_the_training_mix_reproduces_f(default_estimate):
    scenario, options, plain = default_estimate
    table = scenario_outcomes(scenario, queries=600, instance=scenario.instance)
    same = estimate_objective(scenario, mix=mix_of(table, scenario.instance, "training"), **options)
    np.testing.assert_allclose(same.objective.weights, plain.objective.weights)
    masks = np.arange(1, 1 << scenario.instance.n_experts, 37)
    np.testing.assert_allclose(same.objective(masks), plain.objective(masks))


def test_a_category_mix_moves_f_to_the_mix_of_per_category_fs(default_estimate):
    scenario, options, plain = default_estimate
    mask = int(np.flatnonzero(plain.objective(np.arange(1 << scenario.instance.n_experts)) > 0)[0])
    values = query_values(plain.objective, [mask])[0]
    names = scenario.instance.categories
    per = {name: values[plain.category == c].mean() for c, name in enumerate(names)}
    assert max(per.values()) - min(per.values()) > 0.05  # the categories do differ
    low, high = min(per, key=per.get), max(per, key=per.get)
    mixed = estimate_objective(scenario, mix=Mix(categories={low: 0.25, high: 0.75}, tags=None, source="m"),
                               **options)
    assert mixed.objective.value(mask) == pytest.approx(0.25 * per[low] + 0.75 * per[high])
    only = estimate_objective(scenario, mix=Mix(categories={low: 1.0}, tags=None, source="m"), **options)
    assert only.objective.value(mask) == pytest.approx(per[low])
    weights = only.weighting
    bootstrap = Bootstrap(only.objective, weights.strata, resamples=200, fold=only.fold, shares=weights.shares)
    outside = plain.category != names.index(low)
    assert bootstrap.weights[:, outside].sum() == 0.0
    interval = bootstrap.of(mask)
    assert interval.low <= per[low] <= interval.high


def test_the_drift_check_widens_the_plan_by_the_new_queries_sampling_error():
    plan = {"estimate": 0.6, "low": 0.57, "high": 0.64}
    assert prediction(plan, 0.0, 0.95) == pytest.approx({"low": 0.57, "high": 0.64})
    wide = prediction(plan, 0.02, 0.95)
    half = 1.959964 * 0.02
    assert wide["low"] == pytest.approx(0.6 - np.hypot(0.03, half)) and wide["high"] == pytest.approx(
        0.6 + np.hypot(0.04, half))
    assert [verdict(f, wide) for f in (0.5, 0.56, 0.7)] == ["below", "inside", "above"]


def test_a_mix_file_is_a_finite_sample_whose_f_scatters_by_its_strata_counts():
    table, shares = _tagged()
    mix = mix_of(table, _Instance(), "t")
    assert mix.counts == {"categories": {"a": 8, "b": 4}, "tags": {"t1": 6, "t2": 2, "t3": 4}}
    w = weighting(mix, table, shares)
    values = np.array([1.0, 0.0] * 3 + [1.0, 1.0] + [0.0, 1.0, 1.0, 0.0])
    expected = 0.525 ** 2 * values[:6].var(ddof=1) / 6 + 0.3 ** 2 * values[8:].var(ddof=1) / 4  # t2: no spread
    assert sample_se(values, w) == pytest.approx(np.sqrt(expected))
    halved = weighting(Mix(categories=None, tags=mix.tags, source="t", counts={"categories": {},
                                                                              "tags": {"t1": 24, "t2": 8, "t3": 16}}),
                       table, shares)
    assert sample_se(values, halved) == pytest.approx(np.sqrt(expected) / 2)  # 4x the queries, half the SE
    stated = weighting(Mix(categories=None, tags=mix.tags, source="t"), table, shares)
    assert sample_se(values, stated) is None
