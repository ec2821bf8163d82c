"""`moe2 serve` as the openai SDK sees it, against loopback fake experts: each behaviour a client
of OpenAI relies on, one test each (tool calls, finish reasons, n, client errors, usage,
logprobs, streams, the endpoints, model names, request ids and the small courtesies)."""

from __future__ import annotations

import threading
from contextlib import ExitStack

import httpx
import openai
import pytest
from openai import OpenAI

from tests.serve.conftest import SERVERS, fake_experts, plan_for, running_proxy

KEY = "conformance-key"
MODEL = "serve-test"
POETRY = [{"role": "user", "content": "poetry sonnet"}]  # gemma-2-9b-it on rtx-1 ranks first
TOOLS = [{"type": "function", "function": {"name": "lookup", "description": "Look a word up.",
                                           "parameters": {"type": "object", "properties": {"query": {
                                               "type": "string"}}}}}]
SENTENCE = "the quick brown fox jumps over the lazy dog"


def everywhere(**behaviour) -> dict[str, dict]:
    return {name: dict.fromkeys(llms, behaviour) for name, (_, llms) in SERVERS.items()}


def only(llm: str, **behaviour) -> dict[str, dict]:
    return {name: {llm: behaviour} for name, (_, llms) in SERVERS.items() if llm in llms}


def sdk(url: str, **options) -> OpenAI:
    # No retries: a retried request would hide what the first answer was.
    return OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=20, **options)


@pytest.fixture
def serving(base_plan, tmp_path):
    """Start fake experts with the given behaviour and the proxy in front of them; yields
    (SDK client, proxy URL, fake servers, proxy)."""
    with ExitStack() as stack:

        def start(behaviour=None, **proxy_options):
            servers, urls = stack.enter_context(fake_experts(behaviour))
            url, proxy = stack.enter_context(running_proxy(plan_for(base_plan, tmp_path, urls), api_key=KEY,
                                                           **proxy_options))
            return sdk(url), url, servers, proxy

        yield start


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")]
    return sum(values) if values else 0.0


def test_tool_calls_come_back_as_tool_calls(serving):
    client, *_ = serving()
    reply = client.chat.completions.create(model=MODEL, messages=POETRY, tools=TOOLS)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert call.function.name == "lookup" and '"poetry sonnet"' in call.function.arguments


def test_vote_with_a_tool_call_and_texts_returns_top_and_says_so(serving):
    client, *_ = serving({**everywhere(uses_tools=False), **only("gemma-2-9b-it", uses_tools=True)},
                         aggregate="vote")
    reply = client.chat.completions.create(model=MODEL, messages=POETRY, tools=TOOLS)
    assert reply.choices[0].finish_reason == "tool_calls"
    moe2 = reply.model_extra["moe2"]
    assert moe2["answer_from"] == "rtx-1/gemma-2-9b-it" and moe2["aggregate"] == "top"
    assert "only text answers are voted on" in moe2["note"]


def test_an_answer_cut_by_max_tokens_says_length(serving):
    client, *_ = serving(everywhere(answer=SENTENCE))
    cut = client.chat.completions.create(model=MODEL, messages=POETRY, max_tokens=3)
    assert cut.choices[0].finish_reason == "length" and cut.choices[0].message.content == "the quick brown"
    whole = client.chat.completions.create(model=MODEL, messages=POETRY)
    assert whole.choices[0].finish_reason == "stop" and whole.choices[0].message.content == SENTENCE


def test_n_choices_are_all_returned_or_the_expert_is_passed_over(serving):
    client, _, servers, _ = serving(only("gemma-2-9b-it", ignores_n=True))
    reply = client.chat.completions.create(model=MODEL, messages=POETRY, n=3)
    assert [c.index for c in reply.choices] == [0, 1, 2]
    moe2 = reply.model_extra["moe2"]
    assert "rtx-1/gemma-2-9b-it" not in moe2["experts"]
    assert any(f["expert"] == "rtx-1/gemma-2-9b-it" and "n=3" in f["reason"] for f in moe2["failed"])
    with pytest.raises(openai.BadRequestError, match="'n' must be an integer"):
        client.chat.completions.create(model=MODEL, messages=POETRY, n=0)


