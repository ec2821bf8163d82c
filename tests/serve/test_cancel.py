"""At a request's deadline the proxy closes every expert call the request made, streamed or whole,
so a single-slot expert server stops generating and the next request is not queued behind an
answer nobody will read."""

from __future__ import annotations

import json
import socket
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from moe2_cli.serve.queries import Query
from tests.fakes.slot_server import SlotServer
from tests.serve.conftest import SERVERS, plan_for, running_proxy

CHAT = "/v1/chat/completions"
TOKEN_S = 0.25  # one token every quarter second: mcq's default 32 tokens take 8 s, four times the deadline
DEADLINE_S = 2.0
QWEN, GEMMA = "orin-1/qwen2.5-7b-instruct", "rtx-1/gemma-2-9b-it"


@pytest.fixture(autouse=True)
def routed_once(base_plan):
    """The first route in a process loads the router's libraries: done before any deadline runs."""
    base_plan.route([Query(id="warm", category="mcq", text="poetry sonnet")], source="request")


@contextmanager
def slot_experts(base_plan, tmp_path, experts: list[str], deadline_s: float = DEADLINE_S):
    """A single-slot server per scenario server and the proxy over ``experts`` in front of them;
    yields (proxy URL, servers by name)."""
    with ExitStack() as stack:
        servers = {name: stack.enter_context(SlotServer(llms, token_s=TOKEN_S)) for name, (_, llms) in SERVERS.items()}
        plan = plan_for(base_plan, tmp_path, {name: s.url for name, s in servers.items()}, experts, timeout_s=60.0)
        url, _ = stack.enter_context(running_proxy(plan, deadline_s=deadline_s, fallbacks=0))
        yield url, servers


def ask(**extra) -> dict:
    return {"model": "serve-test", "messages": [{"role": "user", "content": "poetry sonnet"}],
            "metadata": {"category": "mcq"}, **extra}


def post(url: str, body: dict) -> httpx.Response:
    """The reply, streamed or whole; a stream is read to its end (its status says how it began)."""
    with httpx.Client(timeout=60) as client, client.stream("POST", url + CHAT, json=body) as reply:
        reply.read()
        return reply


def cancelled(url: str) -> dict[tuple[str, str], float]:
    out = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("moe2_upstream_cancelled_total{"):
            labels, value = line[len("moe2_upstream_cancelled_total{"):].rsplit("} ", 1)
            fields = dict(part.split("=", 1) for part in labels.split(","))
            out[(fields["expert"].strip('"'), fields["reason"].strip('"'))] = float(value)
    return out


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_deadline_closes_the_experts_stream_and_frees_its_slot(base_plan, tmp_path, stream):
    with slot_experts(base_plan, tmp_path, [QWEN, GEMMA]) as (url, servers):
        first = post(url, ask(stream=stream))
        called = {name: s for name, s in servers.items() if s.calls}
        assert all(s.wait_for_cuts(1) for s in called.values()), "every expert called saw its client go"
        experts = {f"{name}/{s.calls[0].model}" for name, s in called.items()}
        second = post(url, ask(stream=stream, max_tokens=1))
        counted = cancelled(url)
    if stream:
        assert first.status_code == 200 and b"expert_failed" in first.content, "a stream begun ends in an error event"
    else:
        assert first.status_code == 504, first.text
        assert first.json()["error"]["code"] == "deadline_exceeded"
    # Only the top expert streams; a whole reply asks both of the top 2.
    assert len(called) == (1 if stream else 2)
    assert second.status_code == 200 and b"tok" in second.content, "the next request is not queued behind the first"
    assert all(s.cuts == 1 for s in called.values()) and sum(s.finished for s in servers.values()) >= 1
    assert counted == {(expert, "deadline"): 1.0 for expert in experts}


def test_a_client_that_leaves_mid_stream_closes_the_experts_stream(base_plan, tmp_path):
    # A deadline far past the wait below: only the client's leaving can end the generation.
    with slot_experts(base_plan, tmp_path, [GEMMA], deadline_s=600.0) as (url, servers):
        with httpx.Client(timeout=60) as client, client.stream("POST", url + CHAT, json=ask(stream=True)) as reply:
            assert reply.status_code == 200
            next(reply.iter_bytes())  # the stream has begun: the expert is generating
        assert servers["rtx-1"].wait_for_cuts(1), "the expert saw its client go"
        second = post(url, ask(max_tokens=1))
        counted = cancelled(url)
    assert second.status_code == 200
    assert counted == {(GEMMA, "abandoned"): 1.0}


def _metric(url: str, name: str) -> float:
    return next(float(line.rsplit(" ", 1)[1]) for line in httpx.get(url + "/metrics").text.splitlines()
                if line.startswith(name + " "))


def test_a_client_that_leaves_before_a_whole_reply_closes_the_experts_call(base_plan, tmp_path):
    # A deadline far past the wait below: only the client's leaving can end the generation.
    with slot_experts(base_plan, tmp_path, [GEMMA], deadline_s=600.0) as (url, servers):
        host, port = httpx.URL(url).host, httpx.URL(url).port
        body = json.dumps(ask()).encode()
        with socket.create_connection((host, port), timeout=30) as client:
            client.sendall(f"POST {CHAT} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            assert servers["rtx-1"].wait_for_calls(1), "the expert is generating"
        assert servers["rtx-1"].wait_for_cuts(1), "the expert saw the gateway go when its client went"
        second = post(url, ask(max_tokens=1))
        counted, gone = cancelled(url), _metric(url, "moe2_client_gone_total")
    assert second.status_code == 200
    assert counted == {(GEMMA, "abandoned"): 1.0} and gone == 1.0
