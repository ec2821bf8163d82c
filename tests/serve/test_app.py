"""The proxy on loopback against fake experts: agreement with `moe2 route`, fallback on
failures, streaming, errors that are never 500s, access control, metrics and budgets."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.serve.conftest import (
    EXPERTS,
    SERVERS,
    TOPICS,
    fake_experts,
    plan_for,
    running_proxy,
    write_scenario,
    write_selection,
)

CHAT = "/v1/chat/completions"


def ask(text: str, category: str = "mcq", **extra) -> dict:
    return {"model": "serve-test", "messages": [{"role": "user", "content": text}],
            "metadata": {"category": category}, **extra}


def called_experts(servers: dict[str, FakeOpenAI], prompt: str) -> set[str]:
    return {f"{name}/{call.model}" for name, server in servers.items() for call in server.calls
            if call.prompt == prompt}


def test_serve_calls_the_experts_route_prints(base_plan, tmp_path, run_cli):
    subset = [EXPERTS[0], EXPERTS[1], EXPERTS[3], EXPERTS[4]]  # both copies of qwen2.5-7b-instruct
    queries = [{"id": f"q{i}", "category": ("mcq", "math")[i % 2], "text": f"tell me {topic} please {i}",
                "tags": ["t"]} for i, topic in enumerate(list(TOPICS.values()) * 3)]
    query_file = tmp_path / "queries.jsonl"
    query_file.write_text("".join(json.dumps(q) + "\n" for q in queries))
    with fake_experts() as (servers, urls):
        scenario = write_scenario(tmp_path, urls)
        selection = write_selection(tmp_path, subset)
        result = run_cli("route", scenario, "--queries", query_file, "--selection", selection)
        assert result.exit_code == 0, result.stderr
        printed = {r["id"]: {e["expert"] for e in r["experts"]} for r in map(json.loads, result.stdout.splitlines())}
        plan = plan_for(base_plan, tmp_path, urls, subset)
        with running_proxy(plan) as (url, _), httpx.Client(base_url=url) as client:
            for q in queries:
                reply = client.post(CHAT, json=ask(q["text"], q["category"]))
                assert reply.status_code == 200, reply.text
                assert set(reply.headers["x-moe2-experts"].split(",")) == printed[q["id"]]
                assert called_experts(servers, q["text"]) == printed[q["id"]]
    assert len({frozenset(v) for v in printed.values()}) >= 2, "the queries should not all route alike"


def test_non_streaming_and_streaming_replies(base_plan, tmp_path):
    with fake_experts() as (servers, urls), running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, _):
        plain = httpx.post(url + CHAT, json=ask("poetry sonnet verses")).json()
        experts = plain["moe2"]["experts"]
        assert plain["object"] == "chat.completion" and plain["model"] == "serve-test"
        assert plain["choices"][0]["message"]["content"] == experts[0].split("/")[1]  # top: highest weight
        assert plain["moe2"]["answer_from"] == experts[0] and len(experts) == 2
        assert plain["usage"]["total_tokens"] > 0
        assert all(not call.stream for s in servers.values() for call in s.calls), "whole replies upstream"
        with httpx.stream("POST", url + CHAT, json=ask("poetry sonnet verses", stream=True,
                                                       stream_options={"include_usage": True})) as reply:
            assert reply.headers["content-type"].startswith("text/event-stream")
            assert reply.headers["x-moe2-experts"] == experts[0], "top streams the highest-weight expert alone"
            events = [line[len("data: "):] for line in reply.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == plain["choices"][0]["message"]["content"]
        assert chunks[-1]["usage"] == plain["usage"]
        assert {c["model"] for c in chunks} == {"serve-test"}
        streamed = [c for s in servers.values() for c in s.calls if c.stream]
        assert len(streamed) == 1 and streamed[0].model == experts[0].split("/")[1]


def test_a_down_server_hands_over_to_the_next_experts(base_plan, tmp_path):
    with fake_experts(down=("orin-1",)) as (servers, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, proxy):
        for topic in TOPICS.values():
            reply = httpx.post(url + CHAT, json=ask(f"about {topic}"))
            assert reply.status_code == 200, reply.text
            body = reply.json()["moe2"]
            assert all(e.startswith("rtx-1/") for e in body["experts"])
            assert all(f["expert"].startswith("orin-1/") and f["reason"].startswith("unreachable")
                       for f in body["failed"])
        health = httpx.get(url + "/readyz").json()
    assert health["status"] == "ready"
    assert {e: u["state"] for e, u in health["upstreams"].items()} == {
        e: "down" if e.startswith("orin-1/") else "up" for e in EXPERTS}


def test_a_slow_expert_times_out_and_the_next_one_answers(base_plan, tmp_path):
    hang = {llm: {"fail": "hang"} for llm in SERVERS["rtx-1"][1]}
    with fake_experts({"rtx-1": hang}) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls, timeout_s=1.0)) as (url, _):
        started = time.monotonic()
        reply = httpx.post(url + CHAT, json=ask("poetry sonnet"), timeout=30)  # gemma on rtx-1 ranks first
        elapsed = time.monotonic() - started
    body = reply.json()["moe2"]
    assert reply.status_code == 200
    assert "rtx-1/gemma-2-9b-it" in {f["expert"] for f in body["failed"]}
    assert all(e.startswith("orin-1/") for e in body["experts"]) and len(body["experts"]) == 2
    assert elapsed < 20, "the timeout, not the hang (an hour), decides"


def test_a_500_is_a_failure_and_when_nobody_answers_502(base_plan, tmp_path):
    broken = {name: {llm: {"fail": "500"} for llm in llms} for name, (_, llms) in SERVERS.items()}
    with fake_experts({"rtx-1": broken["rtx-1"]}) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, _):
        body = httpx.post(url + CHAT, json=ask("poetry sonnet")).json()["moe2"]
        assert {f["reason"] for f in body["failed"]} == {"HTTP 500"}
        assert body["experts"] and all(e.startswith("orin-1/") for e in body["experts"])
    with fake_experts(broken) as (servers, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), fallbacks=1) as (url, _):
        reply = httpx.post(url + CHAT, json=ask("poetry sonnet"))
    assert reply.status_code == 502
    error = reply.json()["error"]
    assert error["type"] == "upstream_error" and "no expert of the selection answered" in error["message"]
    assert "HTTP 500" in error["message"]
    assert sum(len(s.calls) for s in servers.values()) == 3, "top 2, then one fallback: bounded"


def test_client_errors_are_openai_style_and_never_500(base_plan, tmp_path):
    with fake_experts() as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), max_body=2000) as (url, _), \
            httpx.Client(base_url=url) as client:
        cases = {
            "malformed JSON": client.post(CHAT, content=b'{"messages": [',
                                          headers={"content-type": "application/json"}),
            "not an object": client.post(CHAT, json=[1, 2]),
            "no messages": client.post(CHAT, json={"model": "serve-test"}),
            "no user or system message": client.post(CHAT, json={"messages": [{"role": "assistant",
                                                                                 "content": "hi"}]}),
            "n of zero": client.post(CHAT, json=ask("x", n=0)),
            "stream not a boolean": client.post(CHAT, json=ask("x", stream="yes")),
            "a batch of prompts": client.post("/v1/completions", json={"prompt": ["a", "b"]}),
            "unknown category": client.post(CHAT, json=ask("x", "poetry")),
            "bad header category": client.post(CHAT, json={"messages": [{"role": "user", "content": "x"}]},
                                               headers={"X-Moe2-Category": "nope"}),
        }
        for what, reply in cases.items():
            assert reply.status_code == 400, what
            assert reply.json()["error"]["type"] == "invalid_request_error", what
        big = ask("x" * 3000)
        assert client.post(CHAT, json=big).status_code == 413
        chunked = client.post(CHAT, content=iter([json.dumps(big).encode()[:1500]] * 2))  # no Content-Length
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
        assert client.get("/v1/nowhere").status_code == 404
        assert client.get(CHAT).status_code == 405
        assert client.get("/v1/nowhere").json()["error"]["type"] == "invalid_request_error"
        assert client.post(CHAT, json={"messages": [{"role": "user", "content": "ok"}]},
                           headers={"X-Moe2-Category": "math"}).json()["moe2"]["category"] == "math"


def test_bearer_token_on_every_route_but_the_probes(base_plan, tmp_path):
    with fake_experts() as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), api_key="s3cret-token") as (url, _), \
            httpx.Client(base_url=url) as client:
        good = {"Authorization": "Bearer s3cret-token"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
            for method, path in (("POST", CHAT), ("GET", "/v1/models"), ("GET", "/metrics")):
                reply = client.request(method, path, json=ask("x"), headers=headers)
                assert reply.status_code == 401, (headers, path)
                assert reply.json()["error"]["code"] == "invalid_api_key"
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.post(CHAT, json=ask("history"), headers=good).status_code == 200
        models = client.get("/v1/models", headers=good).json()
        assert [m["id"] for m in models["data"]] == ["serve-test"]


def test_upstream_keys_are_sent_and_never_shown(base_plan, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_EXPERT_KEY", "upstream-secret-123")
    logged = []
    with fake_experts(api_key="upstream-secret-123") as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls, key_env="FAKE_EXPERT_KEY", latency_budget_s=0.001),
                          log=lambda event, **f: logged.append((event, f))) as (url, _):
        reply = httpx.post(url + CHAT, json=ask("history empire"))
        shown = reply.text + httpx.get(url + "/readyz").text + httpx.get(url + "/metrics").text + repr(logged)
    assert reply.status_code == 200 and not reply.json()["moe2"]["failed"]
    assert logged, "a budget overrun was logged"
    assert "upstream-secret-123" not in shown


def test_metrics_count_requests_calls_failures_energy_and_overruns(base_plan, tmp_path):
    logged = []
    broken = {"gemma-2-9b-it": {"fail": "500"}}
    with fake_experts({"rtx-1": broken}) as (servers, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls, latency_budget_s=0.001, energy_budget_j=1e9),
                          log=lambda event, **f: logged.append((event, f))) as (url, proxy):
        texts = [f"{topic} {i}" for i, topic in enumerate(list(TOPICS.values()) * 2)]
        for text in texts:
            assert httpx.post(url + CHAT, json=ask(text, "math")).status_code == 200
        metrics = httpx.get(url + "/metrics").text
    values = {}
    for line in metrics.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values['moe2_requests_total{category="math",status="200"}'] == len(texts)
    calls = {f"{n}/{c.model}": 0 for n, s in servers.items() for c in s.calls}
    for name, server in servers.items():
        for call in server.calls:
            calls[f"{name}/{call.model}"] += 1
    for expert, count in calls.items():
        assert values[f'moe2_expert_calls_total{{expert="{expert}"}}'] == count
    gemma_calls = calls.get("rtx-1/gemma-2-9b-it", 0)
    assert gemma_calls > 0
    assert values['moe2_expert_failures_total{expert="rtx-1/gemma-2-9b-it",kind="http"}'] == gemma_calls
    assert values['moe2_request_latency_seconds_count{category="math"}'] == len(texts)
    inst = base_plan.scenario.instance
    math = inst.categories.index("math")
    energy = sum(inst.energy_j[inst.expert_ids.index(e), math] * n for e, n in calls.items())
    assert values['moe2_estimated_energy_joules_total{category="math"}'] == pytest.approx(energy)
    assert values['moe2_budget_overruns_total{category="math",resource="latency"}'] == len(texts)
    assert 'resource="energy"' not in metrics.split("moe2_budget_overruns_total")[-1]
    assert [e for e, _ in logged] == ["budget_overrun"] * len(texts)
    assert logged[0][1]["resource"] == "latency" and logged[0][1]["budget"] == 0.001
