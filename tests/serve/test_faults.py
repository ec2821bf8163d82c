"""The proxy against experts that misbehave: dripping, oversized and deeply nested replies, dead
experts behind a circuit breaker, and deadlines that hold whatever the experts do."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from moe2_cli.serve.breaker import BreakerSettings
from moe2_cli.serve.queries import Query
from tests.serve.conftest import EXPERTS, SERVERS, fake_experts, plan_for, running_proxy

CHAT = "/v1/chat/completions"
RTX = SERVERS["rtx-1"][1]  # gemma on rtx-1 ranks first for poetry: a fault there is felt


@pytest.fixture(autouse=True)
def routed_once(base_plan):
    """The first route in a process loads the router's libraries (seconds on a busy machine):
    done here, so the timings below measure the deadlines alone."""
    base_plan.route([Query(id="warm", category="mcq", text="poetry sonnet")], source="request")


def ask(text: str = "poetry sonnet", **extra) -> dict:
    return {"model": "serve-test", "messages": [{"role": "user", "content": text}],
            "metadata": {"category": "mcq"}, **extra}


def rtx_fails(how: str, **options) -> dict:
    return {"rtx-1": {llm: {"fail": how, **options} for llm in RTX}}


def every_expert(how: str, **options) -> dict:
    return {name: {llm: {"fail": how, **options} for llm in llms} for name, (_, llms) in SERVERS.items()}


def timed_post(url: str, body: dict, **options) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    reply = httpx.post(url + CHAT, json=body, timeout=30, **options)
    return reply, time.monotonic() - started


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_dripping_expert_is_cut_at_its_timeout_and_the_next_one_answers(base_plan, tmp_path):
    with fake_experts(rtx_fails("drip", drip_s=0.05)) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls, timeout_s=0.5), deadline_s=5.0) as (url, _):
        reply, elapsed = timed_post(url, ask())
    body = reply.json()["moe2"]
    assert reply.status_code == 200, reply.text
    assert all(e.startswith("orin-1/") for e in body["experts"])
    assert {f["kind"] for f in body["failed"]} == {"timeout"}
    assert elapsed < 0.5 + 1, "the expert's limit holds although bytes keep coming"


def test_when_every_expert_drips_the_deadline_answers_504(base_plan, tmp_path):
    with fake_experts(every_expert("drip", drip_s=0.05)) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), deadline_s=1.0) as (url, _):
        reply, elapsed = timed_post(url, ask())
        streamed, stream_elapsed = timed_post(url, ask(stream=True))
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "deadline_exceeded"
    assert 1.0 <= elapsed < 1.0 + 1
    assert streamed.status_code == 504 and stream_elapsed < 1.0 + 1


def test_the_first_byte_limit_hands_over_to_the_next_expert_in_time(base_plan, tmp_path):
    with fake_experts(rtx_fails("hang")) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), deadline_s=10.0, ttft_s=0.3) as (url, _):
        reply, elapsed = timed_post(url, ask())
    assert reply.status_code == 200
    assert {f["kind"] for f in reply.json()["moe2"]["failed"]} == {"ttft_timeout"}
    assert elapsed < 0.3 + 1


def test_a_clients_own_timeout_shortens_the_deadline_and_opens_no_breaker(base_plan, tmp_path):
    settings = BreakerSettings(failures=1)
    with fake_experts(every_expert("hang")) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), deadline_s=30.0,
                          breaker_settings=settings) as (url, proxy):
        by_header, header_s = timed_post(url, ask(), headers={"X-Stainless-Read-Timeout": "0.4"})
        by_body, body_s = timed_post(url, ask(timeout=0.4))
        states = proxy.breaker.states()
    assert by_header.status_code == by_body.status_code == 504
    assert header_s < 0.4 + 1 and body_s < 0.4 + 1
    assert set(states.values()) == {0}, "running out of the client's patience is not the expert's failure"


def test_an_oversized_reply_is_cut_at_the_cap_and_the_next_expert_answers(base_plan, tmp_path):
    with fake_experts(rtx_fails("huge")) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), max_reply_bytes=256 << 10) as (url, _):
        reply, elapsed = timed_post(url, ask())
        streamed = httpx.post(url + CHAT, json=ask(stream=True), timeout=30)
    assert reply.status_code == 200
    assert {f["kind"] for f in reply.json()["moe2"]["failed"]} == {"too_large"}
    assert elapsed < 5, "the reply is abandoned at the cap, not read to its end (1 GiB)"
    events = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
    assert streamed.status_code == 200 and events[0]["moe2"]["answer_from"].startswith("orin-1/")
    assert {f["kind"] for f in events[0]["moe2"]["failed"]} == {"too_large"}


def test_a_deeply_nested_reply_is_a_failure_and_falls_back(base_plan, tmp_path):
    with fake_experts(rtx_fails("deep")) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, _):
        reply, _ = timed_post(url, ask())
        streamed = httpx.post(url + CHAT, json=ask(stream=True), timeout=30)
    assert reply.status_code == 200
    failed = reply.json()["moe2"]["failed"]
    assert {f["kind"] for f in failed} == {"malformed"} and "deeper" in failed[0]["reason"]
    assert streamed.status_code == 200 and "orin-1/" in streamed.headers["x-moe2-experts"]


def test_the_breaker_skips_a_dead_expert_until_one_probe_after_the_cooldown(base_plan, tmp_path):
    now = [0.0]
    settings = BreakerSettings(failures=2, cooldown_s=30.0)
    gemma = "rtx-1/gemma-2-9b-it"
    with fake_experts({"rtx-1": {"gemma-2-9b-it": {"fail": "hang"}}}) as (servers, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls, timeout_s=1.0), breaker_settings=settings,
                          clock=lambda: now[0]) as (url, proxy):
        waits = [timed_post(url, ask(f"poetry sonnet {i}"))[1] for i in range(2)]
        assert proxy.breaker.state(gemma) == 2
        skipped, _ = timed_post(url, ask("poetry sonnet 2"))
        calls = len([c for c in servers["rtx-1"].calls if c.model == "gemma-2-9b-it"])
        open_metrics = httpx.get(url + "/metrics").text
        now[0] += 30.0
        half_metrics = httpx.get(url + "/metrics").text
        timed_post(url, ask("poetry sonnet 3"))  # the probe: still dead, open again
        assert proxy.breaker.state(gemma) == 2
        now[0] += 30.0
        servers["rtx-1"].models["gemma-2-9b-it"].fail = None
        healed, _ = timed_post(url, ask("poetry sonnet 4"))
    assert all(w >= 1.0 for w in waits)
    # Not called at all (calls == 2 below), so not waited for: a count, where a clock would
    # depend on the machine's load.
    assert skipped.status_code == 200
    assert skipped.json()["moe2"]["skipped"] == [gemma]
    assert gemma not in skipped.json()["moe2"]["experts"] and calls == 2
    assert metric(open_metrics, f'moe2_expert_state{{expert="{gemma}"}}') == 2
    assert metric(half_metrics, f'moe2_expert_state{{expert="{gemma}"}}') == 1
    assert healed.json()["moe2"]["answer_from"] == gemma and proxy.breaker.state(gemma) == 0


def test_when_every_breaker_is_open_503_with_retry_after_and_not_ready(base_plan, tmp_path):
    now = [0.0]
    with fake_experts(every_expert("500")) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), fallbacks=len(EXPERTS),
                          breaker_settings=BreakerSettings(failures=1, cooldown_s=20.0),
                          clock=lambda: now[0]) as (url, proxy):
        statuses = []
        while 503 not in statuses and len(statuses) < len(EXPERTS):  # each 502 opens the experts it called
            resting = httpx.post(url + CHAT, json=ask())
            statuses.append(resting.status_code)
        health = httpx.get(url + "/readyz")
        now[0] += 20.0
        after = httpx.get(url + "/readyz")
        probed = httpx.post(url + CHAT, json=ask())
    assert statuses[-1] == 503 and set(statuses[:-1]) == {502}
    assert resting.headers["retry-after"] == "20" and resting.json()["error"]["code"] == "experts_resting"
    assert health.status_code == 503 and health.json()["status"] == "not_ready"
    assert "every expert's circuit breaker is open" in health.json()["reasons"]
    assert after.status_code == 200, "after the cooldown an expert may be probed: ready again"
    assert probed.status_code == 502 and 2 in proxy.breaker.states().values(), "probes that fail reopen"
