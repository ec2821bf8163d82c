"""A request naming no category is never given one silently: inferred from its text (header,
moe2 field, streams, the openai SDK), refused under ``require``, or the named default; every
source counted in /metrics. Bad policies and outcomes without text stop `moe2 serve` at start."""

from __future__ import annotations

import json

import httpx
from openai import OpenAI

from moe2_cli.serve.categories import CategoryPolicy
from tests.serve.conftest import EXPERTS, fake_experts, plan_for, running_proxy, write_scenario, write_selection

CHAT = "/v1/chat/completions"
MATH_QUESTION = "how do I solve this algebra equation"  # algebra questions are math in the outcomes


def unnamed(text: str, **extra) -> dict:
    return {"model": "serve-test", "messages": [{"role": "user", "content": text}], **extra}


def metric_values(url: str) -> dict[str, float]:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return {name: float(value) for name, value in (line.rsplit(" ", 1) for line in lines if not line.startswith("#"))}


def test_an_inferred_category_is_in_the_header_the_moe2_field_and_a_stream_s_first_chunk(base_plan, tmp_path):
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, _):
        reply = httpx.post(url + CHAT, timeout=30, json=unnamed(MATH_QUESTION))
        assert reply.status_code == 200, reply.text
        moe2 = reply.json()["moe2"]
        assert reply.headers["x-moe2-category"] == moe2["category"] == "math"
        assert moe2["category_source"] == "inferred" and 0.5 < moe2["category_probability"] <= 1
        poetry = httpx.post(url + CHAT, timeout=30, json=unnamed("write a poetry sonnet")).json()["moe2"]
        assert (poetry["category"], poetry["category_source"]) == ("mcq", "inferred")
        with httpx.stream("POST", url + CHAT, timeout=30, json=unnamed(MATH_QUESTION, stream=True)) as streamed:
            assert streamed.headers["x-moe2-category"] == "math"
            first = next(line for line in streamed.iter_lines() if line.startswith("data: "))
        first_moe2 = json.loads(first[len("data: "):])["moe2"]
        assert (first_moe2["category"], first_moe2["category_source"]) == ("math", "inferred")
        given = httpx.post(url + CHAT, timeout=30, json=unnamed(MATH_QUESTION), headers={"X-Moe2-Category": "mcq"})
        assert given.headers["x-moe2-category"] == "mcq" and given.json()["moe2"]["category_source"] == "given"
        assert given.json()["moe2"]["category_probability"] is None
        values = metric_values(url)
    assert values['moe2_request_categories_total{category="math",source="inferred"}'] == 2
    assert values['moe2_request_categories_total{category="mcq",source="inferred"}'] == 1
    assert values['moe2_request_categories_total{category="mcq",source="given"}'] == 1


def test_the_openai_sdk_sees_the_category_header_with_raw_response(base_plan, tmp_path):
    with fake_experts() as (_, urls), running_proxy(plan_for(base_plan, tmp_path, urls)) as (url, _):
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=20)
        raw = client.chat.completions.with_raw_response.create(
            model="serve-test", messages=[{"role": "user", "content": MATH_QUESTION}])
        completion = raw.parse()
    assert raw.headers["X-Moe2-Category"] == "math"
    assert completion.model_extra["moe2"]["category_source"] == "inferred"


def test_require_refuses_naming_the_ways_and_default_gives_the_named_category(base_plan, tmp_path):
    with fake_experts() as (_, urls):
        plan = plan_for(base_plan, tmp_path, urls)
        with running_proxy(plan, category_policy=CategoryPolicy("require")) as (url, _):
            refused = httpx.post(url + CHAT, timeout=30, json=unnamed(MATH_QUESTION))
            named = httpx.post(url + CHAT, timeout=30, json=unnamed(MATH_QUESTION, metadata={"category": "MATH"}))
            assert metric_values(url).get('moe2_request_categories_total{category="math",source="given"}') == 1
        assert refused.status_code == 400 and "x-moe2-category" not in refused.headers
        error = refused.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "metadata.category"
        assert all(way in error["message"] for way in ("metadata.category", "X-Moe2-Category", "extra_body"))
        assert named.status_code == 200 and named.headers["x-moe2-category"] == "math"
        with running_proxy(plan, category_policy=CategoryPolicy("default", "mcq")) as (url, _):
            defaulted = httpx.post(url + CHAT, timeout=30, json=unnamed(MATH_QUESTION))
            values = metric_values(url)
    assert defaulted.headers["x-moe2-category"] == "mcq"
    assert defaulted.json()["moe2"]["category_source"] == "default"
    assert values['moe2_request_categories_total{category="mcq",source="default"}'] == 1


def test_bad_policies_and_outcomes_without_text_stop_serve_at_start(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"})
    selection = write_selection(tmp_path, EXPERTS)
    unknown = run_cli("serve", scenario, "--selection", selection, "--category-policy", "default:art")
    assert unknown.exit_code == 2 and unknown.stdout == ""
    assert unknown.stderr == "moe2: --category-policy names unknown category 'art' (categories: mcq, math)\n"
    odd = run_cli("serve", scenario, "--selection", selection, "--category-policy", "guess")
    assert odd.exit_code == 2
    assert odd.stderr == "moe2: --category-policy must be infer, require or default:NAME (got 'guess')\n"
    outcomes = tmp_path / "outcomes.jsonl"
    rows = [json.loads(line) for line in outcomes.read_text().splitlines()]
    outcomes.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "text"}) + "\n" for r in rows))
    textless = run_cli("serve", scenario, "--selection", selection, "--port", "0", "--category-policy", "infer")
    assert textless.exit_code == 2 and "Traceback" not in textless.stderr
    assert textless.stderr.splitlines()[-1].startswith("moe2: --category-policy infer needs question text in the "
                                                       "outcomes")
    assert textless.stderr.splitlines()[-1].endswith("use require, or default:NAME")


def test_without_question_text_the_default_policy_requires_a_category(tmp_path):
    from moe2_cli.serve.categories import CategoryPolicy
    from moe2_cli.serve.plan import choose, with_router

    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"})
    outcomes = tmp_path / "outcomes.jsonl"
    rows = [json.loads(line) for line in outcomes.read_text().splitlines()]
    outcomes.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "text"}) + "\n" for r in rows))
    choice = choose(scenario, selection=write_selection(tmp_path, EXPERTS))
    plan = with_router(choice, category_policy=CategoryPolicy("infer"), strict=False)
    assert plan.classifier is None and plan.category_policy == CategoryPolicy("require")
