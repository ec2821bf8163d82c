"""The proxy clamps a request's token limit to its category's cap, and sets it when none is given."""

from __future__ import annotations

from dataclasses import replace

import httpx
import pytest

from tests.serve.conftest import fake_experts, plan_for, running_proxy

CHAT = "/v1/chat/completions"


def asked_upstream(base_plan, tmp_path, body: dict, endpoint: str = CHAT, **proxy_options) -> tuple[dict, dict]:
    """The body the experts received for ``body``, and the reply."""
    with fake_experts() as (servers, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), **proxy_options) as (url, _):
        reply = httpx.post(url + endpoint, json={"model": "serve-test", "metadata": {"category": "math"}, **body},
                           timeout=30)
        calls = [c for s in servers.values() for c in s.calls]
    assert reply.status_code == 200, reply.text
    assert calls and all(c.body == calls[0].body | {"model": c.body["model"]} for c in calls)
    return calls[0].body, reply.json()


MESSAGES = {"messages": [{"role": "user", "content": "algebra equation"}]}


@pytest.mark.parametrize(("given", "sent"), [
    ({}, {"max_tokens": 512}),
    ({"max_tokens": 4096}, {"max_tokens": 512}),
    ({"max_tokens": 7}, {"max_tokens": 7}),
    ({"max_completion_tokens": 9000}, {"max_completion_tokens": 512}),
    ({"max_tokens": 5, "max_completion_tokens": 9000}, {"max_tokens": 5, "max_completion_tokens": 512}),
], ids=["absent", "above", "below", "completion-field", "both"])
def test_a_chat_requests_limit_is_clamped_to_the_category_cap(base_plan, tmp_path, given, sent):
    body, _ = asked_upstream(base_plan, tmp_path, {**MESSAGES, **given})
    assert {k: body.get(k) for k in sent} == sent
    if "max_tokens" not in given and "max_tokens" not in sent:
        assert "max_tokens" not in body, "a client's own field is clamped; no second one is added"


def test_a_text_completion_is_capped_too(base_plan, tmp_path):
    body, _ = asked_upstream(base_plan, tmp_path, {"prompt": "algebra equation", "max_tokens": 10_000},
                             endpoint="/v1/completions")
    assert body["max_tokens"] == 512


def test_flags_and_the_scenario_set_the_cap_and_usage_stays_the_experts(base_plan, tmp_path):
    body, reply = asked_upstream(base_plan, tmp_path, {**MESSAGES, "max_tokens": 100}, max_tokens={"math": 3})
    assert body["max_tokens"] == 3
    # The fake answers with the expert's name, one word: it is within the cap and usage is its own.
    assert reply["usage"]["completion_tokens"] == 1 and reply["choices"][0]["finish_reason"] == "stop"
    capped, _ = asked_upstream(base_plan, tmp_path, {**MESSAGES, "max_tokens": 100}, max_tokens={None: 2})
    assert capped["max_tokens"] == 2


def test_the_scenarios_own_cap_is_served(base_plan, tmp_path):
    with fake_experts() as (servers, urls):
        plan = plan_for(base_plan, tmp_path, urls)
        with running_proxy(replace(plan, scenario=replace(plan.scenario, max_tokens={"math": 40}))) as (url, _):
            httpx.post(url + CHAT, json={"model": "serve-test", "metadata": {"category": "math"}, **MESSAGES},
                       timeout=30)
        assert {c.body["max_tokens"] for s in servers.values() for c in s.calls} == {40}
