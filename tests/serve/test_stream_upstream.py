"""An endpoint's ``stream_upstream``: a whole reply asked of the expert as a stream and rebuilt,
so that a server which notices its client gone only between streamed chunks (llama-cpp-python's)
stops at the deadline; the rebuilt reply is the one the expert would have sent whole."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from openai import OpenAI
from starlette.responses import StreamingResponse

from tests.fakes import openai_replies as replies
from tests.fakes.slot_server import Event, SlotServer
from tests.serve.conftest import SERVERS, fake_experts, plan_for, running_proxy
from tests.serve.test_cancel import DEADLINE_S, GEMMA, TOKEN_S, ask, cancelled, post

LONG = 16  # tokens of the first request: at TOKEN_S each, twice the deadline
MODEL = "serve-test"
POETRY = [{"role": "user", "content": "poetry sonnet"}]  # gemma-2-9b-it on rtx-1 ranks first
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
SENTENCE = "the quick brown fox jumps over the lazy dog"


@pytest.mark.parametrize("stream_upstream", [False, True], ids=["whole", "stream_upstream"])
def test_the_next_request_waits_behind_an_abandoned_whole_reply_unless_it_is_streamed(base_plan, tmp_path,
                                                                                     stream_upstream):
    with ExitStack() as stack:
        servers = {name: stack.enter_context(SlotServer(llms, token_s=TOKEN_S, whole_notices=False))
                   for name, (_, llms) in SERVERS.items()}
        plan = plan_for(base_plan, tmp_path, {name: s.url for name, s in servers.items()}, [GEMMA], timeout_s=60.0,
                        endpoint_keys={"stream_upstream": stream_upstream})
        url, _ = stack.enter_context(running_proxy(plan, deadline_s=DEADLINE_S, fallbacks=0))
        first = post(url, ask(max_tokens=LONG))
        second = post(url, ask(max_tokens=1))
        expert = servers["rtx-1"]
        assert expert.wait_for_ends(2), "both generations let the slot go"
        counted = cancelled(url)
    assert first.status_code == 504 and first.json()["error"]["code"] == "deadline_exceeded"
    one, two = (call.request_id for call in expert.calls)
    assert all(call.stream is stream_upstream for call in expert.calls)
    if not stream_upstream:
        # Its client gone at the deadline, the first generation ran to its last token, and only
        # then did the second begin.
        assert expert.events == [Event("began", one), Event("finished", one, LONG),
                                 Event("began", two), Event("finished", two, 1)]
        return
    assert expert.calls[0].body["stream_options"] == {"include_usage": True}
    began, ended, *rest = expert.events
    assert began == Event("began", one) and ended.what == "cut" and ended.tokens < LONG, expert.events
    assert rest == [Event("began", two), Event("finished", two, 1)]
    assert second.status_code == 200 and second.json()["choices"][0]["message"]["content"] == "tok"
    assert counted == {(GEMMA, "deadline"): 1.0}


@pytest.fixture
def both(base_plan, tmp_path):
    """Two proxies over fake experts answering SENTENCE, one asking them for whole replies and
    one with ``stream_upstream``; yields (SDK client without, SDK client with, fakes with)."""
    behaviour = {name: dict.fromkeys(llms, {"answer": SENTENCE}) for name, (_, llms) in SERVERS.items()}
    with ExitStack() as stack:
        clients, fakes = [], []
        for stream in (False, True):
            servers, urls = stack.enter_context(fake_experts(behaviour))
            directory = tmp_path / ("streamed" if stream else "whole")
            directory.mkdir()
            plan = plan_for(base_plan, directory, urls, endpoint_keys={"stream_upstream": stream})
            url, _ = stack.enter_context(running_proxy(plan))
            clients.append(sdk(url))
            fakes.append(servers)
        yield clients[0], clients[1], fakes[1]


def sdk(url: str) -> OpenAI:
    return OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=20)


@pytest.mark.parametrize("options", [{"max_tokens": 3, "n": 2, "logprobs": True}, {"tools": TOOLS}, {}],
                         ids=["cut-n-logprobs", "tool-call", "plain"])
def test_a_rebuilt_chat_reply_is_the_whole_reply(both, options):
    whole_client, rebuilt_client, fakes = both
    whole = whole_client.chat.completions.create(model=MODEL, messages=POETRY, **options)
    rebuilt = rebuilt_client.chat.completions.create(model=MODEL, messages=POETRY, **options)
    assert [c.model_dump() for c in rebuilt.choices] == [c.model_dump() for c in whole.choices]
    assert rebuilt.usage == whole.usage and rebuilt.usage.completion_tokens > 0
    assert rebuilt.object == "chat.completion" and rebuilt.model == MODEL
    calls = [call for fake in fakes.values() for call in fake.calls]
    assert calls and all(call.stream for call in calls), "every expert was asked for a stream"


def test_a_rebuilt_text_completion_is_the_whole_reply(both):
    whole_client, rebuilt_client, fakes = both
    whole = whole_client.completions.create(model=MODEL, prompt="poetry sonnet", max_tokens=4)
    rebuilt = rebuilt_client.completions.create(model=MODEL, prompt="poetry sonnet", max_tokens=4)
    assert rebuilt.object == "text_completion"
    assert [(c.index, c.text, c.finish_reason) for c in rebuilt.choices] == \
        [(c.index, c.text, c.finish_reason) for c in whole.choices] == [(0, "the quick brown fox", "length")]
    assert rebuilt.usage == whole.usage
    assert all(call.stream for fake in fakes.values() for call in fake.calls)


def stream_without_usage(body: dict) -> StreamingResponse:
    """A stream as llama-cpp-python sends it: no token counts, whatever ``stream_options`` asks."""
    planned = replies.plan(body, body["model"], "", SENTENCE, uses_tools=False)
    lines = [*replies.opening(planned), *(line for step in replies.pieces(planned) for line in step),
             *replies.closing(planned, include_usage=False)]
    return StreamingResponse(iter(lines), media_type="text/event-stream")


def test_a_stream_without_token_counts_gives_a_reply_without_usage(base_plan, tmp_path):
    behaviour = {name: dict.fromkeys(llms, {"reply_with": stream_without_usage}) for name, (_, llms) in SERVERS.items()}
    with fake_experts(behaviour) as (_, urls), \
            running_proxy(plan_for(base_plan, tmp_path, urls, endpoint_keys={"stream_upstream": True})) as (url, _):
        reply = sdk(url).chat.completions.create(model=MODEL, messages=POETRY)
    assert reply.choices[0].message.content == SENTENCE and reply.choices[0].finish_reason == "stop"
    assert reply.usage is None
