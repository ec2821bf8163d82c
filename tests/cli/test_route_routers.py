"""Every registered router: `moe2 route` sends each shipped LLMRouter prompt to the expert that
`select`'s router, fitted on every query, prefers inside the selection."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from moe2_cli.gating.pipeline import scenario_outcomes
from moe2_cli.gating.registry import ROUTERS, make_router
from moe2_cli.scenario.scenario import load_scenario
from moe2_cli.serve.queries import read_queries
from moe2_cli.serve.routing import query_table
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def llmrouter_small(tmp_path_factory):
    """The shipped LLMRouter scenario on 312 of its queries (every 18th; the file is ordered by
    task, so all tasks appear), and the shipped prompt set as a query file with each prompt's
    LLMRouter task as its tag."""
    root = tmp_path_factory.mktemp("llmrouter-routers")
    lines = gzip.open(ROOT / "examples" / "data" / "llmrouter-outcomes.jsonl.gz", "rt", encoding="utf-8").readlines()
    (root / "train.jsonl").write_text("".join(lines[::18]), encoding="utf-8")
    text = (ROOT / "examples" / "llmrouter-edge.yaml").read_text(encoding="utf-8")
    (root / "scenario.yaml").write_text(text.replace("data/llmrouter-outcomes.jsonl.gz", "train.jsonl"),
                                        encoding="utf-8")
    prompts = [json.loads(line) for line in gzip.open(ROOT / "examples" / "data" / "llmrouter-prompts.jsonl.gz", "rt",
                                                      encoding="utf-8")]
    (root / "queries.jsonl").write_text("".join(
        json.dumps({"id": p["id"], "category": p["category"], "text": p["prompt"], "tags": [p["id"].split("/")[0]]})
        + "\n" for p in prompts), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def deployed(llmrouter_small):
    """Each router fitted directly on every query of the scenario's outcomes, as route runs it."""
    scenario = load_scenario(llmrouter_small / "scenario.yaml")
    outcomes = scenario_outcomes(scenario, seed=0)
    return {name: make_router(name, k=scenario.instance.top_k, seed=0).fit(outcomes) for name in ROUTERS}


@pytest.mark.parametrize("name", list(ROUTERS))
def test_route_sends_each_prompt_to_the_router_s_first_choice_in_s(run_cli, llmrouter_small, deployed, name, tmp_path):
    scenario = llmrouter_small / "scenario.yaml"
    # Without caps S holds every LLM some category or label prefers: there is a choice inside it.
    selected = run_cli("select", scenario, "--router", name, "--folds", "2", "--budget", "energy=none", "--budget",
                       "latency=none", "--format", "json", "--no-timing")
    assert selected.exit_code == 0, selected.output
    plan = json.loads(selected.stdout)
    assert plan["router"] == name and len(plan["selection"]) >= 2
    (tmp_path / "select.json").write_text(selected.stdout, encoding="utf-8")
    routed = run_cli("route", scenario, "--queries", llmrouter_small / "queries.jsonl", "--selection",
                     tmp_path / "select.json")
    assert routed.exit_code == 0, routed.stderr
    records = [json.loads(line) for line in routed.stdout.splitlines()]

    router, instance = deployed[name], load_scenario(scenario).instance
    queries = read_queries(llmrouter_small / "queries.jsonl", instance.categories)
    scores = router.logits(query_table(router, queries, "queries"))
    inside = np.isin(router.columns_, [llm for e, llm in zip(instance.expert_ids, instance.expert_llms)
                                        if e in plan["selection"]])
    scores = np.where(inside, scores, -np.inf)
    firsts = set()
    for record, row in zip(records, scores):
        first = record["experts"][0]
        assert first["expert"] in plan["selection"]
        # Equal scores are an equal choice: the first expert must be one of the best LLMs in S.
        best = {router.columns_[c] for c in np.flatnonzero(row == row.max())}
        assert first["expert"].split("/", 1)[1] in best, (record["id"], best)
        firsts.add(first["expert"])
    assert [r["id"] for r in records] == [q.id for q in queries]
    assert len(firsts) >= 2, "the prompts should not all go to one expert"
