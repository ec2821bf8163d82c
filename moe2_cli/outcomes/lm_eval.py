"""Reader for lm-evaluation-harness ``--log_samples`` output (format in docs/outcomes.md).

``lm_eval --output_path OUT --log_samples`` writes, per model, ``OUT/<model>/samples_<task>_<time>.jsonl``
with one object per document: ``doc_id``, ``doc``, ``arguments``, ``filter``, ``metrics`` and one
key per metric (``acc``, ``exact_match``, ...). The directory name is the model name with "/"
replaced by "__"; the LLM is its last part, lower-cased (``Qwen__Qwen2.5-7B-Instruct`` ->
``qwen2.5-7b-instruct``). A query is (task, doc_id) and every model must score every query.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.fileio import exists_as
from moe2_cli.outcomes.builder import TableBuilder
from moe2_cli.outcomes.rows import Problems, as_score, describe, json_lines
from moe2_cli.outcomes.table import Outcomes

# Metrics tried in this order when none is named; the first one a row has is its score.
PREFERRED_METRICS = ("acc", "exact_match", "pass@1", "acc_norm", "em", "f1")
# Fields of ``doc`` that hold the question itself, tried before the rendered prompt, which
# may carry few-shot examples shared by every query.
QUESTION_FIELDS = ("question", "query", "problem", "prompt", "input", "text", "sentence", "ctx", "goal")
_PATTERN = "samples_*.jsonl"
_SAMPLES = re.compile(r"^samples_(?P<task>.+)_(?P<time>\d{4}-\d{2}-\d{2}T[0-9.:-]+)\.jsonl$")


@dataclass(frozen=True)
class _Sample:
    score: float
    text: str
    doc_hash: str | None
    line: int


def llm_name(directory: str) -> str:
    """The LLM key of an lm-eval model directory: the part after the last ``__``, lower-cased."""
    return directory.rsplit("__", 1)[-1].lower()


def read_lm_eval(root: str | Path, task_map: Mapping[str, str] | None = None, metric: str | None = None,
                 filter_name: str | None = None) -> Outcomes:
    """Read every ``samples_*.jsonl`` under ``root``. ``metric`` names the score (default: the
    first of :data:`PREFERRED_METRICS` a row has); ``filter_name`` picks among a task's filters
    (default: the first one in each file); the latest file of each (model, task) wins."""
    root = Path(root)
    files = _latest_files(root)
    per_llm: dict[str, dict[tuple[str, int], _Sample]] = {}
    problems_all: list[Diagnostic] = []
    for (llm, task), path in sorted(files.items()):
        problems = Problems(str(path))
        per_llm.setdefault(llm, {}).update(_read_file(path, task, metric, filter_name, problems))
        problems_all.extend(problems.items)
    if problems_all:
        raise InputError(problems_all)
    return _combine(root, per_llm, files, task_map)


def _latest_files(root: Path) -> dict[tuple[str, str], Path]:
    found: dict[tuple[str, str], Path] = {}
    candidates = sorted(root.rglob(_PATTERN)) if exists_as(root, "dir") else []
    for path in candidates:
        match = _SAMPLES.match(path.name)
        if match is None:
            continue
        key = (llm_name(path.parent.name), match["task"])
        if key not in found or _SAMPLES.match(found[key].name)["time"] < match["time"]:  # type: ignore[index]
            found[key] = path
    if not found:
        what = "is not a directory" if not exists_as(root, "dir") else "holds no samples_<task>_<time>.jsonl files"
        raise InputError(Diagnostic(str(root), None, None, f"lm-eval output {what}"))
    return found


def _read_file(path: Path, task: str, metric: str | None, filter_name: str | None,
               problems: Problems) -> dict[tuple[str, int], _Sample]:
    samples: dict[tuple[str, int], _Sample] = {}
    chosen_filter = filter_name
    for line, row in json_lines(path, "lm-eval samples", problems):
        doc_id = row.get("doc_id")
        if not isinstance(doc_id, int) or isinstance(doc_id, bool) or doc_id < 0:
            problems.add(line, f"doc_id must be a non-negative integer (got {describe(doc_id)})")
            continue
        chosen_filter = chosen_filter or row.get("filter")
        if row.get("filter", chosen_filter) != chosen_filter:
            continue
        score = _score(row, metric, problems, line)
        text = _question(row)
        if score is None:
            continue
        if text is None:
            problems.add(line, "no question text: doc has none of "
                               f"{', '.join(QUESTION_FIELDS)} and arguments hold no prompt")
            continue
        if (task, doc_id) in samples:
            problems.add(line, f"duplicate doc_id {doc_id} (first at line {samples[(task, doc_id)].line})")
            continue
        samples[(task, doc_id)] = _Sample(score, text, row.get("doc_hash"), line)
    return samples


def _score(row: dict[str, Any], metric: str | None, problems: Problems, line: int) -> float | None:
    listed = row.get("metrics")
    listed = listed if isinstance(listed, list) else []  # a malformed list names no metric
    names = [metric] if metric else [m for m in PREFERRED_METRICS if m in row] + listed
    name = next((m for m in names if isinstance(m, str) and m in row), None)
    if name is None:
        wanted = metric or f"one of {', '.join(PREFERRED_METRICS)}"
        problems.add(line, f"no metric value: the row has no {wanted}")
        return None
    score = as_score(row[name])
    if score is None:
        problems.add(line, f"{name} must be a number in [0, 1] (got {describe(row[name])})")
    return score


def _question(row: dict[str, Any]) -> str | None:
    doc = row.get("doc")
    if isinstance(doc, dict):
        for field in QUESTION_FIELDS:
            if isinstance(doc.get(field), str) and doc[field].strip():
                return doc[field]
    return _prompt(row.get("arguments"))


def _prompt(arguments: Any) -> str | None:
    """The first request's context: ``[[ctx, ...], ...]`` or ``{"gen_args_0": {"arg_0": ctx}}``."""
    if isinstance(arguments, dict):
        arguments = [list(a.values()) if isinstance(a, dict) else a for a in arguments.values()]
    if isinstance(arguments, list) and arguments and isinstance(arguments[0], list) and arguments[0]:
        first = arguments[0][0]
        return first if isinstance(first, str) and first.strip() else None
    return None


