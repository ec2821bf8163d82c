"""What a request asks for: the model, n, the routed text and the category."""

from __future__ import annotations

import pytest

from moe2_cli.serve.intake import CHAT, COMPLETIONS, BadRequest, UnknownModel, read_request, request_id

CATEGORIES = ("mcq", "math")


def _read(body: dict, endpoint: str = CHAT, header: str | None = None):
    return read_request(endpoint, body, models=("served",), categories=CATEGORIES, category_header=header,
                        rid="r1")


def test_the_routed_text_is_the_last_user_message_else_the_system_text():
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": [{"type": "text", "text": "two"}]}]
    assert _read({"messages": messages}).query.text == "two"
    system_only = [{"role": "system", "content": "a"}, {"role": "developer", "content": "b"}]
    assert _read({"messages": system_only}).query.text == "a\nb"
    assert _read({"prompt": ["only one"]}, COMPLETIONS).query.text == "only one"


def test_category_sources_in_order_and_without_case():
    assert _read({"messages": [{"role": "user", "content": "x"}]}).query.category == "mcq"
    assert _read({"messages": [{"role": "user", "content": "x"}]}, header="MATH").query.category == "math"
    body = {"messages": [{"role": "user", "content": "x"}], "metadata": {"category": "Math"}}
    assert _read(body, header="mcq").query.category == "math", "the body wins over the header"
    literal = {"messages": [{"role": "user", "content": "x"}], "extra_body": {"metadata": {"category": "math"}}}
    assert _read(literal).query.category == "math"


def test_mistakes_are_bad_requests_and_an_unknown_model_a_404():
    with pytest.raises(UnknownModel) as unknown:
        _read({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})
    assert unknown.value.status == 404 and unknown.value.code == "model_not_found"
    for body, endpoint in (({"messages": [{"role": "user", "content": "x"}], "n": 1.5}, CHAT),
                           ({"messages": [{"role": "user", "content": "x"}], "n": True}, CHAT),
                           ({"messages": [{"role": "user", "content": "x"}], "metadata": {"category": "art"}}, CHAT),
                           ({"prompt": ["a", "b"]}, COMPLETIONS), ({"prompt": 3}, COMPLETIONS)):
        with pytest.raises(BadRequest) as raised:
            _read(body, endpoint)
        assert raised.value.status == 400, body
    assert _read({"model": "served", "messages": [{"role": "user", "content": "x"}], "n": 4}).n == 4


def test_a_client_request_id_is_echoed_only_when_it_is_a_sensible_token():
    assert request_id("abc-123", "fresh") == "abc-123"
    for odd in ("", "has space", "x" * 129, "caf\u00e9", None):
        assert request_id(odd, "fresh") == "fresh", odd
