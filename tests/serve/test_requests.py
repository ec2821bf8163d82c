"""Request bodies: strict JSON within limits, typed shapes, and 400s that name the field."""

from __future__ import annotations

import json

import pytest

from moe2_cli.serve.intake import CHAT, COMPLETIONS
from moe2_cli.serve.requests import InvalidField, MalformedJSON, client_timeout, parse_json, read_body


def chat(**extra) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "hi"}], **extra}).encode()


def parts(*items) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": list(items)}]}).encode()


@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65,
                                 b'{"a": NaN}', b'{"a": -Infinity}', b'{"a": "\\ud800"}', b'{"a": 1e999}',
                                 b'{"a": ' + b"9" * 5000 + b"}", b"\xff", b'{"a": 1'])
def test_what_rfc_8259_refuses_or_is_too_deep_is_malformed(raw):
    with pytest.raises(MalformedJSON):
        parse_json(raw)


def test_depth_up_to_the_limit_parses():
    assert parse_json(b'{"a":' * 63 + b"[1]" + b"}" * 63) is not None
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600", "a surrogate pair is one character"


@pytest.mark.parametrize("raw, param", [
    (parts({"type": "text", "text": 5}), "messages[0].content[0].text"),
    (parts({"type": "text", "text": None}), "messages[0].content[0].text"),
    (parts({"type": "text"}), "messages[0].content[0].text"),
    (parts({"text": "x"}), "messages[0].content[0].type"),
    (json.dumps({"messages": [{"content": "x"}]}).encode(), "messages[0].role"),
    (json.dumps({"messages": {"role": "user"}}).encode(), "messages"),
    (json.dumps({"model": "m"}).encode(), "messages"),
    (chat(stream_options=3), "stream_options"),
    (chat(stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (chat(temperature="hot"), "temperature"),
    (chat(n=1.5), "n"),
    (chat(stop=[1]), "stop[0]"),
    (chat(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0].function.name"),
    (chat(metadata=[]), "metadata"),
    (chat(timeout=0), "timeout"),
    (chat(timeout=True), "timeout"),
])
def test_a_wrong_shape_is_a_400_naming_the_field(raw, param):
    with pytest.raises(InvalidField) as caught:
        read_body(raw, CHAT)
    assert caught.value.status == 400 and caught.value.param == param
    assert param in str(caught.value)


def test_bodies_that_are_not_json_objects_name_no_field():
    for raw in (b"[1, 2]", b'"text"', b"null", b"{", b'{"messages": [], "x": NaN}'):
        with pytest.raises(InvalidField) as caught:
            read_body(raw, CHAT)
        assert caught.value.param is None


def test_a_good_body_comes_back_whole_with_fields_the_models_do_not_name():
    body = {"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"},
                                                        {"type": "image_url", "image_url": {"url": "data:"}}]},
                         {"role": "assistant", "content": None, "tool_calls": [
                             {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "reasoning_effort": "low", "stream_options": None, "n": 2, "temperature": 1}
    assert read_body(json.dumps(body).encode(), CHAT) == body
    assert read_body(b'{"prompt": ["one"], "echo": false}', COMPLETIONS) == {"prompt": ["one"], "echo": False}
    with pytest.raises(InvalidField) as caught:
        read_body(b'{"prompt": [1, 2]}', COMPLETIONS)
    assert caught.value.param == "prompt[0]"


def test_client_timeout_is_the_shorter_of_body_and_sdk_header():
    assert client_timeout({"timeout": 3}, {"x-stainless-read-timeout": "600.0"}) == 3
    assert client_timeout({}, {"x-stainless-read-timeout": "2.5"}) == 2.5
    for header in ("abc", "nan", "-1", "0", "inf"):
        assert client_timeout({}, {"x-stainless-read-timeout": header}) is None
    assert client_timeout({}, {}) is None
