"""measure sends each prompt with max_tokens at most its category's cap, and writes the caps
it measured with into the scenario it writes, so serve caps answers alike."""

from __future__ import annotations

import yaml

from moe2_cli.scenario.caps import DEFAULT_MAX_TOKENS
from moe2_cli.scenario.scenario import load_scenario
from tests.fakes.openai_server import FakeOpenAI
from tests.measure.helpers import PROMPTS, models, write_prompts, write_scenario


def test_prompts_are_capped_per_category_and_the_caps_written(tmp_path, run_cli):
    served_a, served_b = models(0.0)
    # A prompt's own limit is kept when it is lower than the cap; a missing one becomes the cap.
    chosen = [{**PROMPTS[0], "max_tokens": 1000}, {**PROMPTS[1], "max_tokens": 8}, PROMPTS[4]]
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        out = tmp_path / "out"
        result = run_cli("measure", scenario, "--out", out, "--prompts", write_prompts(tmp_path / "p.jsonl", chosen),
                         "--warmup", "0", "--max-tokens", "math=100", "--format", "json")
        assert result.exit_code == 0, result.stderr
        sent = {(c.model, c.prompt): c.body["max_tokens"] for c in a.calls + b.calls}
    assert set(sent.values()) == {DEFAULT_MAX_TOKENS["mcq"], 8, 100}
    for model in ("qwen-a", "llama-a", "qwen-b"):
        assert [sent[(model, p["prompt"])] for p in chosen] == [DEFAULT_MAX_TOKENS["mcq"], 8, 100]
    written = yaml.safe_load((out / "scenario.yaml").read_text())
    assert {c: v["max_tokens"] for c, v in written["categories"].items()} == {"mcq": 32, "math": 100}
    assert load_scenario(out / "scenario.yaml").max_tokens == {"mcq": 32, "math": 100}


def test_a_bad_cap_is_one_line_before_any_request(tmp_path, run_cli):
    served_a, served_b = models(0.0)
    with FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url)
        result = run_cli("measure", scenario, "--out", tmp_path / "out", "--max-tokens", "maths=5")
        assert not a.calls and not b.calls
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "moe2: --max-tokens names unknown category 'maths' (did you mean 'math'?) (categories: mcq, math)"]
