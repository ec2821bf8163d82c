"""Runs that tell the truth about a real server: empty answers counted apart, missing token
counts said on the terminal, a seeded sample per category, a warm-up outside the prompt set,
and progress lines when nobody watches a terminal."""

from __future__ import annotations

import json

import yaml
from starlette.responses import StreamingResponse

from moe2_cli.cli.progress_lines import ProgressLines
from moe2_cli.measure.prompts import load_prompts, sample_per_category
from moe2_cli.measure.runner import WARMUP_MESSAGES
from moe2_cli.progress import ProgressEvent
from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.measure.helpers import PROMPTS, models, right, write_prompts, write_scenario

QUIET = ("--warmup", "0", "--retries", "0", "--format", "json")
LLAMA = "a/llama-3.1-8b-instruct"


def _records(out):
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "request"]


def _measure(tmp_path, run_cli, llama: FakeModel, *args, prompts=PROMPTS):
    served_a, served_b = models(0.0)
    served_a["llama-a"] = llama
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", write_prompts(tmp_path / "p.jsonl", prompts),
                         *args)
        return result, out, a.calls


def _empty_on_maths(prompt: str) -> str:
    return "<think>adding</think>\n  " if prompt.startswith("Sum") else right(prompt)


def test_empty_answers_are_scored_counted_apart_and_flagged(tmp_path, run_cli):
    result, out, _ = _measure(tmp_path, run_cli, FakeModel(answer=_empty_on_maths), *QUIET)
    assert result.exit_code == 0, result.stderr
    llama = [r for r in _records(out) if r["llm"] == "llama-3.1-8b-instruct"]
    assert all(r["ok"] for r in llama)
    assert [r["score"] for r in llama if r["category"] == "math"] == [0.0] * 4
    payload = json.loads(result.stdout)
    empty = {(row["expert"], row["category"]): row["empty"] for row in payload["experts"]}
    assert empty[(LLAMA, "math")] == 4 and empty[(LLAMA, "mcq")] == 0
    assert sum(empty.values()) == 4
    warning = f"{LLAMA}: 4 of 8 answers are empty (50%, more than 10%)"
    assert [w for w in payload["warnings"] if w.startswith(warning)]
    assert f"moe2: warning: {warning}" in result.stderr
    profile = yaml.safe_load((out / "profiles" / "a.yaml").read_text())["llms"]
    assert "8 prompts, 4 empty answers," in profile["llama-3.1-8b-instruct"]["source"]
    assert "8 prompts, 0 empty answers," in profile["qwen2.5-7b-instruct"]["source"]
    assert profile["llama-3.1-8b-instruct"]["accuracy"]["math"] == 0.0


def test_one_empty_answer_in_ten_is_not_flagged(tmp_path, run_cli):
    ten = [{**PROMPTS[0], "id": f"mcq-{i}", "prompt": f"Question {i}: pick one."} for i in range(10)]
    llama = FakeModel(answer=lambda p: "" if p.startswith("Question 3:") else right(p))
    result, _, _ = _measure(tmp_path, run_cli, llama, *QUIET,
                            prompts=ten + [{**p, "id": f"math-{i}"} for i, p in enumerate(PROMPTS[4:])])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["warnings"] == [] and "warning" not in result.stderr


def _no_usage(body: dict) -> StreamingResponse:
    """A stream without usage even when asked for it, as llama.cpp's servers send."""
    answer = right(body["messages"][-1]["content"])

    def chunks():
        yield f'data: {json.dumps({"choices": [{"index": 0, "delta": {"content": answer}}]})}\n\n'
        yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\ndata: [DONE]\n\n'

    return StreamingResponse(chunks(), media_type="text/event-stream")


