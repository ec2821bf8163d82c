"""Chunks the client sees: an expert's relabelled, and a whole reply told as a stream."""

from __future__ import annotations

import json

from moe2_cli.serve.chunks import DONE, Relabel, told_as_chunks

CALL = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


def _payloads(events: list[str]) -> list[dict]:
    assert events[-1] == DONE
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


def test_a_tool_call_reply_told_as_chunks_keeps_its_call_and_finish_reason():
    reply = {"id": "x", "created": 1, "model": "m", "usage": {"total_tokens": 3}, "moe2": {"votes": 1},
             "choices": [{"index": 0, "finish_reason": "tool_calls", "logprobs": None,
                          "message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}]}
    chunks = _payloads(told_as_chunks(reply, wants_usage=True, chat=True))
    delta = chunks[0]["choices"][0]["delta"]
    assert delta["tool_calls"] == [{"index": 0, **CALL}] and delta["content"] is None
    assert chunks[0]["moe2"] == {"votes": 1} and chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[1]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[2] == {**chunks[2], "choices": [], "usage": {"total_tokens": 3}}


def test_a_text_completion_without_object_or_created_is_told_as_text_chunks():
    reply = {"id": "x", "model": "m", "choices": [{"index": 0, "text": "hello", "finish_reason": "length"}]}
    chunks = _payloads(told_as_chunks(reply, wants_usage=False, chat=False))
    assert [c["choices"][0]["text"] for c in chunks] == ["hello", ""]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and "usage" not in chunks[-1]


def test_relabel_names_the_served_model_and_drops_usage_nobody_asked_for():
    relabel = Relabel(id="mine", model="served", wants_usage=False, moe2={"experts": ["a/b"]})
    first = json.loads(relabel('{"id": "up", "model": "b", "usage": null, "choices": [{"index": 0}]}')[6:])
    assert (first["id"], first["model"], first["moe2"]) == ("mine", "served", {"experts": ["a/b"]})
    assert "usage" not in first
    second = json.loads(relabel('{"id": "up", "model": "b", "choices": [{"index": 0}]}')[6:])
    assert "moe2" not in second, "the moe2 field rides on the first chunk only"
    assert relabel('{"choices": [], "usage": {"total_tokens": 7}}') is None
    assert relabel.usage == {"total_tokens": 7}, "counted even when not sent"
    assert relabel("[DONE]") == DONE and relabel(": keep-alive") is None
