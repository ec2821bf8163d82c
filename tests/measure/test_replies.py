"""The reply reader: what counts as a completion, however the bytes are split."""

from __future__ import annotations

import json

import pytest

from moe2_cli.measure.replies import ReplyFailure, ReplyReader


def _chunk(content=None, finish=None, **extra) -> bytes:
    delta = {} if content is None else {"content": content}
    return b"data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
                                  ).encode() + b"\n\n"


STREAM = _chunk("") + _chunk("The answer") + _chunk(" is B") + _chunk(finish="stop") + \
    b'data: {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}\n\ndata: [DONE]\n\n'


def _read(body: bytes, piece: int | None = None):
    reader = ReplyReader(clock=lambda: 7.0)
    step = piece or len(body) or 1
    for at in range(0, len(body), step):
        reader.feed(body[at:at + step])
        if reader.done:
            break
    return reader.result()


@pytest.mark.parametrize("piece", [None, 1, 2, 7])
@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_a_stream_reads_the_same_however_its_bytes_arrive(piece, newline):
    parsed = _read(STREAM.replace(b"\n", newline), piece)
    assert (parsed.answer, parsed.first_text_at) == ("The answer is B", 7.0)
    assert parsed.usage == {"prompt_tokens": 9, "completion_tokens": 3}


def test_comments_other_fields_and_anything_after_done_are_ignored():
    body = b": ping\nevent: message\nid: 1\n" + _chunk("B", "stop") + b"data: [DONE]\n\ndata: not json\n\n"
    assert _read(body).answer == "B"
    assert _read(_chunk("B", "length")).answer == "B"  # a finish_reason ends a stream too


def test_a_whole_json_completion_is_accepted_when_stream_was_ignored():
    body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "42"}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()
    parsed = _read(body, 3)
    assert (parsed.answer, parsed.first_text_at, parsed.usage["completion_tokens"]) == ("42", None, 1)


@pytest.mark.parametrize("body, reason", [
    (b"", "not_sse"),
    (b"<html>bad gateway</html>", "not_sse"),
    (b'{"object": "list", "data": []}', "not_sse"),
    (b'{"choices": [{"message": {"content": 5}}]}', "not_sse"),
    (b'{"error": {"message": "overloaded"}}', "error_body"),
    (_chunk("B") + b'data: {"error": {"message": "oom"}}\n\n', "error_body"),
    (_chunk("B") + b"data: {nope\n\n", "malformed_chunk"),
    (_chunk("B"), "cut"),
    (_chunk("The answer") + _chunk(" is"), "cut"),
])
def test_anything_else_is_a_failure_of_its_kind(body, reason):
    with pytest.raises(ReplyFailure) as caught:
        _read(body, 5)
    assert caught.value.reason == reason


@pytest.mark.parametrize("body", [
    _chunk("", "stop") + b"data: [DONE]\n\n",
    b"data: [DONE]\n\n",
    _chunk("  \n", "stop"),
    b'{"choices": [{"message": {"content": "  "}}]}',
    b'{"choices": [{"message": {"content": null}}]}',
])
def test_a_completion_without_text_is_a_completion_with_an_empty_answer(body):
    assert not _read(body, 5).answer.strip()


def test_a_reply_past_the_byte_cap_is_refused_as_it_arrives():
    reader = ReplyReader(max_bytes=100)
    reader.feed(b"data: " + b"x" * 90)
    with pytest.raises(ReplyFailure, match="passed 100 bytes") as caught:
        reader.feed(b"x" * 11)
    assert caught.value.reason == "too_large"


def test_the_cap_counts_up_to_the_answers_end_however_the_bytes_are_cut():
    """A gzip body inflates in one piece: what follows [DONE] there is not read, as it would not
    be if it came later; a line past the cap before the end is refused before it is parsed."""
    after = STREAM + _chunk("x" * 5000)
    whole = ReplyReader(max_bytes=len(STREAM) + 10)
    whole.feed(after)
    assert whole.done and whole.result().answer == "The answer is B"
    assert _read(after, piece=64).answer == "The answer is B"
    reader = ReplyReader(max_bytes=1000)
    with pytest.raises(ReplyFailure, match="passed 1000 bytes"):
        reader.feed(_chunk("x" * 5000) + STREAM)