def test_a_server_without_token_counts_is_named_on_the_terminal(tmp_path, run_cli):
    result, _, _ = _measure(tmp_path, run_cli, FakeModel(reply_with=_no_usage), *QUIET)
    assert result.exit_code == 0, result.stderr
    warnings = json.loads(result.stdout)["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith(f"{LLAMA}: the server sent no token counts")
    assert "placeholders" in result.stderr


def test_the_warm_up_asks_its_own_prompt_and_is_not_logged(tmp_path, run_cli):
    result, out, calls = _measure(tmp_path, run_cli, FakeModel(answer=right), "--warmup", "2", "--format", "json")
    assert result.exit_code == 0, result.stderr
    warm = WARMUP_MESSAGES[0]["content"]
    asked = [c.prompt for c in calls if c.model == "llama-a"]
    assert asked[:2] == [warm, warm] and warm not in asked[2:]
    assert [c.body["messages"][0]["content"] for c in calls if c.model == "llama-a"][2:] == \
        [p["prompt"] for p in PROMPTS]
    assert warm not in {p["prompt"] for p in PROMPTS}
    assert len(_records(out)) == 3 * len(PROMPTS) and all(r["answer"] != "OK" for r in _records(out))


def test_a_sample_per_category_is_stratified_seeded_and_in_file_order():
    prompts = load_prompts()
    first = sample_per_category(prompts, 5, seed=7)
    assert first == sample_per_category(prompts, 5, seed=7)
    chosen, notes = first
    assert notes == []
    categories = {p.category for p in prompts}
    assert {c: sum(p.category == c for p in chosen) for c in categories} == {c: 5 for c in categories}
    order = {p.id: i for i, p in enumerate(prompts)}
    assert [order[p.id] for p in chosen] == sorted(order[p.id] for p in chosen)
    assert {p.id for p in sample_per_category(prompts, 5, seed=8)[0]} != {p.id for p in chosen}
    # One category's sample does not depend on the others being there.
    one = [p for p in prompts if p.category == chosen[0].category]
    assert [p.id for p in sample_per_category(one, 5, seed=7)[0]] == \
        [p.id for p in chosen if p.category == chosen[0].category]


def test_per_category_past_what_a_category_has_takes_all_and_says_so(tmp_path, run_cli):
    result, out, _ = _measure(tmp_path, run_cli, FakeModel(answer=right), "--per-category", "3", "--seed", "1",
                              *QUIET, prompts=PROMPTS[:4] + PROMPTS[4:6])
    assert result.exit_code == 0, result.stderr
    ids = {r["prompt_id"] for r in _records(out)}
    assert len([i for i in ids if i.startswith("mcq")]) == 3 and {"math-0", "math-1"} <= ids and len(ids) == 5
    assert "moe2: category 'math' has 2 prompts, fewer than 3: all are used" in result.stderr
    assert json.loads(result.stdout)["prompts"] == 5


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_come_every_tenth_of_the_requests():
    lines: list[str] = []
    progress = ProgressLines("measuring", lines.append, clock=_Clock())
    for done in range(0, 41):
        progress(ProgressEvent("a/x", done, 40))
    assert len(lines) == 10
    assert lines[0].startswith("measuring: 4/40 (10%), 0s elapsed") and lines[-1].startswith("measuring: 40/40 (100%)")


def test_progress_lines_come_every_30_seconds_when_requests_are_slow():
    lines: list[str] = []
    clock = _Clock()
    progress = ProgressLines("measuring", lines.append, clock=clock)
    progress(ProgressEvent("measure", 0, 1000))
    for done, at in ((1, 110.0), (2, 129.0), (3, 131.0), (4, 150.0), (5, 161.5)):
        clock.now = at
        progress(ProgressEvent("a/x", done, 1000))
    assert [line.split(" (")[0] for line in lines] == ["measuring: 3/1000", "measuring: 5/1000"]
    assert lines[0] == "measuring: 3/1000 (0%), 31s elapsed, about 2h51m left; last: a/x"  # 31 s / 3 x 997


def test_a_resumed_run_counts_its_progress_from_where_it_was():
    lines: list[str] = []
    progress = ProgressLines("measuring", lines.append, clock=_Clock())
    for done in range(25, 31):
        progress(ProgressEvent("a/x", done, 100))
    assert [line.split(" (")[0] for line in lines] == ["measuring: 30/100"]


def test_measure_without_a_terminal_prints_progress_lines(tmp_path, run_cli):
    result, _, _ = _measure(tmp_path, run_cli, FakeModel(answer=right), *QUIET)
    assert result.exit_code == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("measuring: ")]
    assert len(progress) == 10 and progress[-1].startswith("measuring: 24/24 (100%)")