def test_n_is_never_silently_fewer(serving):
    client, *_ = serving(everywhere(ignores_n=True))
    with pytest.raises(openai.InternalServerError, match="n=2 were asked for"):
        client.chat.completions.create(model=MODEL, messages=POETRY, n=2)


def test_a_client_mistake_comes_back_as_it_is_without_fallback(serving):
    client, url, servers, _ = serving()
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model=MODEL, messages=POETRY, temperature=5)
    assert raised.value.status_code == 400 and raised.value.param == "temperature"
    assert "Expected a value <= 2" in raised.value.message
    assert sum(len(s.calls) for s in servers.values()) == 2, "the top 2 only: no expert stands in"
    assert metric(url, 'moe2_upstream_client_errors_total{expert="rtx-1/gemma-2-9b-it",status="400"}') == 1
    assert "moe2_expert_failures_total{" not in httpx.get(url + "/metrics", headers={
        "Authorization": f"Bearer {KEY}"}).text
    with pytest.raises(openai.BadRequestError, match="Expected a value <= 2"):
        client.chat.completions.create(model=MODEL, messages=POETRY, temperature=5, stream=True)


def test_an_experts_own_failure_still_falls_back(serving):
    client, *_ = serving(only("gemma-2-9b-it", fail="429"))
    reply = client.chat.completions.create(model=MODEL, messages=POETRY)
    failed = reply.model_extra["moe2"]["failed"]
    assert [(f["expert"], f["reason"], f["kind"]) for f in failed] == [("rtx-1/gemma-2-9b-it", "HTTP 429", "http")]


def test_usage_is_the_returned_completions_and_the_spend_is_counted_apart(serving):
    client, url, servers, _ = serving(everywhere(answer=SENTENCE))
    reply = client.chat.completions.create(model=MODEL, messages=POETRY)
    moe2 = reply.model_extra["moe2"]
    server, llm = moe2["answer_from"].split("/")
    direct = sdk(servers[server].url).chat.completions.create(model=llm, messages=POETRY)
    assert reply.usage == direct.usage
    assert moe2["tokens_spent"]["total_tokens"] == len(moe2["experts"]) * direct.usage.total_tokens
    counted = metric(url, 'moe2_tokens_total{category="mcq",type="completion"}')
    assert counted == len(moe2["experts"]) * direct.usage.completion_tokens


def test_logprobs_are_relayed(serving):
    client, *_ = serving(everywhere(answer=SENTENCE))
    reply = client.chat.completions.create(model=MODEL, messages=POETRY, logprobs=True)
    tokens = reply.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == SENTENCE and all(t.logprob < 0 for t in tokens)


def test_a_stream_passes_through_as_it_is_generated(serving):
    hold = threading.Event()
    client, *_ = serving(everywhere(answer=SENTENCE, hold=hold))
    try:
        stream = client.chat.completions.create(model=MODEL, messages=POETRY, stream=True,
                                                stream_options={"include_usage": True})
        chunks = iter(stream)
        first = next(c for c in chunks if c.choices and c.choices[0].delta.content)
        # The expert is held after its first token: only a stream passed through shows it now.
        assert first.choices[0].delta.content == "the" and not hold.is_set()
        assert first.model == MODEL
    finally:
        hold.set()
    rest = list(chunks)
    text = "the" + "".join(c.choices[0].delta.content or "" for c in rest if c.choices)
    assert text == SENTENCE
    assert [c.choices[0].finish_reason for c in rest if c.choices][-1] == "stop"
    assert rest[-1].usage.completion_tokens == len(SENTENCE.split())


