"""Derive the default prompt set of ``moe2 measure`` from LLMRouter's questions and answers.

Draws 40 prompts per category of examples/llmrouter-edge.yaml (seeded, spread over the tasks
that map to it) and writes examples/data/llmrouter-prompts.jsonl.gz. Scorers: mcq for the
multiple-choice tasks, numeric for maths with a plain-number answer, f1 for open questions, and
for code only ``contains`` of the required function signature (generated code is never run, so
a code prompt checks that the answer defines the function the test calls, not that it works).
Trivia prompts carry ``references``: the accepted answer (``CANONICAL``), then the dataset's.
The gzip header has no time or name, so the same input gives the same bytes.

    python benchmarks/make_measure_prompts.py ../shared/data/llmrouter/llmrouter_outcomes.jsonl \\
        examples/data/llmrouter-prompts.jsonl.gz
"""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import numpy as np
from shipped_data import write_gzip  # beside this script

from moe2_cli.measure.scorers.numeric import last_boxed

PER_CATEGORY = 40
SEED = 0
# category -> (tasks, prompts per task), in the order written
PLAN = {
    "mcq": {"arc_challenge": 7, "commonsense_qa": 7, "openbook_qa": 7, "mmlu": 7, "gpqa": 6,
            "agentverse-logicgrid": 6},
    "math": {"gsm8k": 14, "agentverse-mgsm": 13, "math": 13},
    "code": {"mbpp": 40},
    "open_qa": {"natural_qa": 20, "trivia_qa": 20},
}
MAX_TOKENS = {"mcq": 256, "math": 1024, "code": 512, "open_qa": 64}
# The commonly accepted answers to the trivia_qa questions the seed above picks, checked by hand.
# The source keeps one ground_truth per question, often an odd alias of the answer ("napigator"
# for Napster), which F1 scores a right answer against as wrong. Each prompt's references are
# this answer first, then the dataset's string exactly as given (dropped when it is the same text).
CANONICAL = {
    "train-01012": "Napster",
    "train-01040": "Charge",
    "train-01072": "Chickenpox",
    "train-01114": "Tony Bennett",
    "train-01138": "Simon and Garfunkel",
    "train-01181": "1891",
    "train-01199": "Nine of diamonds",
    "train-01218": "Rikki-Tikki-Tavi",
    "train-01238": "Heimlich manoeuvre",
    "train-01272": "Native New Yorker",
    "train-01293": "Pool",
    "train-01305": "Cricket",
    "train-01312": "Henry IV",
    "train-01346": "Halogens",
    "train-01396": "Steeplechase",
    "train-01401": "Frankfurt",
    "train-01409": "Lionesses",
    "train-01421": "George Michael",
    "train-01468": "Nitrous oxide",
    "train-01470": "John Williams",
}
_PLAIN_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")
_CALLED = re.compile(r"assert\s+(?:\w+\()?\s*([A-Za-z_]\w*)\(")
_NOT_THE_FUNCTION = {"set", "sorted", "list", "tuple", "round", "abs", "math", "str", "int", "float", "len", "all"}


def _options(choices) -> list[str]:
    parsed = ast.literal_eval(choices) if isinstance(choices, str) else choices
    if isinstance(parsed, dict):
        return [str(t).strip() for t in parsed["text"]]
    return [str(t).strip() for t in parsed]


def mcq(row) -> dict | None:
    options = _options(row["choices"])
    letters = "ABCDEFGHIJ"[: len(options)]
    if row["ground_truth"] not in letters:
        return None
    listed = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, options))
    return {"prompt": f"{row['question'].strip()}\n\n{listed}\n\nAnswer with the letter of the correct option.",
            "reference": row["ground_truth"], "scorer": "mcq"}


def math(row) -> dict | None:
    truth = row["ground_truth"]
    if row["task"] == "gsm8k":
        answer = truth.split("####")[-1].strip().replace(",", "")
    elif row["task"] == "math":
        boxed = last_boxed(truth)
        answer = (boxed[1] if boxed else "").strip()
    else:
        answer = truth.strip()
    if not _PLAIN_NUMBER.match(answer):
        return None
    question = row["question"].strip()
    if "boxed" not in question:
        question += "\nAfter careful thought, put your final answer in \\boxed{...}."
    return {"prompt": question, "reference": answer, "scorer": "numeric"}


def code(row) -> dict | None:
    tests = ast.literal_eval(row["ground_truth"])
    called = _CALLED.match(tests[0].strip())
    if not called or called.group(1) in _NOT_THE_FUNCTION:
        return None
    return {"prompt": f"Write a Python function for this task.\n{row['question'].strip()}\n"
                      f"Your code should pass this test:\n{tests[0].strip()}",
            "reference": f"def {called.group(1)}(", "scorer": "contains"}


def open_qa(row) -> dict | None:
    given = row["ground_truth"].strip()
    canonical = CANONICAL.get(row["qid"], given)
    references = [canonical] + ([given] if given.lower() != canonical.lower() else [])
    return {"prompt": f"{row['question'].strip()}\nAnswer with a short phrase only.",
            "reference": references if len(references) > 1 else given, "scorer": "f1"}


BUILD = {"mcq": mcq, "math": math, "code": code, "open_qa": open_qa}


def derive(source: Path) -> bytes:
    rows = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = np.random.default_rng(SEED)
    lines = []
    for category, tasks in PLAN.items():
        for task, count in tasks.items():
            eligible = []
            for row in sorted((r for r in rows if r["task"] == task), key=lambda r: r["qid"]):
                built = BUILD[category](row)
                if built is not None:
                    eligible.append((row, built))
            for i in sorted(rng.choice(len(eligible), size=count, replace=False)):
                row, built = eligible[i]
                reference = built["reference"]
                prompt = {"id": f"{task}/{row['qid']}", "category": category, "prompt": built["prompt"],
                          **({"references": reference} if isinstance(reference, list) else {"reference": reference}),
                          "scorer": built["scorer"],
                          "max_tokens": MAX_TOKENS[category], "source": f"LLMRouter train {row['qid']} ({task})"}
                lines.append(json.dumps(prompt, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="llmrouter_outcomes.jsonl (with ground_truth and choices)")
    parser.add_argument("out", type=Path, help="where to write the .jsonl.gz")
    args = parser.parse_args()
    write_gzip(args.out, derive(args.source), "prompts")


if __name__ == "__main__":
    main()
