"""The loopback OpenAI-compatible server that the measure and serve tests talk to."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.fakes.openai_server import FakeModel, FakeOpenAI, unused_url

CHAT = {"messages": [{"role": "user", "content": "What is 2+2?"}]}


def test_models_and_plain_completion():
    with FakeOpenAI({"a": FakeModel(answer=lambda q: f"echo {q}"), "b": FakeModel()}) as server:
        listed = httpx.get(server.url + "/v1/models", timeout=5).json()
        assert [m["id"] for m in listed["data"]] == ["a", "b"]
        reply = httpx.post(server.url + "/v1/chat/completions", json={"model": "a", **CHAT}, timeout=5).json()
        assert reply["choices"][0]["message"]["content"] == "echo What is 2+2?"
        assert reply["usage"]["completion_tokens"] == 4
        assert [c.model for c in server.calls] == ["a"]


def test_streaming_sends_chunks_usage_and_done():
    with FakeOpenAI({"a": FakeModel(answer="four is right", delay_s=0.05)}) as server:
        body = {"model": "a", "stream": True, "stream_options": {"include_usage": True}, **CHAT}
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=5) as response:
            events = [line[len("data: "):] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "four is right"
    assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_failures_auth_and_refused_connections():
    models = {"bad": FakeModel(fail="500"), "slow": FakeModel(fail="hang"), "ok": FakeModel()}
    with FakeOpenAI(models, api_key="k") as server:
        url = server.url + "/v1/chat/completions"
        assert httpx.post(url, json={"model": "ok", **CHAT}, timeout=5).status_code == 401
        auth = {"Authorization": "Bearer k"}
        assert httpx.post(url, json={"model": "bad", **CHAT}, headers=auth, timeout=5).status_code == 500
        assert httpx.post(url, json={"model": "nope", **CHAT}, headers=auth, timeout=5).status_code == 404
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url, json={"model": "slow", **CHAT}, headers=auth, timeout=0.3)
    with pytest.raises(httpx.ConnectError):
        httpx.get(unused_url() + "/v1/models", timeout=2)
