"""select, gating train and gating eval on outcome files where some LLMs were not asked some
queries: they run, say how many scores are missing, and F counts only what is there."""

from __future__ import annotations

import json

import numpy as np
import pytest

from moe2_cli.outcomes import synthesize_for, write_outcomes
from moe2_cli.outcomes.table import Outcomes
from moe2_cli.scenario.scenario import load_scenario

BUDGETS = ("--budget", "energy=150", "--budget", "latency=2.5")


def with_missing(table: Outcomes, seed: int, rate: float = 0.3) -> Outcomes:
    """``table`` with about ``rate`` of its scores missing; every query keeps one."""
    rng = np.random.default_rng(seed)
    observed = rng.random(table.scores.shape) >= rate
    observed[np.arange(table.n_queries), rng.integers(0, len(table.columns), table.n_queries)] = True
    return Outcomes(qids=table.qids, categories=table.categories, category=table.category, columns=table.columns,
                    scores=table.scores, features=table.features, observed=observed)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("missing")
    instance = load_scenario(None).instance
    paths = {}
    for name, seed in (("train", 1), ("new", 2)):
        paths[name] = folder / f"{name}.jsonl"
        write_outcomes(with_missing(synthesize_for(instance, 400, seed), seed), paths[name])
    return paths


def test_the_files_hold_missing_scores(files):
    first = json.loads(files["train"].read_text().split("\n")[0])
    text = files["train"].read_text()
    assert '": null' in text and len(first["scores"]) == 10


def test_select_plans_on_a_file_with_missing_scores(run_cli, files):
    result = run_cli("select", "--outcomes", files["train"], *BUDGETS, "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["status"] == "optimal" and payload["selection"]
    assert 0.0 < payload["objective"] <= payload["references"]["oracle"] + 1e-9
    assert "scores are missing; F counts each as its LLM's mean score" in result.stderr


def test_gating_train_fits_on_a_file_with_missing_scores(run_cli, files, tmp_path):
    result = run_cli("gating", "train", "--outcomes", files["train"], "--folds", "3", "--out", tmp_path / "g.npz",
                     "--format", "json")
    assert result.exit_code == 0, result.output
    routers = {r["router"]: r for r in json.loads(result.stdout)["routers"]}
    assert all(np.isfinite(r["objective"]) for r in routers.values())
    assert routers["best-single"]["objective"] <= routers["oracle"]["objective"]
    assert (tmp_path / "g.npz").stat().st_size > 0


def test_gating_eval_scores_a_plan_on_a_file_with_missing_scores(run_cli, files, tmp_path):
    plan = tmp_path / "plan.json"
    chosen = run_cli("select", "--outcomes", files["train"], *BUDGETS, "--format", "json")
    assert chosen.exit_code == 0, chosen.output
    plan.write_text(chosen.stdout)
    result = run_cli("gating", "eval", "--outcomes", files["new"], "--selection", plan, "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert 0 < payload["selection"]["objective"]["low"] <= payload["selection"]["objective"]["high"] <= 1
    assert "new.jsonl" in result.stderr and "scores are missing" in result.stderr
