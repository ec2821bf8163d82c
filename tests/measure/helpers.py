"""A two-server fleet on loopback fake servers, and a small labelled prompt set."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.fakes.openai_server import FakeModel

# Two categories, four prompts each; the reference is in the prompt, so fake models can be
# told exactly which ones to get right.
PROMPTS = [{"id": f"mcq-{i}", "category": "mcq", "prompt": f"Question {i}: pick one. A) x B) y C) z",
            "reference": "B", "scorer": "mcq"} for i in range(4)] + \
          [{"id": f"math-{i}", "category": "math", "prompt": f"Sum {i} what is {i} + 40?",
            "reference": str(i + 40), "scorer": "numeric"} for i in range(4)]


def right(prompt: str) -> str:
    """Always correct."""
    if prompt.startswith("Question"):
        return "The answer is B"
    i = int(prompt.split()[1])
    return f"So the result is {i + 40}"


def half_right(prompt: str) -> str:
    """Correct on even-numbered prompts only: accuracy 0.5 in each category."""
    i = int(prompt.split()[1].rstrip(":"))
    return right(prompt) if i % 2 == 0 else ("The answer is C" if prompt.startswith("Question") else "It is 7")


def models(delay_s: float) -> tuple[dict[str, FakeModel], dict[str, FakeModel]]:
    """The models served by server a and by server b."""
    return ({"qwen-a": FakeModel(answer=right, delay_s=delay_s), "llama-a": FakeModel(answer=half_right,
                                                                                        delay_s=delay_s)},
            {"qwen-b": FakeModel(answer=right, delay_s=delay_s)})


def write_prompts(path: Path, prompts=PROMPTS) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return path


def write_scenario(path: Path, url_a: str, url_b: str, power_a: str = "{power: none, watts: 100}",
                   power_b: str = "{power: none, watts: 50}", timeout_s: float = 5.0) -> Path:
    path.write_text(textwrap.dedent(f"""\
        schema_version: 1
        name: fleet
        top_k: 1
        categories:
          mcq: {{share: 0.5}}
          math: {{share: 0.5}}
        budgets: {{energy_j: 1000, latency_s: 30}}
        servers:
          - name: a
            profile: rtx-4090
            llms: [qwen2.5-7b-instruct, llama-3.1-8b-instruct]
            endpoint:
              url: {url_a}
              models: {{qwen2.5-7b-instruct: qwen-a, llama-3.1-8b-instruct: llama-a}}
              timeout_s: {timeout_s}
              {power_a.strip("{}").replace(", ", chr(10) + "              ")}
          - name: b
            profile: rtx-4090
            llms: [qwen2.5-7b-instruct]
            endpoint:
              url: {url_b}
              models: {{qwen2.5-7b-instruct: qwen-b}}
              timeout_s: {timeout_s}
              {power_b.strip("{}").replace(", ", chr(10) + "              ")}
        """))
    return path
