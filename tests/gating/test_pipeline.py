"""From scenario to F: determinism, the split by question text, real data, and the check."""

from __future__ import annotations

import numpy as np
import pytest

from moe2_cli.gating.ensemble import gate_value
from moe2_cli.gating.foldcheck import fold_gaps
from moe2_cli.gating.pipeline import (
    build_objective,
    random_subsets,
    scenario_outcomes,
    split_queries,
    train_system,
)
from moe2_cli.outcomes import Outcomes, synthesize_for, write_outcomes
from moe2_cli.scenario.scenario import load_scenario
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def default():
    return load_scenario(None)


def test_same_seed_same_f_bits_and_another_seed_differs(default):
    a, b = (build_objective(default, seed=3).all_values() for _ in range(2))
    assert a.tobytes() == b.tobytes()
    assert build_objective(default, seed=4).all_values().tobytes() != a.tobytes()


def test_an_outcomes_file_gives_the_same_f_as_the_same_table_in_memory(default, tmp_path):
    path = tmp_path / "synth.jsonl.gz"
    write_outcomes(synthesize_for(default.instance, 3000, seed=2), path)
    from_file = build_objective(default, seed=2, outcomes_path=path).all_values()
    assert from_file.tobytes() == build_objective(default, seed=2).all_values().tobytes()


def test_split_keeps_each_question_text_in_one_part():
    texts = tuple(f"question {i % 40}" for i in range(200))  # every text five times
    table = Outcomes(qids=tuple(map(str, range(200))), categories=("x",), category=np.zeros(200), columns=("a",),
                     scores=np.ones((200, 1)), texts=texts)
    split = split_queries(table, seed=1)
    parts = [set(texts[i] for i in part) for part in (split.train, split.validation, split.held_out)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(map(len, parts)) == 40 and [len(p) for p in parts] == [20, 7, 13]
    assert sorted(np.concatenate([split.train, split.validation, split.held_out])) == list(range(200))


def test_the_full_set_gate_beats_the_best_single_llm_on_llmrouter_data():
    system = train_system(load_scenario(ROOT / "examples" / "llmrouter-edge.yaml"), seed=0)
    refs = system.objective.references(system.instance.full_mask)
    assert system.objective.n_columns == 6 and system.instance.n_experts == 12
    assert refs["best_single"] + 0.01 < refs["gate"] < refs["oracle"]
    texts = system.outcomes.texts
    held = {texts[i] for i in system.split.held_out}
    assert not held & {texts[i] for i in system.split.train}


def test_retraining_on_every_llm_reproduces_the_full_gate_in_every_fold(default):
    system = train_system(default, seed=1, queries=900)
    masks = random_subsets(system, 5, np.random.default_rng(0))
    columns = [int(system.objective.column_masks(np.array([m]))[0]) for m in masks]
    assert len(set(columns)) == 5 and all(2 <= c.bit_count() < system.objective.n_columns for c in columns)
    events = []
    result = fold_gaps(system, [system.instance.full_mask, *masks[:2]], 3, seed=1, progress=events.append)
    assert result.gaps.shape == (3, 3) and len(events) == 3 * 4
    np.testing.assert_allclose(result.gaps[:, 0], 0.0, atol=1e-8)
    assert np.all(np.abs(result.gaps[:, 1:]) < 0.1)
    # Three folds score three different sets of queries: the full set's F differs between them.
    assert np.ptp(result.restricted[:, 0]) > 0


def test_neg_cross_entropy_metric(default):
    objective = build_objective(default, metric="neg-cross-entropy")
    assert objective.value(0) == pytest.approx(np.log(objective.floor), abs=1e-8)
    full = objective.value(default.instance.full_mask)
    assert np.log(objective.floor) < full < 0
    assert full == pytest.approx(gate_value(objective.logits, objective.scores, objective.weights, objective.k,
                                            objective.column_masks(np.array([default.instance.full_mask]))[0],
                                            metric="neg-cross-entropy", floor=objective.floor), abs=1e-8)


def test_top_k_override_and_scenario_outcomes(default):
    assert build_objective(default, top_k=1).k == 1
    llmrouter = load_scenario(ROOT / "examples" / "llmrouter-edge.yaml")
    table = scenario_outcomes(llmrouter)
    assert table.columns == tuple(dict.fromkeys(llmrouter.instance.expert_llms))
    assert table.categories == llmrouter.instance.categories and table.n_queries == 5608


def test_training_reports_progress_and_progress_changes_nothing():
    events = []
    watched = train_system(load_scenario(None), seed=1, queries=300, progress=events.append)
    quiet = train_system(load_scenario(None), seed=1, queries=300)
    assert events and {e.task for e in events} == {"training"}
    assert [e.done for e in events] == list(range(1, len(events) + 1))
    assert watched.saved.gate.history_.iterations == len(events)
    np.testing.assert_array_equal(watched.saved.gate.W_, quiet.saved.gate.W_)
