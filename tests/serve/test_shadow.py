"""Shadow traffic (``moe2 serve --shadow-rate``): answered requests sent again, after the reply, to
the experts they did not call; the answers logged for scoring, bounded, never touching the
breakers or delaying a client, cancelled by the drain."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from moe2_cli.serve.breaker import BreakerSettings, State
from moe2_cli.serve.requestlog import LOG_NAME, RequestLog, RotatingFile
from moe2_cli.serve.shadow import Picker, Shadow, ShadowSettings, fleet
from moe2_cli.serve.upstream import targets_for
from tests.serve.conftest import EXPERTS, SERVERS, fake_experts, plan_for, running_proxy, running_server

ORIN = [f"orin-1/{llm}" for llm in SERVERS["orin-1"][1]]
RTX = [f"rtx-1/{llm}" for llm in SERVERS["rtx-1"][1]]


def wait_until(condition, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def lines(directory: Path) -> list[dict]:
    return [json.loads(line) for line in (directory / LOG_NAME).read_text().splitlines()]


def shadow_counts(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {line.split('"')[1]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line.startswith("moe2_shadow_requests_total{")}


def shadow_of(plan, directory: Path, fleet_: list[str], **settings):
    """A companion maker: shadow calls to the experts of ``fleet_``, logged with text in ``directory``."""
    plan.warm()  # the router's lazy imports, loaded before a request waits for them (as serve does)
    log = RequestLog(RotatingFile(directory, 1 << 20), with_text=True)
    targets = targets_for(plan.scenario, fleet_)
    return log, lambda proxy: Shadow(ShadowSettings(**{"rate": 1.0, **settings}), targets, plan.scenario, log)


def test_the_picker_draws_the_same_requests_for_a_seed_at_the_rate_asked():
    def draws(seed: int, rate: float, **settings) -> list[list[str]]:
        picker = Picker(ShadowSettings(rate=rate, seed=seed, **settings), EXPERTS)
        return [picker.pick(EXPERTS[:2]) for _ in range(2000)]

    first, again, other = draws(1, 0.25), draws(1, 0.25), draws(2, 0.25)
    assert first == again and first != other
    shadowed = [p for p in first if p]
    assert 400 < len(shadowed) < 600  # 500 expected; the band is over 4 standard deviations wide
    assert all(p == EXPERTS[2:] for p in shadowed)  # every expert not called, in the scenario's order
    some = [p for p in draws(3, 1.0, experts=2) if p]
    assert len(some) == 2000 and all(len(set(p)) == 2 and not set(p) & set(EXPERTS[:2]) for p in some)
    assert len({tuple(p) for p in some}) == 3  # every pair of the three is drawn
    assert not any(draws(4, 0.0))


def test_fleet_is_the_experts_whose_server_has_an_endpoint(base_plan):
    assert fleet(base_plan.scenario) == EXPERTS


def test_shadow_answers_are_logged_for_the_experts_the_request_did_not_call(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    with fake_experts() as (servers, urls):
        plan = plan_for(base_plan, tmp_path, urls, ORIN)
        log, make = shadow_of(plan, directory, EXPERTS)
        with running_proxy(plan, request_log=log, attach=[make]) as (url, proxy):
            client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="serve-test", messages=[{"role": "user", "content": "history empire"}],
                extra_body={"metadata": {"category": "mcq"}})
            called = raw.parse().model_extra["moe2"]["experts"]
            wait_until(lambda: shadow_counts(url).get("answered") == len(EXPERTS) - len(called))
            untouched = [e for e in ORIN if e not in called]
            assert all(proxy.states[e].calls == 0 and proxy.breaker.state(e) is State.CLOSED for e in untouched)
            metrics = httpx.get(url + "/metrics").text
    rid = raw.headers["x-request-id"]
    main, *shadows = lines(directory)
    assert main["id"] == rid and "shadow" not in main and main["experts"] == called
    assert sorted(s["answer_from"] for s in shadows) == sorted(set(EXPERTS) - set(called))
    for line in shadows:
        expert = line["answer_from"]
        assert line["shadow"] is True and line["shadow_of"] == rid and line["experts"] == [expert]
        assert line["answer"] == [expert.split("/", 1)[1]]  # each fake LLM answers with its own name
        assert line["status"] == 200 and line["category"] == "mcq" and line["error"] is None
        assert line["prompt"] == [{"role": "user", "content": "history empire"}]
        assert line["id"] == f"{rid}/shadow/{expert}"
    # The expert servers saw the shadow calls under the request's id; the route's counters did not.
    assert sum(len(s.calls) for s in servers.values()) == len(EXPERTS)
    assert {c.request_id for s in servers.values() for c in s.calls} == {rid}
    for expert in set(EXPERTS) - set(called):
        assert f'moe2_expert_calls_total{{expert="{expert}"}}' not in metrics


def test_a_failing_shadow_is_logged_and_touches_no_breaker(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    failing = "orin-1/qwen2.5-1.5b-instruct"
    with fake_experts({"orin-1": {"qwen2.5-1.5b-instruct": {"fail": "500"}}}) as (_, urls):
        plan = plan_for(base_plan, tmp_path, urls, ORIN)
        plan = replace(plan, k=1)  # one expert called: the other two of S are shadowed
        log, make = shadow_of(plan, directory, ORIN)
        with running_proxy(plan, request_log=log, attach=[make],
                           breaker_settings=BreakerSettings(failures=1)) as (url, proxy):
            reply = httpx.post(url + "/v1/chat/completions", json={
                "messages": [{"role": "user", "content": "history empire"}], "metadata": {"category": "mcq"}})
            assert reply.status_code == 200 and reply.json()["moe2"]["experts"] == ["orin-1/phi-3.5-mini-instruct"]
            wait_until(lambda: shadow_counts(url) == {"answered": 1, "failed": 1, "dropped": 0, "cancelled": 0})
            assert proxy.breaker.state(failing) is State.CLOSED and proxy.states[failing].failures == 0
            assert "moe2_expert_failures_total{" not in httpx.get(url + "/metrics").text
    failed = next(line for line in lines(directory) if line.get("experts") == [failing])
    assert failed["status"] == 502 and failed["answer"] is None and failed["answer_from"] is None
    assert "HTTP 500" in failed["error"]


def test_shadow_calls_never_delay_the_client_are_bounded_and_cancelled_by_the_drain(base_plan, tmp_path):
    directory = tmp_path / "log"
    directory.mkdir()
    gate = threading.Event()  # holds every reply of the rtx server's experts: the shadows
    held = {"rtx-1": {llm: {"gate": gate} for llm in SERVERS["rtx-1"][1]}}
    with fake_experts(held) as (servers, urls):
        try:
            plan = plan_for(base_plan, tmp_path, urls, ORIN)
            log, make = shadow_of(plan, directory, RTX, experts=1, concurrency=1)
            with running_server(plan, request_log=log, attach=[make]) as (url, server):
                ask = {"messages": [{"role": "user", "content": "history empire"}], "metadata": {"category": "mcq"}}
                first = httpx.post(url + "/v1/chat/completions", json=ask, timeout=10)
                assert first.status_code == 200
                assert servers["rtx-1"].wait_for_calls(1)  # the shadow is at its expert, held
                second = httpx.post(url + "/v1/chat/completions", json=ask, timeout=10)
                assert second.status_code == 200  # answered while the shadow slot is taken
                assert shadow_counts(url) == {"answered": 0, "failed": 0, "dropped": 1, "cancelled": 0}
                assert server.loop is not None
                server.loop.call_soon_threadsafe(server.proxy.draining)
                wait_until(lambda: shadow_counts(url)["cancelled"] == 1)
                third = httpx.post(url + "/v1/chat/completions", json=ask, timeout=10)
                assert third.status_code == 200
                assert shadow_counts(url) == {"answered": 0, "failed": 0, "dropped": 2, "cancelled": 1}
        finally:
            gate.set()  # the fake server's handler still waits: it must end before the server stops
    assert not any(line.get("shadow") for line in lines(directory))  # a cancelled call has no answer to log
    assert len(servers["rtx-1"].calls) == 1


def test_a_shadow_needs_a_log_that_keeps_text(base_plan, tmp_path):
    log = RequestLog(RotatingFile(tmp_path, 1 << 20), with_text=False)
    with pytest.raises(ValueError, match="text"):
        Shadow(ShadowSettings(rate=0.5), {}, base_plan.scenario, log)
    log.close()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ShadowSettings(rate=1.5)
