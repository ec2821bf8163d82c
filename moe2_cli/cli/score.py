"""`moe2 score`: the answers of a request log, scored, as outcome rows."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from moe2_cli.cli.common import handles_errors, plural, progress_bar, report
from moe2_cli.cli.options import Choice, FormatOpt, OutputFormat
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import UsageError
from moe2_cli.fileio import check_writable

if TYPE_CHECKING:
    from moe2_cli.scoring import Scored


class ReferenceScorer(Choice):
    contains = "contains"
    exact = "exact"
    f1 = "f1"
    mcq = "mcq"
    numeric = "numeric"


@handles_errors
def score(
    log: Annotated[Path, typer.Argument(help="A `moe2 serve --log` directory (requests.jsonl, its rotations and "
                                             "feedback.jsonl), or one requests file.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Outcome file to write (moe2's JSONL format; a missing "
                                                          "score is null).", show_default=False)],
    scenario: Annotated[Path | None, typer.Option("--scenario", help="Scenario whose expert --judge names.")] = None,
    judge: Annotated[str | None, typer.Option("--judge", help="Expert (server/llm) of --scenario that grades "
                                                              "answers no reference scores, with the grading "
                                                              "prompt of docs/serve.md.")] = None,
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Prompt set whose references score queries with "
                                                                   "the same text; the shipped set when omitted.")
                       ] = None,
    reference_scorer: Annotated[ReferenceScorer, typer.Option("--reference-scorer", help="How an answer is "
                                                              "scored against a client's reference answer.")
                                ] = ReferenceScorer.contains,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Judge calls in flight at once.")] = 4,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries of a judge call after a 5xx, 429, "
                                                                  "timeout or dropped connection.")] = 2,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Score every answer in a request log (the served ones and shadow answers) by the client's
    feedback, a reference answer, a prompt set's reference or a judge, and write one outcome row
    per query for `select --outcomes`, `gating train` and `gating eval`.

    Example: moe2 score logs/ --out scored.jsonl --scenario fleet.yaml --judge rtx-1/qwen2.5-7b-instruct
    """
    from moe2_cli.scoring import ScoreSettings, score_log, write_rows  # httpx: this command only

    check_writable(out, "out")
    settings = ScoreSettings(prompts=prompts, reference_scorer=reference_scorer.value,
                             judge=_judge(scenario, judge), concurrency=concurrency, attempts=retries + 1)
    with progress_bar("judging") as progress:
        result = score_log(log, settings, progress=progress)
    write_rows(result.rows, out)
    _report(result, out, format)


def _judge(scenario: Path | None, expert: str | None):
    if expert is None:
        if scenario is not None:
            raise UsageError("--scenario is only used with --judge (give the judge expert too)")
        return None
    if scenario is None:
        raise UsageError("--judge needs --scenario (the scenario that says where the expert answers)")
    from moe2_cli.scenario.scenario import load_scenario
    from moe2_cli.scoring.judge import find_judge

    return find_judge(load_scenario(scenario), expert)


def _summary(result: Scored) -> list[dict]:
    """Per LLM and category: the queries with a score and their mean score."""
    got: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in result.rows:
        for llm, value in row["scores"].items():
            values = got[(llm, row["category"])]  # an LLM without a score in a category still gets a row
            if value is not None:
                values.append(value)
    return [{"llm": llm, "category": category, "scored": len(values),
             "mean_score": sum(values) / len(values) if values else None}
            for (llm, category), values in sorted(got.items())]


def _report(result: Scored, out: Path, format: OutputFormat) -> None:
    rows = _summary(result)
    payload = {"out": str(out), "queries": len(result.rows), "answers": result.answers,
               "scored": dict(sorted(result.by_source.items())), "missing": result.missing,
               "judge_unparsable": result.unparsable, "judge_failed": result.judge_failed,
               "lines_without_answer": result.skipped_lines, "queries_without_score": result.unscored_queries,
               "llms": rows}
    columns = [Column("llm", "LLM", justify="left"), Column("category", "category", justify="left"),
               Column("scored", "scored"),
               Column("mean_score", "mean score", lambda x: "-" if x is None else f"{x:.3f}")]
    sources = ", ".join(f"{n} by {s}" for s, n in sorted(result.by_source.items())) or "none scored"
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{out}: {plural(len(result.rows), 'query', 'queries')} from {plural(result.answers, 'answer')} "
               f"({sources}; {result.missing} missing, {result.unparsable} unparsable judge replies)")
    for row in rows:
        if not row["scored"]:  # the outcome readers refuse this: a missing score needs a category mean
            report(f"warning: {row['llm']} has no score in category {row['category']!r}: select and gating "
                   "refuse the file until it has one there")