def _combine(root: Path, per_llm: dict[str, dict[tuple[str, int], _Sample]],
             files: dict[tuple[str, str], Path], task_map: Mapping[str, str] | None) -> Outcomes:
    keys = sorted(set().union(*per_llm.values()))
    llms = sorted(per_llm)
    diagnostics = _coverage_problems(keys, per_llm, files, root)
    for task in sorted({task for task, _ in keys}):
        if task_map and task not in task_map:
            known = ", ".join(sorted(task_map))
            shown = next(path for (_, t), path in sorted(files.items()) if t == task)
            diagnostics.append(Diagnostic(str(shown), None, None,
                                          f"task {task!r} is not in the task map (it maps: {known})"))
    for task, doc_id in keys if not diagnostics else ():
        first = per_llm[llms[0]][(task, doc_id)]
        for llm in llms[1:]:
            other = per_llm[llm][(task, doc_id)]
            if first.doc_hash and other.doc_hash and first.doc_hash != other.doc_hash:
                diagnostics.append(Diagnostic(str(files[(llm, task)]), other.line, None,
                                              f"doc_hash differs from {files[(llms[0], task)]}:{first.line} "
                                              "(different documents under one doc_id)"))
    if diagnostics:
        raise InputError(diagnostics)
    builder = TableBuilder(Problems(str(root)))
    for task, doc_id in keys:
        first = per_llm[llms[0]][(task, doc_id)]
        builder.add(first.line, f"{task}/{doc_id}", task_map[task] if task_map else task,
                    {llm: per_llm[llm][(task, doc_id)].score for llm in llms}, text=first.text, tags=(task,))
    return builder.build(str(root))


def _coverage_problems(keys, per_llm, files, root: Path) -> list[Diagnostic]:
    """One diagnostic per model that lacks queries the other models scored."""
    out = []
    for llm, samples in sorted(per_llm.items()):
        missing = [k for k in keys if k not in samples]
        if missing:
            task, doc_id = missing[0]
            out.append(Diagnostic(str(files.get((llm, task), root / llm)), None, None,
                                  f"model {llm!r} has no score for {len(missing)} queries that other "
                                  f"models scored (first: task {task!r} doc_id {doc_id})"))
    return out
