"""A whole completion rebuilt from its stream's chunks, and the streams that make none."""

from __future__ import annotations

import pytest

from moe2_cli.serve.rebuild import NotACompletion, Rebuilder

HEAD = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 7, "model": "m"}


def chunk(delta: dict, finish: str | None = None, index: int = 0, **extra) -> dict:
    return {**HEAD, "choices": [{"index": index, "delta": delta, "finish_reason": finish}], **extra}


def rebuilt(chunks: list[dict], chat: bool = True) -> dict:
    rebuilder = Rebuilder(chat=chat)
    for item in chunks:
        rebuilder.add(item)
    return rebuilder.whole()


def test_a_tool_call_streamed_in_pieces_is_one_call():
    reply = rebuilt([chunk({"role": "assistant", "content": None}),
                     chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                            "function": {"name": "lookup", "arguments": ""}}]}),
                     chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": '}}]}),
                     chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}),
                     chunk({}, "tool_calls")])
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}
    assert reply["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "tool_calls",
                                 "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]
    assert (reply["id"], reply["object"], reply["created"], reply["model"]) == ("chatcmpl-1", "chat.completion", 7, "m")
    assert "usage" not in reply, "a stream without token counts gives a reply without usage"


def test_choices_interleaved_are_kept_apart_and_usage_is_taken():
    usage = {"prompt_tokens": 2, "completion_tokens": 4, "total_tokens": 6}
    reply = rebuilt([chunk({"content": "a"}, index=1), chunk({"content": "b"}), chunk({"content": "c"}, index=1),
                     chunk({}, "stop"), chunk({}, "length", index=1), {**HEAD, "choices": [], "usage": usage}])
    assert [(c["index"], c["message"]["content"], c["finish_reason"]) for c in reply["choices"]] == \
        [(0, "b", "stop"), (1, "ac", "length")]
    assert reply["usage"] == usage


def test_a_text_completion_is_rebuilt_as_one():
    pieces = [{**HEAD, "choices": [{"index": 0, "text": t, "finish_reason": f}]} for t, f in
              (("Par", None), ("is", None), ("", "stop"))]
    assert rebuilt(pieces, chat=False)["choices"] == [{"index": 0, "logprobs": None, "finish_reason": "stop",
                                                      "text": "Paris"}]


@pytest.mark.parametrize(("chunks", "kind"), [
    ([chunk({"content": "half an answer"})], "cut"),
    ([], "cut"),
    ([chunk({"content": "a"}), {"error": {"message": "slot taken"}}], "malformed"),
    ([{**HEAD, "choices": "none"}], "malformed"),
    ([chunk({"tool_calls": [{"index": "0"}]}, "stop")], "malformed"),
], ids=["no-finish-reason", "no-chunk", "error-event", "no-choices", "bad-tool-call"])
def test_streams_that_make_no_completion_say_why(chunks, kind):
    with pytest.raises(NotACompletion) as raised:
        rebuilt(chunks)
    assert raised.value.kind == kind
