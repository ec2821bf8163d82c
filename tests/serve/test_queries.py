"""Query files: every bad line is reported at its place, and nothing is routed."""

from __future__ import annotations

import json

import pytest

from moe2_cli.errors import InputError
from moe2_cli.serve.categories import CategoryPolicy
from moe2_cli.serve.queries import read_queries

CATS = ("mcq", "math")


def test_reads_ids_categories_text_tags_and_features(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "category": "math", "text": "2+2?", "tags": ["easy"]}\n\n'
                    '{"id": 7, "category": "mcq", "text": "pick", "features": [1, 2.5]}\n')
    first, second = read_queries(path, CATS)
    assert (first.id, first.category, first.text, first.tags, first.line) == ("a", "math", "2+2?", ("easy",), 1)
    assert (second.id, second.features, second.line) == ("7", (1.0, 2.5), 3)


def test_every_bad_line_is_reported(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "category": "math", "text": "ok"}\n'
                    '{"id": "b", "category": "poetry", "text": "x"}\n'
                    'not json\n'
                    '{"id": "c", "category": "math"}\n'
                    '{"id": "a", "category": "math", "text": "again"}\n'
                    '{"id": "d", "category": "math", "text": "t", "tags": "easy", "features": [1, "x"]}\n')
    with pytest.raises(InputError) as err:
        read_queries(path, CATS)
    lines = err.value.lines()
    assert lines[0] == f"{path}:2: category must be one of mcq, math (got 'poetry')"
    assert lines[1].startswith(f"{path}:3: invalid JSON")
    assert lines[2] == f"{path}:4: text must be a string (got nothing)"
    assert lines[3] == f"{path}:5: duplicate id 'a'"
    assert lines[4].startswith(f"{path}:6: tags must be a list of strings")
    assert lines[5].startswith(f"{path}:6: features must be a list of finite numbers")
    assert len(lines) == 6


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text("\n")
    with pytest.raises(InputError, match="no queries"):
        read_queries(path, CATS)


def test_a_line_without_a_category_follows_the_policy_and_messages_follow_route_on(tmp_path):
    path = tmp_path / "q.jsonl"
    conversation = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": "second"}]
    path.write_text('{"id": "a", "text": "2+2?"}\n' + json.dumps({"id": "b", "messages": conversation}) + "\n")
    inferred, last = read_queries(path, CATS, CategoryPolicy("infer"))
    assert (inferred.category, inferred.category_source) == (None, "inferred") and last.text == "second"
    defaulted, every = read_queries(path, CATS, CategoryPolicy("default", "math"), route_on="all")
    assert (defaulted.category, defaulted.category_source) == ("math", "default")
    assert every.text == "first\nok\nsecond"
    assert read_queries(path, CATS, CategoryPolicy("infer"), route_on="user")[1].text == "first\nsecond"
    for policy in (None, CategoryPolicy("require")):
        with pytest.raises(InputError) as err:
            read_queries(path, CATS, policy)
        assert err.value.lines()[0] == f"{path}:1: category must be one of mcq, math (got nothing)"


def test_text_or_messages_not_both_and_messages_must_be_a_conversation(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a", "category": "math", "text": "t", "messages": [{"role": "user", "content": "u"}]}\n'
                    '{"id": "b", "category": "math", "messages": []}\n')
    with pytest.raises(InputError) as err:
        read_queries(path, CATS)
    assert err.value.lines() == [f"{path}:1: give text or messages, not both",
                                 f"{path}:2: 'messages' must be a non-empty list of message objects"]
