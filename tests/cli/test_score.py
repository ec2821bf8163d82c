"""`moe2 score`: logged answers (served and shadow) scored by feedback, a reference, the shipped
prompt set or a judge, written as outcome rows with missing scores as null."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moe2_cli.cli.score import ReferenceScorer
from moe2_cli.errors import InputError
from moe2_cli.measure.prompts import load_prompts
from moe2_cli.measure.scorers import SCORERS
from moe2_cli.outcomes import read_outcomes
from moe2_cli.scoring.judge import GRADING_SYSTEM, GRADING_USER, parse_verdict
from tests.conftest import ROOT
from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.serve.conftest import write_scenario

SHIPPED = load_prompts()[0]  # an mcq prompt of the shipped set, reference "A"
A, B, C = "orin-1/qwen2.5-7b-instruct", "orin-1/phi-3.5-mini-instruct", "rtx-1/gemma-2-9b-it"


def chat(text: str) -> list[dict]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


def request(rid: str, expert: str, answer: str, text: str, category: str = "mcq", **extra) -> dict:
    return {"id": rid, "completion_id": f"chatcmpl-{rid}", "category": category, "experts": [expert],
            "answer_from": expert, "status": 200, "prompt": chat(text), "answer": [answer], **extra}


def shadow(of: str, expert: str, answer: str, **extra) -> dict:
    return {"shadow": True, "shadow_of": of, "experts": [expert], "answer_from": expert, "answer": [answer], **extra}


def write_log(directory: Path, requests: list[dict], feedback: list[dict] = ()) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in requests))
    if feedback:
        (directory / "feedback.jsonl").write_text("".join(json.dumps(f) + "\n" for f in feedback))
    return directory


def rows(path: Path) -> dict[str, dict]:
    return {row["qid"]: row for row in map(json.loads, path.read_text().splitlines())}


def test_every_answer_is_scored_by_the_best_source_and_the_rest_is_null(run_cli, tmp_path):
    log = write_log(tmp_path / "log", [
        request("q1", A, "The answer is A.", SHIPPED.text, tags=["arc"]),  # the shipped set's reference: A
        shadow("q1", B, "I think (B)"),
        request("q2", A, "Paris", "Capital of France?", category="open_qa"),  # the client scored it
        shadow("q2", C, "It is Paris."),  # the client's reference scores the shadow answer
        request("q3", B, "Lyon", "Capital of France, again?", category="open_qa"),
        shadow("q3", A, "paris"),
        request("q4", C, "no idea", "Something nobody scores", category="open_qa"),
        {"id": "q5", "category": "mcq", "experts": [A], "answer_from": None, "status": 502, "prompt": chat("x")},
        shadow("gone", C, "an answer to a request rotated out of the log"),
    ], feedback=[{"id": "q2", "score": 0.5}, {"id": "q2", "reference": "Paris"},
                 {"id": "chatcmpl-q3", "reference": ["Paris"]}])
    out = tmp_path / "scored.jsonl"
    result = run_cli("score", log, "--out", out, "--format", "json")
    assert result.exit_code == 0, result.output
    got = rows(out)
    llms = ["qwen2.5-7b-instruct", "phi-3.5-mini-instruct", "gemma-2-9b-it"]
    assert set(got) == {"q1", "q2", "q3"}  # q4 has no score at all
    assert got["q1"]["scores"] == dict(zip(llms, [1.0, 0.0, None])) and got["q1"]["tags"] == ["arc"]
    # The client's score counts for the answer it got, its reference for the shadow answer.
    assert got["q2"]["scores"] == dict(zip(llms, [0.5, None, 1.0]))
    assert got["q3"]["scores"] == dict(zip(llms, [1.0, 0.0, None]))  # the reference named by its completion id
    assert got["q1"]["text"] == SHIPPED.text and got["q2"]["category"] == "open_qa"
    payload = json.loads(result.stdout)
    assert payload["scored"] == {"feedback": 1, "prompt-set": 2, "reference": 3}
    assert payload["answers"] == 7 and payload["missing"] == 1 and payload["lines_without_answer"] == 2
    assert payload["queries_without_score"] == 1
    # gemma answered no mcq query: nothing says how it does there, and the table says so.
    assert "moe2: warning: gemma-2-9b-it has no score in category 'mcq'" in result.stderr
    with pytest.raises(InputError, match="no score of 'gemma-2-9b-it' in category 'mcq'"):
        read_outcomes(out)


def test_a_judge_scores_what_no_reference_does_and_unparsable_replies_stay_missing(run_cli, tmp_path):
    def verdict(prompt: str) -> str:
        return {"Paris": "1", "Lyon": " 0\n"}.get(prompt.split("Answer:\n")[1].split("\n")[0], "probably yes")

    log = write_log(tmp_path / "log", [
        request("q1", A, "Paris", "Capital of France?"), shadow("q1", B, "Lyon"), shadow("q1", C, "Marseille"),
        request("q2", B, "The answer is A.", SHIPPED.text),  # the prompt set scores it: the judge is not asked
    ])
    with FakeOpenAI({"gemma-2-9b-it": FakeModel(answer=verdict)}) as judge:
        scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": judge.url})
        out = tmp_path / "scored.jsonl"
        result = run_cli("score", log, "--out", out, "--scenario", scenario, "--judge", C, "--format", "json")
        asked = [c.body["messages"] for c in judge.calls]
    assert result.exit_code == 0, result.output
    assert len(asked) == 3 and all(m[0] == {"role": "system", "content": GRADING_SYSTEM} for m in asked)
    # judge calls run concurrently, so they may arrive in any order
    assert sorted(m[1]["content"] for m in asked) == sorted(
        GRADING_USER.format(question="Capital of France?", answer=a) for a in ("Paris", "Lyon", "Marseille"))
    got = rows(out)
    assert got["q1"]["scores"] == {"qwen2.5-7b-instruct": 1.0, "phi-3.5-mini-instruct": 0.0, "gemma-2-9b-it": None}
    assert got["q2"]["scores"]["phi-3.5-mini-instruct"] == 1.0
    payload = json.loads(result.stdout)
    assert payload["scored"] == {"judge": 2, "prompt-set": 1} and payload["judge_unparsable"] == 1


@pytest.mark.parametrize(("reply", "score"), [("1", 1.0), (" 0\n", 0.0), ("1.", None), ("Yes", None), ("10", None)])
def test_judge_replies_are_read_strictly(reply, score):
    assert parse_verdict(reply) == score


def test_bad_log_lines_are_reported_with_their_place(run_cli, tmp_path):
    log = write_log(tmp_path / "log", [request("q1", A, "x", "t"), {"id": 7, "category": "mcq"},
                                       {**request("q2", A, "x", "t"), "answer": "not a list"}],
                    feedback=[{"id": "q1", "score": 3}])
    (log / "requests.jsonl").write_text((log / "requests.jsonl").read_text() + "{oops\n")
    result = run_cli("score", log, "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2
    requests, feedback = log / "requests.jsonl", log / "feedback.jsonl"
    assert result.stderr.splitlines() == [
        f"{requests}:2: id must be a non-empty string (got 7)",
        f"{requests}:3: answer must be a list of texts (got 'not a list')",
        f"{requests}:4: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{feedback}:1: score must be a number in [0, 1] (got 3)"]
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize(("args", "says"), [
    (("--judge", C), "--judge needs --scenario"),
    (("--scenario", "default"), "--scenario is only used with --judge"),
])
def test_judge_options_go_together(run_cli, tmp_path, args, says):
    log = write_log(tmp_path / "log", [request("q1", A, "x", "t")])
    result = run_cli("score", log, "--out", tmp_path / "o.jsonl", *args)
    assert result.exit_code == 2 and says in result.stderr


def test_a_missing_log_is_one_line(run_cli, tmp_path):
    result = run_cli("score", tmp_path / "nothing", "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and result.stderr.strip() == f"{tmp_path / 'nothing'}: no such log directory or file"


def test_the_reference_scorers_offered_are_the_scorers():
    assert {s.value for s in ReferenceScorer} == set(SCORERS)


def test_the_documentation_shows_the_grading_prompt_verbatim():
    page = (ROOT / "docs" / "serve.md").read_text()
    assert f"```text\n{GRADING_SYSTEM}\n```" in page and f"```text\n{GRADING_USER}\n```" in page


def test_the_other_experts_a_request_called_are_scored_too_and_only_the_returned_one_gets_feedback(run_cli,
                                                                                                  tmp_path):
    log = write_log(tmp_path / "log", [
        request("q1", A, "The answer is A.", SHIPPED.text, other_answers={B: "B", C: None}),
        request("q2", A, "Paris", "Capital of France?", category="open_qa", other_answers={B: "Lyon"}),
    ], feedback=[{"id": "q2", "score": 0.25}])
    out = tmp_path / "scored.jsonl"
    assert run_cli("score", log, "--out", out).exit_code == 0
    got = rows(out)
    assert got["q1"]["scores"] == {"qwen2.5-7b-instruct": 1.0, "phi-3.5-mini-instruct": 0.0, "gemma-2-9b-it": None}
    assert got["q2"]["scores"] == {"qwen2.5-7b-instruct": 0.25, "phi-3.5-mini-instruct": None,
                                   "gemma-2-9b-it": None}
    bad = write_log(tmp_path / "bad", [request("q1", A, "A", SHIPPED.text, other_answers=["B"])])
    result = run_cli("score", bad, "--out", tmp_path / "no.jsonl")
    assert result.exit_code == 2 and "other_answers must map experts to texts" in result.stderr
