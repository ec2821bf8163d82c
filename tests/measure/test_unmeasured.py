"""An LLM that no profile knows yet, on a server with an endpoint: measure makes its profile,
and every other command says it is not measured yet, with its place in the file."""

from __future__ import annotations

import json

import yaml

from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.measure.helpers import PROMPTS, models, right, write_prompts, write_scenario

NEW = "gemma-3-270m"


def _scenario(tmp_path, url_a: str, url_b: str):
    """The test fleet with a new LLM on server a, which its profile (rtx-4090) does not list."""
    path = write_scenario(tmp_path / "fleet.yaml", url_a, url_b)
    text = path.read_text().replace("llms: [qwen2.5-7b-instruct, llama-3.1-8b-instruct]",
                                    f"llms: [qwen2.5-7b-instruct, {NEW}]")
    path.write_text(text.replace("llama-3.1-8b-instruct: llama-a", f"{NEW}: gemma-a"))
    return path


def _place(path, needle: str) -> str:
    """``line:col`` (1-based) of the first occurrence of ``needle`` in the file."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return f"{number}:{line.index(needle) + 1}"
    raise AssertionError(needle)


def test_a_new_llm_is_measured_then_selected_with_no_hand_written_profile(tmp_path, run_cli):
    served_a, served_b = models(0.0)
    del served_a["llama-a"]
    served_a["gemma-a"] = FakeModel(answer=right)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = _scenario(tmp_path, a.url, b.url)
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", write_prompts(tmp_path / "p.jsonl"),
                         "--warmup", "0", "--format", "json")
        assert result.exit_code == 0, result.stderr
        assert {c.model for c in a.calls} == {"qwen-a", "gemma-a"}
    experts = {row["expert"] for row in json.loads(result.stdout)["experts"]}
    assert f"a/{NEW}" in experts
    profile = yaml.safe_load((out / "profiles" / "a.yaml").read_text())
    assert profile["llms"][NEW]["accuracy"] == {"mcq": 1.0, "math": 1.0, "metric": profile["llms"][NEW]["accuracy"]
                                                ["metric"]}
    assert run_cli("validate", out / "scenario.yaml", *sorted((out / "profiles").glob("*.yaml"))).exit_code == 0
    selected = run_cli("select", out / "scenario.yaml", "--format", "json")
    assert selected.exit_code == 0, selected.stderr
    assert json.loads(selected.stdout)


def test_other_commands_say_a_new_llm_is_not_measured_yet_and_where(tmp_path, run_cli):
    scenario = _scenario(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    place = _place(scenario, NEW)
    for command in ("validate", "select"):
        result = run_cli(command, scenario)
        assert result.exit_code == 2, (command, result.stderr)
        assert f"{scenario}:{place}: LLM '{NEW}' is not measured yet: profile 'rtx-4090' has no entry for it" \
            in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_a_new_llm_on_a_server_without_an_endpoint_is_still_unknown(tmp_path, run_cli):
    scenario = _scenario(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9")
    text = scenario.read_text()
    start = text.index("    endpoint:")
    end = text.index("  - name: b")
    scenario.write_text(text[:start] + text[end:])
    result = run_cli("measure", scenario, "--out", tmp_path / "out", "--prompts",
                     write_prompts(tmp_path / "p.jsonl", PROMPTS))
    assert result.exit_code == 2
    assert f"unknown LLM '{NEW}' for profile 'rtx-4090'" in result.stderr and "not measured" not in result.stderr
