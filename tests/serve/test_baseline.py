"""Savings against a named baseline (``moe2 serve --baseline``): each answered request's profile
cost against the baseline expert alone, in the request log and in /metrics."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from moe2_cli import api
from moe2_cli.errors import UsageError
from moe2_cli.serve.baseline import BEST_SINGLE, Savings, resolve_baseline
from moe2_cli.serve.plan import choose
from moe2_cli.serve.requestlog import RequestLog, RotatingFile
from tests.serve.conftest import EXPERTS, fake_experts, plan_for, running_proxy, write_scenario, write_selection
from tests.serve.test_categories import metric_values
from tests.serve.test_requestlog import every_llm, lines

BASELINE = "rtx-1/gemma-2-9b-it"


def profile_cost(plan, experts: list[str], category: str) -> tuple[float, float]:
    """Energy and latency of ``experts`` all running, by the model of the design notes: servers in
    parallel, one server's experts one after another, then aggregation."""
    inst = plan.scenario.instance
    c = inst.categories.index(category)
    index = [inst.expert_ids.index(e) for e in experts]
    per_server: dict[int, float] = {}
    for i in index:
        server = int(inst.expert_server[i])
        per_server[server] = per_server.get(server, float(inst.transmission_s[server])) + float(inst.latency_s[i, c])
    return sum(float(inst.energy_j[i, c]) for i in index), max(per_server.values()) + inst.aggregation_s


def test_answered_requests_are_logged_and_counted_against_the_baseline(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    with fake_experts() as (_, urls):
        plan = plan_for(base_plan, tmp_path, urls)
        baseline = resolve_baseline(BASELINE, plan)
        log = RequestLog(RotatingFile(directory, 1 << 20))
        with running_proxy(plan, request_log=log, savings=Savings(plan.scenario.instance, baseline)) as (url, _):
            client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            for i, category in enumerate(["mcq", "mcq", "math", "mcq", "math"]):
                client.chat.completions.create(model="serve-test", metadata={"category": category},
                                               messages=[{"role": "user", "content": f"history empire {i}"}])
            stream = client.chat.completions.create(model="serve-test", stream=True, metadata={"category": "math"},
                                                    messages=[{"role": "user", "content": "algebra equation"}])
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            metrics = metric_values(url)
    logged = lines(directory)
    assert len(logged) == 6 and all(line["status"] == 200 for line in logged)
    for line in logged:
        base_j, base_s = profile_cost(plan, [BASELINE], line["category"])
        route_j, route_s = profile_cost(plan, line["experts"], line["category"])
        assert line["baseline"] == {"expert": BASELINE, "energy_j": pytest.approx(base_j, abs=1e-6),
                                    "latency_s": pytest.approx(base_s, abs=1e-6)}
        assert line["estimated_j"] == pytest.approx(route_j) and line["estimated_latency_s"] == pytest.approx(route_s)
        assert line["saved_j"] == pytest.approx(base_j - route_j, abs=1e-5)
        assert line["saved_s"] == pytest.approx(base_s - route_s, abs=1e-5)
        assert 0 < line["upstream_s"] <= line["latency_s"]
    assert any(len(line["experts"]) == 2 for line in logged), "top-2 routes cost more than one expert"
    for category in ("mcq", "math"):
        mine = [line for line in logged if line["category"] == category]
        labels = f'{{category="{category}",baseline="{BASELINE}"}}'
        assert metrics["moe2_saved_energy_joules" + labels] == pytest.approx(sum(x["saved_j"] for x in mine), abs=1e-4)
        assert metrics["moe2_saved_seconds" + labels] == pytest.approx(sum(x["saved_s"] for x in mine), abs=1e-4)
        assert metrics["moe2_baseline_energy_joules_total" + labels] == pytest.approx(
            sum(x["baseline"]["energy_j"] for x in mine))
        assert metrics["moe2_baseline_latency_seconds_total" + labels] == pytest.approx(
            sum(x["baseline"]["latency_s"] for x in mine))
        assert metrics[f'moe2_router_overhead_seconds_count{{category="{category}"}}'] == len(mine)


def test_a_request_without_an_answer_is_logged_with_its_baseline_and_saves_nothing(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    with fake_experts(every_llm("500")) as (_, urls):
        plan = plan_for(base_plan, tmp_path, urls)
        savings = Savings(plan.scenario.instance, resolve_baseline(BASELINE, plan))
        with running_proxy(plan, request_log=RequestLog(RotatingFile(directory, 1 << 20)), savings=savings) as (
                url, _):
            reply = httpx.post(url + "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "poetry sonnet"}], "metadata": {"category": "mcq"}})
            assert reply.status_code == 502, reply.text
            metrics = metric_values(url)
    (line,) = lines(directory)
    assert line["baseline"]["expert"] == BASELINE and line["saved_j"] is None and line["saved_s"] is None
    assert line["estimated_latency_s"] is not None, "the experts called are still costed"
    assert not [name for name in metrics if name.startswith(("moe2_saved_", "moe2_baseline_"))]
    assert metrics['moe2_router_overhead_seconds_count{category="mcq"}'] == 1


def test_an_unknown_baseline_names_the_choices(base_plan, tmp_path):
    with pytest.raises(UsageError, match=r"must be best-single or an expert of 'serve-test': orin-1/"):
        resolve_baseline("orin-1/llama", base_plan)


def test_best_single_is_the_expert_select_names(tmp_path):
    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"})
    named = api.select(scenario)["gain_over_best_single"]["expert"]
    assert resolve_baseline(BEST_SINGLE, choose(scenario)).expert == named
    # A saved selection's own best single expert (planned under its budgets) is the one taken.
    selection = write_selection(tmp_path, EXPERTS)
    other = next(e for e in EXPERTS if e != named)
    selection.write_text(json.dumps({**json.loads(selection.read_text()), "gain_over_best_single": {"expert": other}}))
    assert resolve_baseline(BEST_SINGLE, choose(scenario, selection=selection), selection=selection).expert == other
