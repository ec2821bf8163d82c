"""moe2 measure never records a failure as a success: replies that are not completions, power
readings that cannot be true and log lines of the wrong types, each through the real command."""

from __future__ import annotations

import json

import pytest
import yaml
from starlette.responses import StreamingResponse

from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.measure.helpers import AGX_ORIN, PROMPTS, fake_tegrastats, models, right, write_prompts, write_scenario

TWO_PROMPTS = PROMPTS[:1] + PROMPTS[4:5]
FAST = ("--warmup", "0", "--retries", "1", "--retry-wait", "0.01", "--format", "json")
LLAMA = "a/llama-3.1-8b-instruct"
# Chunk shapes no OpenAI-compatible server sends; each used to end the whole run with exit 70.
MALFORMED = ['[]', '"text"', '{"choices": "x"}', '{"choices": [1]}', '{"choices": [{"delta": "x"}]}',
             '{"choices": [{"delta": {"content": 5}}]}', '{"choices": [{"delta": {}, "finish_reason": 3}]}',
             '{"choices": [], "usage": 7}', '{"choices": [{"delta": {"content": "x"}}', '[' * 5000]


def _dropped(body: dict) -> StreamingResponse:
    """A stream whose server drops the connection after its first token, as a single-slot
    llama.cpp server does to a running request when another arrives."""
    async def chunks():
        yield 'data: {"choices": [{"index": 0, "delta": {"content": "The answer"}, "finish_reason": null}]}\n\n'
        raise ConnectionResetError("the slot went to another request")

    return StreamingResponse(chunks(), media_type="text/event-stream")


def _records(out):
    lines = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    return [line for line in lines if line["kind"] == "request"]


def _measure(tmp_path, run_cli, llama: FakeModel, *args):
    """The test fleet with ``llama`` as server a's second model; the result and the out folder."""
    served_a, served_b = models(0.0)
    served_a["llama-a"] = llama
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", write_prompts(tmp_path / "p.jsonl",
                                                                                         TWO_PROMPTS), *FAST, *args)
        return result, out, len(a.calls)


@pytest.mark.parametrize("llama, reason", [
    (FakeModel(answer=right, fail="garbage"), "not_sse"),
    (FakeModel(answer=right, fail="error200"), "error_body"),
    (FakeModel(answer=right, fail="unterminated"), "cut"),
    (FakeModel(answer=right, reply_with=_dropped), "cut"),
    (FakeModel(answer=right, fail="huge", huge_bytes=16 << 20), "too_large"),
    *[(FakeModel(answer=right, fail="malformed", bad_chunk=chunk), "malformed_chunk") for chunk in MALFORMED],
], ids=["plain-text", "error-object", "no-terminal", "dropped-connection", "huge",
        *[f"chunk{i}" for i in range(len(MALFORMED))]])
def test_a_reply_that_is_not_a_completion_is_a_failure_and_the_run_goes_on(tmp_path, run_cli, llama, reason):
    result, out, calls = _measure(tmp_path, run_cli, llama)
    # qwen's two prompts; llama's first twice (one retry), and past 5 % of two prompts its second is skipped
    assert calls == 2 + 2
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert f"moe2: {LLAMA} gets no profile entry: 1 of 2 requests failed ({reason} 1)" in result.stderr
    llama = [r for r in _records(out) if r["llm"] == "llama-3.1-8b-instruct"]
    assert [(r["ok"], r["reason"], r["attempts"], r["score"]) for r in llama] == [(False, reason, 2, 0.0)]
    others = [r for r in _records(out) if r["llm"] != "llama-3.1-8b-instruct"]
    assert len(others) == 4 and all(r["ok"] and r["score"] == 1.0 for r in others)
    assert list(yaml.safe_load((out / "profiles" / "a.yaml").read_text())["llms"]) == ["qwen2.5-7b-instruct"]
    rows = {(row["expert"], row["category"]): row for row in json.loads(result.stdout)["experts"]}
    assert rows[(LLAMA, "mcq")]["failed"] == f"{reason} 1" and rows[(LLAMA, "mcq")]["profile"].startswith("no: ")


def test_every_expert_answering_plain_text_writes_nothing_and_names_them_all(tmp_path, run_cli):
    served_a, served_b = models(0.0)
    for model in (*served_a.values(), *served_b.values()):
        model.fail = "garbage"
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", write_prompts(tmp_path / "p.jsonl"),
                         "--max-failure-rate", "1", *FAST)
    assert result.exit_code == 1, result.stderr
    assert not any(r["ok"] for r in _records(out)) and len(_records(out)) == 3 * len(PROMPTS)
    assert not (out / "profiles").exists() and not (out / "scenario.yaml").exists()
    for expert in (LLAMA, "a/qwen2.5-7b-instruct", "b/qwen2.5-7b-instruct"):
        assert f"{expert}: no successful request in category" in result.stderr


