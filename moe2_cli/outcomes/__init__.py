"""Per-query outcomes: the table, its readers and writer, and the synthetic generator."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from pathlib import Path

from moe2_cli import jsontext
from moe2_cli.errors import Diagnostic, InputError, Moe2Warning
from moe2_cli.fileio import exists_as
from moe2_cli.inputs import STDIN, text_lines
from moe2_cli.outcomes.llmrouter import LLMROUTER_TASK_MAP, read_llmrouter
from moe2_cli.outcomes.lm_eval import read_lm_eval
from moe2_cli.outcomes.native import read_csv, read_jsonl, write_outcomes
from moe2_cli.outcomes.synth import SynthModel, synthesize, synthesize_for
from moe2_cli.outcomes.table import Outcomes

FORMATS = ("jsonl", "csv", "llmrouter", "lm-eval")

__all__ = [
    "FORMATS", "LLMROUTER_TASK_MAP", "Outcomes", "SynthModel", "detect_format", "read_csv", "read_jsonl",
    "read_llmrouter", "read_lm_eval", "read_outcomes", "synthesize", "synthesize_for", "write_outcomes",
]


def detect_format(path: str | Path) -> str:
    """A directory is lm-eval output, ``*.csv[.gz]`` is CSV; JSON lines whose first object has
    ``task``, ``question`` and ``scores`` are LLMRouter's, any other JSON lines are moe2's."""
    path = Path(path)
    if exists_as(path, "dir"):
        return "lm-eval"
    if path.name.removesuffix(".gz").endswith(".csv"):
        return "csv"
    with contextlib.closing(text_lines(path, "outcomes")) as lines:
        first = next((line for _, line in lines if line.strip()), "")
    try:
        row = jsontext.loads(first)
    except (ValueError, RecursionError):
        return "jsonl"  # the JSONL reader reports the bad line
    return "llmrouter" if isinstance(row, dict) and {"task", "question", "scores"} <= set(row) else "jsonl"


def read_outcomes(path: str | Path, format: str | None = None, task_map: Mapping[str, str] | None = None) -> Outcomes:
    """Read outcomes in ``format`` (detected when None). LLMRouter tasks map through
    :data:`LLMROUTER_TASK_MAP` unless ``task_map`` is given."""
    if str(path) == STDIN:  # read twice (its format, then its rows): standard input would lose the first
        raise InputError(Diagnostic("<stdin>", None, None, "outcomes cannot come from standard input; give a file"))
    format = format or detect_format(path)
    if format not in FORMATS:
        raise InputError(Diagnostic(str(path), None, None, f"unknown outcomes format {format!r} "
                                    f"(known: {', '.join(FORMATS)})"))
    if format == "llmrouter":
        return read_llmrouter(path, task_map or LLMROUTER_TASK_MAP)
    if format == "lm-eval":
        return read_lm_eval(path, task_map)
    if not exists_as(path):
        raise InputError(Diagnostic(str(path), None, None, "outcomes file not found"))
    table = (read_csv if format == "csv" else read_jsonl)(path, task_map)
    if table.n_missing:
        warnings.warn(f"{path}: {table.n_missing} of {table.scores.size} scores are missing; F counts each as its "
                      "LLM's mean score in the query's category (docs/outcomes.md)", Moe2Warning, stacklevel=2)
    return table