def test_a_stream_without_usage_asked_carries_none(serving):
    client, *_ = serving(everywhere(answer=SENTENCE))
    chunks = list(client.chat.completions.create(model=MODEL, messages=POETRY, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert chunks[0].model_extra["moe2"]["answer_from"] == "rtx-1/gemma-2-9b-it"


def test_a_stream_whose_expert_never_starts_falls_back(serving):
    client, url, _, _ = serving(only("gemma-2-9b-it", fail="hang"), ttft_s=0.3)
    chunks = list(client.chat.completions.create(model=MODEL, messages=POETRY, stream=True))
    moe2 = chunks[0].model_extra["moe2"]
    assert [(f["expert"], f["kind"]) for f in moe2["failed"]] == [("rtx-1/gemma-2-9b-it", "ttft_timeout")]
    assert moe2["answer_from"] != "rtx-1/gemma-2-9b-it"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == moe2["answer_from"].split("/")[1]
    assert metric(url, 'moe2_expert_failures_total{expert="rtx-1/gemma-2-9b-it",kind="ttft_timeout"}') == 1


def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error(serving):
    client, url, _, _ = serving(everywhere(answer=SENTENCE, fail="stall"), timeout_s=0.5)
    stream = client.chat.completions.create(model=MODEL, messages=POETRY, stream=True)
    seen = []
    with pytest.raises(openai.APIError, match="failed after the stream began"):
        for chunk in stream:
            seen.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in seen) == "the", "no second expert joined in"


def test_vote_streams_once_the_votes_are_in(serving):
    client, _, servers, _ = serving(everywhere(answer="B"), aggregate="vote")
    chunks = list(client.chat.completions.create(model=MODEL, messages=POETRY, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "B"
    assert chunks[0].model_extra["moe2"]["votes"] == 2
    assert chunks[-1].usage.total_tokens > 0
    assert all(not c.stream for s in servers.values() for c in s.calls), "voted answers are whole upstream"


def test_models_completions_and_responses_endpoints(serving):
    client, *_ = serving(everywhere(answer=SENTENCE))
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")
    text = client.completions.create(model=MODEL, prompt="poetry sonnet", max_tokens=2)
    assert text.choices[0].text == "the quick" and text.choices[0].finish_reason == "length"
    assert text.model == MODEL and text.model_extra["moe2"]["answer_from"] == "rtx-1/gemma-2-9b-it"
    streamed = list(client.completions.create(model=MODEL, prompt="poetry sonnet", stream=True))
    assert "".join(c.choices[0].text for c in streamed if c.choices) == SENTENCE
    with pytest.raises(openai.NotFoundError, match="/v1/chat/completions"):
        client.responses.create(model=MODEL, input="poetry sonnet")


def test_an_unknown_model_is_model_not_found(serving):
    client, _, servers, _ = serving()
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=POETRY)
    assert raised.value.code == "model_not_found" and MODEL in raised.value.message
    assert not any(s.calls for s in servers.values())


def test_request_id_and_system_fingerprint(serving):
    client, _, servers, _ = serving()
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=POETRY,
                                                           extra_headers={"X-Request-Id": "req-123"})
    assert raw.headers["x-request-id"] == "req-123"
    assert raw.parse().system_fingerprint == "fp_fake"
    assert {c.request_id for s in servers.values() for c in s.calls} == {"req-123"}, "passed to the experts"
    made = client.chat.completions.with_raw_response.create(model=MODEL, messages=POETRY)
    assert len(made.headers["x-request-id"]) >= 16 and made.headers["x-request-id"] != "req-123"


def test_a_system_only_conversation_is_routed_on_its_system_text(serving):
    client, *_ = serving()
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "system", "content": "poetry sonnet"}])
    assert reply.model_extra["moe2"]["answer_from"] == "rtx-1/gemma-2-9b-it"


def test_bearer_in_any_case_and_allow_on_405(serving):
    _, url, *_ = serving()
    body = {"model": MODEL, "messages": POETRY}
    for scheme in ("bearer", "BEARER", "Bearer"):
        reply = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"{scheme} {KEY}"})
        assert reply.status_code == 200, scheme
    wrong = httpx.get(url + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"})
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_category_by_header_in_any_case_by_metadata_and_by_extra_body(serving):
    client, *_ = serving()

    def category(**options) -> str:
        return client.chat.completions.create(model=MODEL, messages=POETRY, **options).model_extra["moe2"]["category"]

    assert category(extra_headers={"X-Moe2-Category": "MATH"}) == "math"
    assert category(metadata={"category": "math"}) == "math"
    assert category(extra_body={"metadata": {"category": "Math"}}) == "math"
    assert category(extra_body={"extra_body": {"metadata": {"category": "math"}}}) == "math"
    assert category() == "mcq", "inferred from the poetry question's text"
