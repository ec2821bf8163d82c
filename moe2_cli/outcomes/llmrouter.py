"""Reader for LLMRouter per-query outcomes (ulab-uiuc/LLMRouter, MIT; see examples/data/SOURCE.md).

One JSON object per line with ``qid``, ``task``, ``question`` and ``scores`` ({LLM: score});
other fields (split, metric, ground truth, ...) are ignored. Tasks become scenario categories
through a task map; :data:`LLMROUTER_TASK_MAP` is the mapping the shipped scenarios use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from moe2_cli.outcomes.builder import TableBuilder
from moe2_cli.outcomes.rows import Problems, as_score, describe, json_lines
from moe2_cli.outcomes.table import Outcomes

LLMROUTER_TASK_MAP = {
    **dict.fromkeys(("arc_challenge", "commonsense_qa", "openbook_qa", "mmlu", "gpqa", "agentverse-logicgrid"), "mcq"),
    **dict.fromkeys(("gsm8k", "math", "agentverse-mgsm"), "math"),
    **dict.fromkeys(("human_eval", "mbpp"), "code"),
    **dict.fromkeys(("natural_qa", "trivia_qa", "commongen"), "open_qa"),
}


def read_llmrouter(path: str | Path, task_map: Mapping[str, str] | None = None) -> Outcomes:
    """Read LLMRouter outcomes; tasks keep their own names when ``task_map`` is empty."""
    problems = Problems(str(path))
    builder = TableBuilder(problems, task_map)
    for line, row in json_lines(path, "outcomes", problems):
        qid, task, question, scores = (row.get(k) for k in ("qid", "task", "question", "scores"))
        for key, value in (("qid", qid), ("task", task), ("question", question)):
            if not isinstance(value, str) or not value:
                problems.add(line, f"{key} must be a non-empty string (got {describe(value)})")
                break
        else:
            _add(builder, line, qid, task, question, scores)  # type: ignore[arg-type]
    return builder.build(str(path))


def _add(builder: TableBuilder, line: int, qid: str, task: str, question: str, scores) -> None:
    if not isinstance(scores, dict) or not scores:
        builder.problems.add(line, f"scores must be an object of model to score (got {describe(scores)})")
        return
    checked = {llm: as_score(v) for llm, v in scores.items()}
    bad = [llm for llm, v in checked.items() if v is None]
    if bad:
        builder.problems.add(line, f"score of {bad[0]!r} must be a number in [0, 1] (got {describe(scores[bad[0]])})")
        return
    category = builder.category(line, task)
    if category is not None:
        builder.add(line, qid, category, checked, text=question, tags=(task,))
