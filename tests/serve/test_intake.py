"""What a request asks for: the model, n, the routed text, the category and where it came
from, the tags and the conversation."""

from __future__ import annotations

import pytest

from moe2_cli.errors import UsageError
from moe2_cli.serve.categories import CategoryPolicy, parse_policy
from moe2_cli.serve.intake import (
    CHAT,
    COMPLETIONS,
    BadRequest,
    Intake,
    UnknownModel,
    query_of,
    read_request,
    request_id,
)

CATEGORIES = ("mcq", "math")
CONVERSATION = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "solve x + 1 = 2"},
                {"role": "assistant", "content": "x = 1"}, {"role": "tool", "content": "checked"},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "user", "content": [{"type": "text", "text": "and"}, {"type": "image_url"},
                                             {"type": "text", "text": "x + 2 = 5?"}]}]


def _read(body: dict, endpoint: str = CHAT, header: str | None = None, policy: str = "default:mcq",
          headers: dict | None = None):
    intake = Intake(CATEGORIES, parse_policy(policy, CATEGORIES))
    return read_request(endpoint, body, models=("served",), intake=intake,
                        headers={**({"x-moe2-category": header} if header else {}), **(headers or {})}, rid="r1")


def test_the_routed_text_is_the_last_user_message_else_the_system_text():
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "first"},
                {"role": "assistant", "content": "ok"}, {"role": "user", "content": [{"type": "text", "text": "two"}]}]
    assert _read({"messages": messages}).query.text == "two"
    system_only = [{"role": "system", "content": "a"}, {"role": "developer", "content": "b"}]
    assert _read({"messages": system_only}).query.text == "a\nb"
    assert _read({"prompt": ["only one"]}, COMPLETIONS).query.text == "only one"


def test_route_on_featurises_the_last_user_turn_every_user_turn_or_every_message():
    def text(route_on: str) -> str:
        return query_of(CHAT, {"messages": CONVERSATION}, Intake(CATEGORIES, route_on=route_on), {}, "r").text

    assert text("last") == "and x + 2 = 5?"
    assert text("user") == "solve x + 1 = 2\nand x + 2 = 5?"
    assert text("all") == "be brief\nsolve x + 1 = 2\nx = 1\nchecked\nand x + 2 = 5?"
    system_only = [{"role": "system", "content": "a"}, {"role": "assistant", "content": "b"}]
    for route_on in ("last", "user"):
        assert query_of(CHAT, {"messages": system_only}, Intake(CATEGORIES, route_on=route_on), {}, "r").text == "a"


def test_a_request_naming_no_category_gets_what_the_policy_says_and_its_source():
    unnamed = {"messages": [{"role": "user", "content": "x"}]}
    inferred = _read(unnamed, policy="infer").query
    assert (inferred.category, inferred.category_source) == (None, "inferred"), "left for the classifier"
    default = _read(unnamed, policy="default:MATH").query
    assert (default.category, default.category_source) == ("math", "default")
    named = _read({**unnamed, "metadata": {"category": "mcq"}}, policy="require").query
    assert (named.category, named.category_source) == ("mcq", "given")
    with pytest.raises(BadRequest) as refused:
        _read(unnamed, policy="require")
    message = str(refused.value)
    assert refused.value.status == 400 and refused.value.param == "metadata.category"
    assert all(way in message for way in ("metadata.category", "X-Moe2-Category", "extra_body")), message


def test_policies_parse_and_an_unknown_default_names_the_categories():
    assert parse_policy("infer", CATEGORIES) == CategoryPolicy("infer")
    assert str(parse_policy("default:Math", CATEGORIES)) == "default:math"
    for bad, message in (("guess", "must be infer, require or default:NAME (got 'guess')"),
                         ("default:", "must be infer, require or default:NAME"), ("require:x", "must be infer"),
                         ("default:art", "names unknown category 'art' (categories: mcq, math)")):
        with pytest.raises(UsageError) as err:
            parse_policy(bad, CATEGORIES)
        assert err.value.subject == "category_policy" and message in err.value.message, bad


def test_tags_from_metadata_and_the_session_from_the_header_or_user():
    body = {"messages": [{"role": "user", "content": "x"}], "metadata": {"tags": ["easy", "algebra"]},
            "user": "alice"}
    asked = _read(body)
    assert asked.query.tags == ("easy", "algebra") and asked.session == "alice"
    assert _read(body, headers={"x-moe2-session": "s-1"}).session == "s-1", "the header wins"
    assert _read({"messages": [{"role": "user", "content": "x"}]}).session is None
    literal = {"messages": [{"role": "user", "content": "x"}], "extra_body": {"metadata": {"tags": ["t"]}}}
    assert _read(literal).query.tags == ("t",)
    for tags in ("easy", ["a", 1]):
        with pytest.raises(BadRequest, match="'metadata.tags' must be a list of strings"):
            _read({"messages": [{"role": "user", "content": "x"}], "metadata": {"tags": tags}})


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