def test_a_server_that_ignores_stream_is_measured_from_its_whole_completion(tmp_path, run_cli):
    result, out, _ = _measure(tmp_path, run_cli, FakeModel(answer=right, ignores_stream=True))
    assert result.exit_code == 0, result.stderr
    llama = [r for r in _records(out) if r["llm"] == "llama-3.1-8b-instruct"]
    assert [(r["ok"], r["score"], r["ttft_s"]) for r in llama] == [(True, 1.0, None)] * 2
    accuracy = yaml.safe_load((out / "profiles" / "a.yaml").read_text())["llms"]["llama-3.1-8b-instruct"]["accuracy"]
    assert (accuracy["mcq"], accuracy["math"]) == (1.0, 1.0)


def test_a_rail_too_large_for_a_float_fails_that_servers_requests_not_the_run(tmp_path, monkeypatch, run_cli):
    """A tegrastats that gives one good line, then a 400-digit rail: the readings are dropped,
    the requests they alone cover fail with reason power, and no profile holds an infinity."""
    bad = AGX_ORIN.replace("VDD_GPU_SOC 3150mW", "VDD_GPU_SOC " + "9" * 400 + "mW")
    fake_tegrastats(tmp_path, monkeypatch, AGX_ORIN, then=bad)
    served_a, served_b = models(0.05)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url,
                                  power_a="{power: tegrastats, tegrastats_interval_ms: 10}")
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", write_prompts(tmp_path / "p.jsonl",
                                                                                         TWO_PROMPTS), *FAST)
    assert result.exit_code == 1, result.stderr
    for expert in ("a/qwen2.5-7b-instruct", LLAMA):
        assert f"moe2: {expert} gets no profile entry: 1 of 2 requests failed (power 1)" in result.stderr
    failed = [r for r in _records(out) if r["server"] == "a"]
    assert failed and all(not r["ok"] and r["reason"] == "power" and r["energy_j"] is None for r in failed)
    assert "out of range dropped (the last: inf W" in failed[0]["error"]
    assert not (out / "profiles" / "a.yaml").exists()
    assert list(yaml.safe_load((out / "profiles" / "b.yaml").read_text())["llms"]) == ["qwen2.5-7b-instruct"]
    assert run_cli("validate", out / "scenario.yaml", out / "profiles" / "b.yaml").exit_code == 0


def test_a_power_source_without_one_valid_reading_is_refused_before_any_prompt(tmp_path, monkeypatch, run_cli):
    fake_tegrastats(tmp_path, monkeypatch, AGX_ORIN.replace("VDD_CPU_CV 14312mW", "VDD_CPU_CV " + "9" * 400 + "mW"))
    served_a, served_b = models(0.0)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url,
                                  power_a="{power: tegrastats, tegrastats_interval_ms: 10}")
        result = run_cli("measure", scenario, "--out", tmp_path / "out", "--prompts",
                         write_prompts(tmp_path / "p.jsonl", TWO_PROMPTS), *FAST)
        assert a.calls == [] and b.calls == []
    assert result.exit_code == 2
    assert "server 'a': power tegrastats: no valid power reading; " in result.stderr
    assert "out of range dropped (the last: inf W" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("field, value, message", [
    ("ok", "yes", 'ok must be true or false (got "yes")'),
    ("energy_j", "x", 'energy_j must be a finite number >= 0 or null (got "x")'),
    ("latency_s", -1, "latency_s must be a finite number >= 0 (got -1)"),
    ("score", 2, "score must be a number in [0, 1] (got 2)"),
    ("attempts", 1.5, "attempts must be a whole number >= 0 (got 1.5)"),
    ("server", None, "server must be text (got null)"),
])
def test_resume_refuses_a_log_line_of_the_wrong_types_with_its_place(tmp_path, run_cli, field, value, message):
    served_a, served_b = models(0.0)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        prompts = write_prompts(tmp_path / "p.jsonl", TWO_PROMPTS)
        out = tmp_path / "out"
        assert run_cli("measure", scenario, "--out", out, "--prompts", prompts, *FAST).exit_code == 0
        log = out / "requests.jsonl"
        lines = log.read_text().splitlines()
        row = json.loads(lines[3])
        row[field] = value
        lines[3] = json.dumps(row)
        log.write_text("\n".join(lines) + "\n")
        result = run_cli("measure", scenario, "--out", out, "--prompts", prompts, "--resume", *FAST)
    assert result.exit_code == 2
    assert result.stderr == f"{log}:4: not a moe2 measure log line ({message})\n"
