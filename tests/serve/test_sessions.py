"""Stickiness: a conversation's later turns go to the expert that answered it while that expert
is in S and healthy, the override is reported and counted, and the memory is bounded."""

from __future__ import annotations

import httpx

from moe2_cli.serve.queries import Query
from moe2_cli.serve.routing import Pick, Route
from moe2_cli.serve.sessions import Sessions, steer
from tests.serve.conftest import fake_experts, plan_for, running_proxy

CHAT = "/v1/chat/completions"
POETRY, ALGEBRA = "write a poetry sonnet", "solve the algebra equation"  # gemma, then qwen2.5-7b ranks first


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _pick(expert: str, index: int, weight: float) -> Pick:
    return Pick(expert=expert, index=index, column=index, score=-index, weight=weight)


def test_steer_sends_the_turn_to_the_session_s_expert_alone_with_the_rest_as_fallbacks():
    route = Route(Query("q", "math", "t"), chosen=(_pick("a", 0, 0.7), _pick("b", 1, 0.3)),
                  fallbacks=(_pick("c", 2, 0.0),))
    steered, stuck = steer(route, "c")
    assert [p.expert for p in steered.chosen] == ["c"] and steered.chosen[0].weight == 1.0
    assert [p.expert for p in steered.fallbacks] == ["a", "b"] and all(p.weight == 0 for p in steered.fallbacks)
    assert stuck.overrode
    assert not steer(route, "a")[1].overrode, "the router's first choice anyway"
    assert steer(route, "gone") is None, "an expert no longer in S is not kept"


def test_sessions_are_least_recently_used_first_out_and_expire():
    clock = Clock()
    sessions = Sessions(capacity=2, ttl_s=10, clock=clock)
    sessions.remember("one", "a")
    sessions.remember("two", "b")
    assert sessions.expert("one") == "a"
    sessions.remember("one", "a")  # used again: "two" is now the least recent
    sessions.remember("three", "c")
    assert len(sessions) == 2 and sessions.expert("two") is None and sessions.expert("three") == "c"
    clock.now = 10.5
    assert sessions.expert("one") is None, "unused for longer than the TTL"
    sessions.remember("four", "d")
    assert len(sessions) == 1, "expired sessions are dropped as new ones come"
    sessions.remember("x" * 100_000, "e")
    assert sessions.expert("x" * 100_000) == "e"


def test_later_turns_stay_with_the_first_expert_and_the_override_is_counted(base_plan, tmp_path):
    with fake_experts() as (servers, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls), sessions=Sessions()) as (url, _), \
            httpx.Client(base_url=url) as client:

        def turn(text: str, **options) -> dict:
            reply = client.post(CHAT, json={"messages": [{"role": "user", "content": text}],
                                            "metadata": {"category": "mcq"}, **options.pop("body", {})}, **options)
            assert reply.status_code == 200, reply.text
            return reply.json()["moe2"]

        assert turn(ALGEBRA)["answer_from"] == "orin-1/qwen2.5-7b-instruct", "the router's choice, unsessioned"
        first = turn(POETRY, headers={"X-Moe2-Session": "chat-1"})
        assert first["answer_from"] == "rtx-1/gemma-2-9b-it" and first["sticky"] is None
        later = turn(ALGEBRA, headers={"X-Moe2-Session": "chat-1"})
        assert later["experts"] == ["rtx-1/gemma-2-9b-it"]
        assert later["sticky"] == {"expert": "rtx-1/gemma-2-9b-it", "overrode_router": True}
        by_user = turn(POETRY, body={"user": "alice"})
        assert turn(ALGEBRA, body={"user": "alice"})["answer_from"] == by_user["answer_from"], "'user' names one too"
        again = turn(POETRY, headers={"X-Moe2-Session": "chat-1"})
        assert again["sticky"] == {"expert": "rtx-1/gemma-2-9b-it", "overrode_router": False}
        assert turn(POETRY, headers={"X-Moe2-Session": "chat-2"})["answer_from"] == "rtx-1/gemma-2-9b-it"
        servers["rtx-1"].models["gemma-2-9b-it"].fail = "500"
        failed = turn(POETRY, headers={"X-Moe2-Session": "chat-1"})
        assert failed["sticky"]["expert"] == "rtx-1/gemma-2-9b-it" and failed["failed"][0]["kind"] == "http"
        assert failed["answer_from"] != "rtx-1/gemma-2-9b-it", "a fallback answered"
        took_over = turn(POETRY, headers={"X-Moe2-Session": "chat-1"})
        assert took_over["sticky"] == {"expert": failed["answer_from"], "overrode_router": True}, \
            "the expert that took over keeps the conversation"
        assert turn(POETRY, headers={"X-Moe2-Session": "chat-2"})["sticky"] is None, \
            "an expert that failed its last call is not held to: the router decides"
        metrics = client.get("/metrics").text
    assert 'moe2_sticky_turns_total{outcome="overrode"} 3' in metrics
    assert 'moe2_sticky_turns_total{outcome="agreed"} 2' in metrics
