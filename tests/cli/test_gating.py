"""`moe2 gating train|check` and `moe2 synth` through their typer apps."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from moe2_cli.cli.gating import app as gating_app
from moe2_cli.cli.synth import synth
from moe2_cli.gating.model import load_gate
from moe2_cli.outcomes import read_outcomes

ENV = {"NO_COLOR": "1", "COLUMNS": "200", "TERM": "dumb"}


@pytest.fixture(scope="module")
def cli():
    root = typer.Typer()
    root.add_typer(gating_app, name="gating")
    root.command()(synth)
    runner = CliRunner()
    return lambda *args: runner.invoke(root, [str(a) for a in args], env=ENV)


def test_train_reports_gate_best_single_and_oracle_and_saves_weights(cli, tmp_path):
    out = tmp_path / "gate.npz"
    result = cli("gating", "train", "--out", out, "--format", "json", "--queries", "600", "--folds", "3")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    overall = {r["router"]: r["objective"] for r in payload["routers"]}
    assert overall["best-single"] < overall["gate"] < overall["oracle"]
    assert payload["queries"] == 600 and payload["folds"] == 3
    assert payload["category_inference"] is None  # synthetic outcomes carry no text to infer it from
    assert load_gate(out).columns == tuple(payload["llms"])
    table = cli("gating", "train", "--queries", "600", "--folds", "3")
    assert table.exit_code == 0, table.output
    assert "lookup" in table.stdout and "oracle" in table.stdout
    assert "category inferred from text: unavailable" in table.stdout


def test_check_reports_gap_distribution_and_violation_rate(cli):
    result = cli("gating", "check", "--subsets", "3", "--folds", "3", "--queries", "900", "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    opt = payload["optimality"]
    assert opt["subsets"] == 3 and len(opt["details"]) == 3 and opt["folds"] == 3
    # Each selection's gap is its mean over the folds; each fold's gap the mean over selections.
    per_fold = np.array([d["fold_gaps"] for d in opt["details"]])  # (S, K)
    assert per_fold.shape == (3, 3) and opt["fold_gaps"] == pytest.approx(per_fold.mean(axis=0).tolist())
    assert [d["gap"] for d in opt["details"]] == pytest.approx(per_fold.mean(axis=1).tolist())
    assert opt["fold_gap_mean"] == pytest.approx(per_fold.mean())
    assert opt["fold_gap_spread"] == pytest.approx(np.std(opt["fold_gaps"], ddof=1)) and opt["fold_gap_spread"] > 0
    assert opt["single_fold_gap"]["min"] <= min(opt["fold_gaps"]) <= max(opt["fold_gaps"]) <= \
        opt["single_fold_gap"]["max"]
    mono = payload["monotonicity"]
    assert mono["exhaustive"] and mono["pairs"] == 11 * 2**10
    assert 0 <= mono["rate"] < 1 and mono["max_drop"] <= mono["envelope_gap"] + 1e-12
    csv = cli("gating", "check", "--subsets", "2", "--folds", "2", "--queries", "600", "--format", "csv")
    assert csv.exit_code == 0, csv.output
    assert csv.stdout.splitlines()[0] == "quantity,value" and "violation rate" in csv.stdout
    assert "fold 1: mean gap" in csv.stdout and "spread (sd over folds)" in csv.stdout


def test_synth_writes_a_calibrated_file(cli, tmp_path):
    out = tmp_path / "s.csv"
    result = cli("synth", "--queries", "800", "--seed", "3", "--out", out, "--format", "json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    table = read_outcomes(out)
    assert table.n_queries == 800 and payload["queries"] == 800
    assert all(abs(r["profile"] - r["synthetic"]) <= 0.5 / r["queries"] + 1e-9 for r in payload["accuracy"])
    again = tmp_path / "again.csv"
    cli("synth", "--queries", "800", "--seed", "3", "--out", again)
    assert out.read_bytes() == again.read_bytes()


def test_bad_outcomes_are_one_line_each_and_exit_2(cli, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"qid": "a", "category": "math", "scores": {"x": 2}}\n{oops\n')
    result = cli("gating", "train", "--outcomes", bad)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"{bad}:1: score of 'x' must be a number in [0, 1] (got 2)",
                                          f"{bad}:2: invalid JSON: Expecting property name enclosed in double "
                                          "quotes (column 2)"]
    assert "Traceback" not in result.output
    missing = cli("gating", "check", "--outcomes", tmp_path / "nope.jsonl")
    assert missing.exit_code == 2 and "cannot read outcomes" in missing.stderr
    unwritable = cli("synth", "--out", tmp_path / "no" / "dir.jsonl")
    assert unwritable.exit_code == 2 and "does not exist" in unwritable.stderr


def test_outcomes_for_other_llms_are_reported(cli, tmp_path):
    other = tmp_path / "other.jsonl"
    other.write_text('{"qid": "a", "category": "math", "scores": {"x": 1}}\n')
    result = cli("gating", "train", "--outcomes", other)
    assert result.exit_code == 2
    assert f"{other}: no scores for LLM 'qwen2.5-7b-instruct' (have: x)" in result.stderr.splitlines()


@pytest.mark.parametrize("option, value", [("--hidden", "99999999999"), ("--hidden", "65"), ("--queries", "10000001")])
def test_train_bounds_its_work(run_cli, option, value):
    result = run_cli("gating", "train", option, value)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"moe2: invalid value for '{option}'")


def test_train_refuses_more_k_than_experts(run_cli):
    result = run_cli("gating", "train", "--top-k", "50")
    assert result.exit_code == 2
    assert result.stderr == "moe2: --top-k must be between 1 and 11, the scenario's number of experts (got 50)\n"
