"""Per-category accuracy and prompt length of the six edge LLMs in the LLMRouter outcomes.

These are the numbers behind the ``accuracy`` blocks of the shipped device profiles (for the
LLMRouter models) and behind the categories' ``prompt_tokens``. The task -> category map is
read from the scenario that ships the outcomes, so the two cannot drift apart.

    python benchmarks/llmrouter_accuracy.py ../shared/data/llmrouter/llmrouter_outcomes.jsonl

The outcomes file is LLMRouter's per-query scores (https://github.com/ulab-uiuc/LLMRouter, MIT);
plain or gzipped JSON lines with ``task``, ``question``, ``choices`` and ``scores``.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import defaultdict
from pathlib import Path

import yaml

EDGE_MODELS = (
    "qwen2.5-7b-instruct",
    "llama-3.1-8b-instruct",
    "mistral-7b-instruct-v0.3",
    "gemma-2-9b-it",
    "codegemma-7b",
    "llama3-chatqa-1.5-8b",
)
DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "examples" / "llmrouter-edge.yaml"
# Rule of thumb for English text with BPE tokenizers; good to about +-20 %.
CHARS_PER_TOKEN = 4
# Chat template plus a one-line instruction ("answer with the letter", "put the answer in
# \boxed{}"); an estimate, the same for every category.
TEMPLATE_TOKENS = 64


def read_rows(path: Path) -> list[dict]:
    """All JSON lines of a plain or gzipped file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]


def prompt_chars(row: dict) -> int:
    """Characters the model reads: the question plus, for multiple choice, the options."""
    choices = row.get("choices")
    return len(row["question"]) + (len(str(choices)) if choices else 0)


def summarise(rows: list[dict], task_map: dict[str, str]) -> dict[str, dict]:
    """Per category: query count, mean score per edge model, mean prompt characters."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["task"] in task_map:
            groups[task_map[row["task"]]].append(row)
    return {
        category: {
            "queries": len(members),
            "scores": {m: sum(r["scores"][m] for r in members) / len(members) for m in EDGE_MODELS},
            "prompt_chars": sum(prompt_chars(r) for r in members) / len(members),
        }
        for category, members in groups.items()
    }


def print_summary(summary: dict[str, dict], categories: list[str]) -> None:
    width = max(len(m) for m in EDGE_MODELS)
    print("mean score per category (LLMRouter outcomes; includes pipeline failures)")
    print(f"{'model':<{width}}  " + "  ".join(f"{c:>8}" for c in categories))
    for model in EDGE_MODELS:
        cells = "  ".join(f"{summary[c]['scores'][model]:8.3f}" for c in categories)
        print(f"{model:<{width}}  {cells}")
    print(f"{'queries':<{width}}  " + "  ".join(f"{summary[c]['queries']:8d}" for c in categories))
    print()
    print(f"prompt length: mean characters / {CHARS_PER_TOKEN} + {TEMPLATE_TOKENS} template tokens")
    for c in categories:
        chars = summary[c]["prompt_chars"]
        tokens = chars / CHARS_PER_TOKEN + TEMPLATE_TOKENS
        print(f"{c:<8} {chars:7.0f} chars  ~{tokens:5.0f} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outcomes", type=Path, help="LLMRouter outcomes (.jsonl or .jsonl.gz)")
    parser.add_argument("--scenario", type=Path, default=DEFAULT_SCENARIO,
                        help="scenario whose outcomes.task_map defines the categories")
    args = parser.parse_args()
    scenario = yaml.safe_load(args.scenario.read_text(encoding="utf-8"))
    summary = summarise(read_rows(args.outcomes), scenario["outcomes"]["task_map"])
    print_summary(summary, [c for c in scenario["categories"] if c in summary])


if __name__ == "__main__":
    main()
