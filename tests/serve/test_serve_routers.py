"""Every registered router, planned by `select`, runs in `serve`: the proxy calls the experts
`moe2 route` prints for the same selection file."""

from __future__ import annotations

import json

import httpx
import pytest

from moe2_cli.gating.registry import ROUTERS
from moe2_cli.serve.categories import CategoryPolicy
from moe2_cli.serve.plan import make_plan
from tests.serve.conftest import TOPICS, running_proxy, write_scenario
from tests.serve.test_app import CHAT, ask, called_experts, fake_experts


@pytest.mark.parametrize("name", list(ROUTERS))
def test_serve_calls_the_experts_route_prints_for_the_planned_router(run_cli, tmp_path, name):
    queries = [{"id": f"q{i}", "category": ("mcq", "math")[i % 2], "text": f"tell me {topic} please {i}"}
               for i, topic in enumerate(list(TOPICS.values()) * 2)]
    query_file = tmp_path / "queries.jsonl"
    query_file.write_text("".join(json.dumps(q) + "\n" for q in queries))
    with fake_experts() as (servers, urls):
        scenario = write_scenario(tmp_path, urls)
        selected = run_cli("select", scenario, "--router", name, "--folds", "2", "--format", "json", "--no-timing")
        assert selected.exit_code == 0, selected.output
        selection = tmp_path / "select.json"
        selection.write_text(selected.stdout)
        routed = run_cli("route", scenario, "--queries", query_file, "--selection", selection)
        assert routed.exit_code == 0, routed.stderr
        printed = {r["id"]: [e["expert"] for e in r["experts"]] for r in map(json.loads, routed.stdout.splitlines())}
        plan = make_plan(scenario, selection=selection)
        assert plan.router_name == plan.router.name == name
        # Every request names its category: no classifier is needed.
        with running_proxy(plan, category_policy=CategoryPolicy("require")) as (url, _), \
                httpx.Client(base_url=url) as client:
            for q in queries:
                reply = client.post(CHAT, json=ask(q["text"], q["category"]))
                assert reply.status_code == 200, reply.text
                assert reply.headers["x-moe2-experts"].split(",") == printed[q["id"]]
                assert reply.json()["moe2"]["experts"] == printed[q["id"]]
                assert called_experts(servers, q["text"]) == set(printed[q["id"]])
