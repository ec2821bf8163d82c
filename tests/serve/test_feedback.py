"""POST /v1/feedback: a score or a reference for a logged request, written to DIR/feedback.jsonl;
bad bodies are OpenAI-style 400s, unknown ids 404, and without a request log 409."""

from __future__ import annotations

import json

import httpx
import pytest

from moe2_cli.serve.feedback import FEEDBACK_NAME
from moe2_cli.serve.requestlog import RequestLog, RotatingFile
from tests.serve.conftest import fake_experts, plan_for, running_proxy

CHAT = "/v1/chat/completions"
FEEDBACK = "/v1/feedback"


def ask(text: str) -> dict:
    return {"model": "serve-test", "messages": [{"role": "user", "content": text}], "metadata": {"category": "mcq"}}


def logs(directory):
    return {"request_log": RequestLog(RotatingFile(directory, 1 << 20), with_text=True),
            "feedback_log": RequestLog(RotatingFile(directory, 1 << 20, name=FEEDBACK_NAME))}


def test_feedback_by_completion_id_or_request_id_is_logged(base_plan, tmp_path):
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls), **logs(tmp_path)) as (url, _):
        reply = httpx.post(url + CHAT, json=ask("poetry sonnet"), headers={"X-Request-Id": "r-1"})
        assert reply.status_code == 200, reply.text
        scored = httpx.post(url + FEEDBACK, json={"id": reply.json()["id"], "score": 0.75})
        referenced = httpx.post(url + FEEDBACK, json={"id": "r-1", "reference": ["Paris", "paris, France"]})
    assert scored.status_code == 200 and scored.json()["recorded"] is True
    assert referenced.status_code == 200, referenced.text
    lines = [json.loads(line) for line in (tmp_path / FEEDBACK_NAME).read_text().splitlines()]
    assert [(x["id"], x.get("score"), x.get("reference")) for x in lines] == [
        (reply.json()["id"], 0.75, None), ("r-1", None, ["Paris", "paris, France"])]
    assert all(x["time"].endswith("Z") and x["unix"] > 0 for x in lines)


@pytest.mark.parametrize(("body", "status", "param", "says"), [
    ({"id": "nobody", "score": 1}, 404, "id", "no recent request has the id 'nobody'"),
    ({"id": "r-1", "score": 1.5}, 400, "score", "'score' must be a number in [0, 1]"),
    ({"id": "r-1", "score": True}, 400, "score", "'score' must be a number in [0, 1]"),
    ({"id": "r-1"}, 400, None, "give exactly one of 'score'"),
    ({"id": "r-1", "score": 1, "reference": "x"}, 400, None, "give exactly one of 'score'"),
    ({"id": "r-1", "reference": ["ok", ""]}, 400, "reference", "'reference' must be non-empty text"),
    ({"id": "", "score": 1}, 400, "id", "'id' must be the id of a completion"),
    ([1, 2], 400, None, "the body must be a JSON object"),
])
def test_bad_feedback_is_refused_openai_style(base_plan, tmp_path, body, status, param, says):
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls), **logs(tmp_path)) as (url, _):
        assert httpx.post(url + CHAT, json=ask("poetry"), headers={"X-Request-Id": "r-1"}).status_code == 200
        reply = httpx.post(url + FEEDBACK, json=body)
        not_json = httpx.post(url + FEEDBACK, content=b"{nope", headers={"Content-Type": "application/json"})
    assert reply.status_code == status
    error = reply.json()["error"]
    assert says in error["message"] and error["param"] == param and error["type"] == "invalid_request_error"
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["error"]["message"]
    assert (tmp_path / FEEDBACK_NAME).read_text() == ""


def test_feedback_without_a_log_is_a_conflict(base_plan, tmp_path):
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, _):
        reply = httpx.post(url + FEEDBACK, json={"id": "r-1", "score": 1})
    assert reply.status_code == 409 and reply.json()["error"]["code"] == "feedback_unavailable"
    assert "--log DIR" in reply.json()["error"]["message"]
