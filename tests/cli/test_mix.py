"""`select --mix` and `gating eval`'s drift check on slices of the shipped LLMRouter data."""

from __future__ import annotations

import gzip
import json

import pytest

from moe2_cli import api
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A scenario trained on every 18th shipped query, and every 25th from the 6th to score on
    (the file is ordered by task, so both span every task)."""
    root = tmp_path_factory.mktemp("mix")
    lines = gzip.open(ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz", "rt", encoding="utf-8").readlines()
    (root / "train.jsonl").write_text("".join(lines[::18]), encoding="utf-8")
    (root / "other.jsonl").write_text("".join(lines[5::25]), encoding="utf-8")
    text = (ROOT / "examples" / "llmrouter-edge.yaml").read_text(encoding="utf-8")
    (root / "scenario.yaml").write_text(text.replace("data/llmrouter-outcomes.jsonl.gz", "train.jsonl"),
                                        encoding="utf-8")
    return root


def _select(run_cli, data, *args):
    result = run_cli("select", data / "scenario.yaml", *args, "--format", "json", "--no-timing", "--folds", "3")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_select_records_the_mix_and_says_what_its_interval_covers(run_cli, data, tmp_path):
    plain = _select(run_cli, data)
    assert plain["mix"] is None
    assert any("drawn like those it was estimated on" in n for n in plain["notes"])
    mix = tmp_path / "mix.yaml"
    mix.write_text("tags: {gsm8k: 0.6, mmlu: 0.3, unheard_of: 0.1}\n", encoding="utf-8")
    mixed = _select(run_cli, data, "--mix", mix)
    assert mixed["mix"]["by"] == "tag" and mixed["mix"]["unseen"] == {"unheard_of": pytest.approx(0.1)}
    shares = {k: v for k, v in mixed["mix"]["shares"].items() if v > 0}
    assert shares == {"gsm8k": pytest.approx(2 / 3), "mmlu": pytest.approx(1 / 3)}
    assert any("unheard_of" in n and "cannot cover" in n for n in mixed["notes"])
    assert any(f"reweighted to the mix of {mix}" in n for n in mixed["notes"])
    assert mixed["mix"]["sample"] is None  # stated shares: no finite sample to allow for
    ci = mixed["objective_ci"]
    assert ci["low"] <= mixed["objective"] <= ci["high"]


def test_an_outcome_file_as_the_mix_gives_its_tag_shares(run_cli, data):
    record = _select(run_cli, data, "--mix", data / "other.jsonl")
    assert record["mix"]["by"] == "tag" and record["mix"]["source"] == str(data / "other.jsonl")
    assert sum(record["mix"]["shares"].values()) == pytest.approx(1.0)
    sample, ci = record["mix"]["sample"], record["objective_ci"]
    assert sample["queries"] == sum(1 for line in (data / "other.jsonl").open() if line.strip())
    assert sample["low"] < ci["low"] <= ci["high"] < sample["high"] and sample["se"] > 0
    table = run_cli("select", data / "scenario.yaml", "--folds", "3", "--mix", data / "other.jsonl")
    assert table.exit_code == 0 and "mix (" in table.stdout and "by tag" in table.stdout
    assert f"F on the {sample['queries']} queries of" in table.stdout


@pytest.mark.parametrize("text, message", [
    ("colours: {a: 1}\n", "unknown key 'colours'"),
    ("{}\n", "needs categories or tags"),
    ("tags: [gsm8k]\n", "must map names to shares"),
    ("tags: {gsm8k: -1}\n", "finite number >= 0"),
    ("tags: {gsm8k: .nan}\n", "finite number >= 0"),
    ("tags: {gsm8k: 0}\n", "must not all be 0"),
    ("tags: {nosuch: 1}\n", "no tag with a positive share that the training"),
    ("tags: {gsm8k: 1\n", "mix.yaml"),
])
def test_a_bad_mix_is_one_line_and_exit_2(run_cli, data, tmp_path, text, message):
    mix = tmp_path / "mix.yaml"
    mix.write_text(text, encoding="utf-8")
    result = run_cli("select", data / "scenario.yaml", "--folds", "3", "--mix", mix)
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_a_missing_mix_file_is_one_line_and_exit_2(run_cli, data, tmp_path):
    result = run_cli("select", data / "scenario.yaml", "--mix", tmp_path / "nowhere.yaml")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1, result.output


def test_the_api_takes_a_mix_mapping(data):
    record = api.select(data / "scenario.yaml", folds=3, timing=False, mix={"categories": {"math": 1.0}})
    assert record["mix"]["by"] == "category" and record["mix"]["shares"]["math"] == 1.0
    with pytest.raises(ValueError, match="mix is not a valid mix: share of category 'math'"):
        api.select(data / "scenario.yaml", folds=3, mix={"categories": {"math": "a lot"}})


def _degraded(data, tmp_path, llms) -> str:
    """A third of the tasks of other.jsonl, with every answer of ``llms`` now wrong."""
    rows = [json.loads(line) for line in (data / "other.jsonl").read_text(encoding="utf-8").splitlines()]
    kept = [r for r in rows if r["task"] in {"gsm8k", "mmlu", "mbpp", "natural_qa", "human_eval"}]
    for row in kept:
        row["scores"].update({llm: 0.0 for llm in llms})
    path = tmp_path / "worse.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
    return path


def test_eval_reports_the_mix_shift_and_fails_on_drift_only_below_the_plan(run_cli, data, tmp_path):
    record = _select(run_cli, data)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(record), encoding="utf-8")
    args = ("gating", "eval", data / "scenario.yaml", "--selection", plan, "--fail-on-drift", "--format", "json")
    alike = run_cli(*args, "--outcomes", data / "other.jsonl")
    assert alike.exit_code == 0, alike.output
    payload = json.loads(alike.stdout)
    chosen = payload["selection"]
    assert chosen["drift"] in ("inside", "above")
    assert chosen["plan"]["folds"] == 3 and chosen["plan"]["mix"]["by"] == "tag"
    tags = {r["name"]: r for r in payload["mix_shift"]["tags"]}
    assert tags["gsm8k"]["training_queries"] > 0 and tags["gsm8k"]["new_queries"] > 0
    llms = {e["id"].split("/", 1)[1] for e in record["experts"] if e["selected"]}
    worse = run_cli(*args, "--outcomes", _degraded(data, tmp_path, llms))
    assert worse.exit_code == 1, worse.output
    shifted = json.loads(worse.stdout)
    assert shifted["selection"]["drift"] == "below" and shifted["selection"]["objective"]["estimate"] == 0.0
    dropped = {r["name"] for r in shifted["mix_shift"]["tags"] if r["new_share"] == 0}
    assert "commonsense_qa" in dropped
    # The plan, reweighted to the shifted mix, differs from the plan on the training mix.
    assert shifted["selection"]["plan"]["objective"]["estimate"] != pytest.approx(record["objective"])
    table = run_cli("gating", "eval", data / "scenario.yaml", "--selection", plan, "--outcomes",
                    _degraded(data, tmp_path, llms))
    assert table.exit_code == 0 and "below it" in table.stdout and "tag shares" in table.stdout


def test_fail_on_drift_needs_a_selection(run_cli, data):
    result = run_cli("gating", "eval", data / "scenario.yaml", "--outcomes", data / "other.jsonl", "--fail-on-drift")
    assert result.exit_code == 2 and "--selection" in result.stderr and "Traceback" not in result.output
