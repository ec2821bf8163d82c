"""Reloading the plan while serving: a change of the selection file (or a reload asked for, as
SIGHUP does) builds the plan the way start-up does and swaps it in between requests; a request
routed already finishes on the old plan; a bad file leaves the old plan serving."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from moe2_cli.serve.planning import PlanRecipe, plan_hash
from moe2_cli.serve.reload import Reloader
from tests.serve.conftest import SERVERS, fake_experts, running_server, write_scenario, write_selection

ORIN = [f"orin-1/{llm}" for llm in SERVERS["orin-1"][1]]
RTX = [f"rtx-1/{llm}" for llm in SERVERS["rtx-1"][1]]
ASK = {"messages": [{"role": "user", "content": "history empire"}], "metadata": {"category": "mcq"}}


def wait_until(condition, limit_s: float = 30.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def metric_lines(url: str, name: str) -> list[str]:
    return [line for line in httpx.get(url + "/metrics").text.splitlines() if line.startswith(name)]


def reloads(url: str) -> dict[str, float]:
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in metric_lines(url, "moe2_plan_reloads_total{")}


def experts_of(url: str) -> list[str]:
    reply = httpx.post(url + "/v1/chat/completions", json=ASK, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["moe2"]["experts"]


def replace_file(path: Path, text: str) -> None:
    """Write ``path`` as an operator should: another file moved over it, so no reader sees it half-written."""
    part = path.with_suffix(".part")
    part.write_text(text)
    os.replace(part, path)


def select(directory: Path, experts: list[str]) -> None:
    """The selection file of ``experts`` in ``directory``, replaced at once."""
    staging = directory / "staging"
    staging.mkdir(exist_ok=True)
    os.replace(write_selection(staging, experts), directory / "select.json")


def serving(tmp_path: Path, urls: dict[str, str], experts: list[str]):
    """The recipe serve would follow for a scenario at ``urls`` and a selection file of
    ``experts``, and the plan it builds."""
    recipe = PlanRecipe(write_scenario(tmp_path, urls), selection=write_selection(tmp_path, experts))
    return recipe, recipe.build()


def reloader(recipe: PlanRecipe, events: list):
    def make(proxy):
        proxy.log = lambda event, **fields: events.append({"event": event, **fields})
        return Reloader(proxy, recipe.build, watched=recipe.selection, poll_s=0.02)
    return make


def test_a_new_selection_file_is_served_from_the_next_request_on(base_plan, tmp_path):
    events: list[dict] = []
    with fake_experts() as (_, urls):
        recipe, built = serving(tmp_path, urls, ORIN)
        with running_server(built.plan, category_policy=built.plan.category_policy,
                            attach=[reloader(recipe, events)]) as (url, server):
            first_hash = plan_hash(server.proxy.plan)
            assert set(experts_of(url)) <= set(ORIN)
            assert metric_lines(url, "moe2_plan_info{") == [
                f'moe2_plan_info{{hash="{first_hash}",selection="{",".join(ORIN)}"}} 1']
            loaded_before = float(metric_lines(url, "moe2_plan_loaded_timestamp_seconds")[0].rsplit(" ", 1)[1])
            select(tmp_path, RTX)
            wait_until(lambda: reloads(url) == {"applied": 1, "failed": 0})
            assert set(experts_of(url)) <= set(RTX)
            ready = httpx.get(url + "/readyz").json()
            assert ready["selection"] == RTX and set(ready["upstreams"]) == set(RTX)
            new_hash = plan_hash(server.proxy.plan)
            assert new_hash != first_hash
            assert metric_lines(url, "moe2_plan_info{") == [
                f'moe2_plan_info{{hash="{new_hash}",selection="{",".join(RTX)}"}} 1']
            assert float(metric_lines(url, "moe2_plan_loaded_timestamp_seconds")[0].rsplit(" ", 1)[1]) > loaded_before
            assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "serve-test"  # the model keeps its name
    [event] = events
    assert event["event"] == "plan_reloaded" and event["trigger"] == "file" and event["selection"] == RTX
    assert (event["hash"], event["previous"]) == (new_hash, first_hash)


def test_a_bad_selection_file_leaves_the_old_plan_serving(base_plan, tmp_path):
    events: list[dict] = []
    with fake_experts() as (_, urls):
        recipe, built = serving(tmp_path, urls, ORIN)
        with running_server(built.plan, category_policy=built.plan.category_policy,
                            attach=[reloader(recipe, events)]) as (url, server):
            assert recipe.selection is not None
            replace_file(recipe.selection, "{not json")
            wait_until(lambda: reloads(url) == {"applied": 0, "failed": 1})
            assert set(experts_of(url)) <= set(ORIN)
            replace_file(recipe.selection, json.dumps({"schema": "moe2.select/1", "scenario": "serve-test",
                                                    "selection": ["orin-1/no-such-llm"], "top_k": 1}))
            wait_until(lambda: reloads(url) == {"applied": 0, "failed": 2})
            select(tmp_path, RTX)
            wait_until(lambda: reloads(url) == {"applied": 1, "failed": 2})
            assert set(experts_of(url)) <= set(RTX)
    assert [e["event"] for e in events] == ["plan_reload_failed", "plan_reload_failed", "plan_reloaded"]
    assert "invalid JSON" in events[0]["error"] and "not an expert of 'serve-test'" in events[1]["error"]
    assert events[0]["serving"] == plan_hash(built.plan)


def test_a_changed_scenario_is_not_swapped_in(base_plan, tmp_path):
    events: list[dict] = []
    with fake_experts() as (_, urls):
        recipe, built = serving(tmp_path, urls, ORIN)
        with running_server(built.plan, category_policy=built.plan.category_policy,
                            attach=[reloader(recipe, events)]) as (url, server):
            assert recipe.scenario is not None
            scenario = json.loads(recipe.scenario.read_text())
            scenario["servers"][1]["llms"].append("phi-3.5-mini-instruct")  # one more expert
            replace_file(recipe.scenario, json.dumps(scenario))
            assert server.loop is not None
            server.loop.call_soon_threadsafe(server.proxy.companions[0].request, "sighup")
            wait_until(lambda: reloads(url) == {"applied": 0, "failed": 1})
            assert set(experts_of(url)) <= set(ORIN)
    assert "categories or experts changed since the server started" in events[0]["error"]
    assert events[0]["trigger"] == "sighup"


def test_a_request_routed_before_the_swap_finishes_on_the_old_plan(base_plan, tmp_path):
    gate = threading.Event()  # holds the orin experts' replies: the old plan's
    held = {"orin-1": {llm: {"gate": gate} for llm in SERVERS["orin-1"][1]}}
    events: list[dict] = []
    with fake_experts(held) as (servers, urls), ThreadPoolExecutor(1) as pool:
        try:
            recipe, built = serving(tmp_path, urls, ORIN)
            with running_server(built.plan, category_policy=built.plan.category_policy,
                                attach=[reloader(recipe, events)]) as (url, _):
                early = pool.submit(experts_of, url)
                assert servers["orin-1"].wait_for_calls(2)  # routed, and held at the old plan's experts
                select(tmp_path, RTX)
                wait_until(lambda: reloads(url)["applied"] == 1)
                assert set(experts_of(url)) <= set(RTX)  # a new request takes the new plan at once
                assert not early.done()
                gate.set()
                assert set(early.result(timeout=30)) <= set(ORIN)
        finally:
            gate.set()
