"""select's intervals, rules and cache; gating train's router comparison; gating eval on an
LLMRouter-format file; cache clear. Small query counts and few folds keep these fast."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def llmrouter_slice(tmp_path_factory):
    """A scenario trained on 312 shipped LLMRouter queries (every 18th) and another 225 to
    evaluate on (every 25th from the 6th; the file is ordered by task, so both span all)."""
    root = tmp_path_factory.mktemp("llmrouter")
    lines = gzip.open(ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz", "rt", encoding="utf-8").readlines()
    (root / "train.jsonl").write_text("".join(lines[::18]), encoding="utf-8")
    (root / "other.jsonl").write_text("".join(lines[5::25]), encoding="utf-8")
    text = (ROOT / "examples" / "llmrouter-edge.yaml").read_text(encoding="utf-8")
    (root / "scenario.yaml").write_text(text.replace("data/llmrouter-outcomes.jsonl.gz", "train.jsonl"),
                                        encoding="utf-8")
    return root


def _select(run_cli, *args):
    result = run_cli("select", *args, "--format", "json", "--no-timing", "--folds", "3")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_select_json_carries_intervals_gain_and_runner_up(run_cli, llmrouter_slice):
    record = _select(run_cli, llmrouter_slice / "scenario.yaml")
    ci = record["objective_ci"]
    assert ci["low"] <= record["objective"] <= ci["high"] and ci["se"] > 0
    gain = record["gain_over_best_single"]
    assert gain["low"] <= gain["estimate"] <= gain["high"] and gain["expert"] in [e["id"] for e in record["experts"]]
    runner = record["runner_up"]
    assert runner["selection"] != record["selection"]
    assert runner["gap"]["estimate"] == pytest.approx(record["objective"] - runner["objective"], abs=1e-6)
    assert (record["folds"], record["rule"], record["confidence"]) == (3, "best", 0.95)
    covers = gain["low"] <= 0 <= gain["high"]
    assert covers == any("not significantly better" in n for n in record["notes"])


def test_same_seed_same_bytes_with_and_without_the_cache(run_cli, llmrouter_slice):
    args = ("select", llmrouter_slice / "scenario.yaml", "--format", "json", "--no-timing", "--folds", "3")
    cached = [run_cli(*args).stdout for _ in range(2)]
    fresh = run_cli(*args, "--no-cache").stdout
    assert cached[0] == cached[1] == fresh


def test_parsimonious_rule_is_no_costlier_and_within_one_se(run_cli, llmrouter_slice):
    best = _select(run_cli, llmrouter_slice / "scenario.yaml")
    lean = _select(run_cli, llmrouter_slice / "scenario.yaml", "--rule", "parsimonious")
    assert max(lean["energy_j"].values()) <= max(best["energy_j"].values())
    assert lean["objective"] >= best["objective"] - best["objective_ci"]["se"] - 1e-12
    bad = run_cli("select", "--rule", "cheapest")
    assert bad.exit_code == 2 and "--rule" in bad.stderr and "Traceback" not in bad.output


def test_gating_train_compares_routers_with_intervals(run_cli, llmrouter_slice):
    result = run_cli("gating", "train", llmrouter_slice / "scenario.yaml", "--folds", "3", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["router"]: r for r in json.loads(result.stdout)["routers"]}
    assert set(rows) == {"gate", "lookup", "label-lookup", "logreg", "best-single", "oracle"}
    for name, row in rows.items():
        assert row["low"] <= row["objective"] <= row["high"]
        assert (row["versus_gate"] is None) == (name == "gate")
    assert rows["oracle"]["objective"] >= max(r["objective"] for r in rows.values())


def test_gating_eval_on_an_llmrouter_file_with_a_selection(run_cli, llmrouter_slice, tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(_select(run_cli, llmrouter_slice / "scenario.yaml")), encoding="utf-8")
    result = run_cli("gating", "eval", llmrouter_slice / "scenario.yaml", "--outcomes",
                     llmrouter_slice / "other.jsonl", "--selection", plan, "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["queries"] == 225 and record["trained_on"] == 312
    assert {r["router"] for r in record["routers"]} >= {"gate", "lookup", "logreg", "best-single", "oracle"}
    chosen = record["selection"]
    assert chosen["experts"] == json.loads(plan.read_text())["selection"]
    assert chosen["gain_over_best_single"]["estimate"] == pytest.approx(
        chosen["objective"]["estimate"] - chosen["best_single"]["estimate"], abs=1e-9)


def test_gating_eval_refuses_llms_missing_on_either_side(run_cli, llmrouter_slice, tmp_path):
    rows = [json.loads(line) for line in (llmrouter_slice / "other.jsonl").read_text().splitlines()]
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps({**r, "scores": {**r["scores"], "gpt-9": 1.0}}) + "\n" for r in rows))
    result = run_cli("gating", "eval", llmrouter_slice / "scenario.yaml", "--outcomes", extra)
    assert result.exit_code == 2 and "gpt-9" in result.stderr and "Traceback" not in result.output
    missing = tmp_path / "missing.jsonl"
    missing.write_text("".join(json.dumps({**r, "scores": {k: v for k, v in r["scores"].items()
                                                           if k != "gemma-2-9b-it"}}) + "\n" for r in rows))
    result = run_cli("gating", "eval", llmrouter_slice / "scenario.yaml", "--outcomes", missing)
    assert result.exit_code == 2 and "gemma-2-9b-it" in result.stderr


def test_cache_clear_removes_entries_earlier_layouts_and_stray_temporaries(run_cli, private_gate_cache):
    for name in ("crossfit-test.entry", "crossfit-old.npz", ".moe2-abc.tmp", "notes.txt"):
        (private_gate_cache / name).write_bytes(b"x")
    result = run_cli("cache", "clear")
    assert result.exit_code == 0 and "removed" in result.stderr
    left = {p.name for p in private_gate_cache.iterdir()}
    assert "notes.txt" in left and not left & {"crossfit-test.entry", "crossfit-old.npz", ".moe2-abc.tmp"}
    (private_gate_cache / "notes.txt").unlink()
