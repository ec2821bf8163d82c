"""Derive examples/data/llmrouter-outcomes.jsonl.gz from LLMRouter's joined outcomes.

Keeps, per query, the id, the task, the question text and the scores of the six edge-sized
models; drops the three large models and every other field. The gzip header carries no time
or name, so the same input always gives the same bytes.

    python benchmarks/make_llmrouter_data.py ../shared/data/llmrouter/llmrouter_outcomes.jsonl \
        examples/data/llmrouter-outcomes.jsonl.gz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from shipped_data import write_gzip  # beside this script

EDGE_MODELS = ("qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "mistral-7b-instruct-v0.3", "gemma-2-9b-it",
               "codegemma-7b", "llama3-chatqa-1.5-8b")


def derive(source: Path) -> bytes:
    lines = []
    for raw in source.read_text(encoding="utf-8").splitlines():
        row = json.loads(raw)
        kept = {"qid": row["qid"], "task": row["task"], "question": row["question"],
                "scores": {m: row["scores"][m] for m in EDGE_MODELS}}
        lines.append(json.dumps(kept, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="llmrouter_outcomes.jsonl")
    parser.add_argument("out", type=Path, help="where to write the .jsonl.gz")
    args = parser.parse_args()
    write_gzip(args.out, derive(args.source), "queries")


if __name__ == "__main__":
    main()
