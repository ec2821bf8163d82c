"""`moe2 measure`: measured profiles, outcomes and a scenario from the scenario's own endpoints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from moe2_cli.cli.common import handles_errors, plural, progress_bar
from moe2_cli.cli.options import FormatOpt, MaxTokensOpt, OutputFormat, SeedOpt
from moe2_cli.cli.render import Column, emit
from moe2_cli.errors import EXIT_UNMET

if TYPE_CHECKING:
    from moe2_cli.measure import MeasureResult


@handles_errors
def measure_command(
    scenario: Annotated[Path, typer.Argument(help="Scenario whose servers carry endpoint blocks.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for requests.jsonl, profiles/, outcomes.jsonl "
                                                          "and scenario.yaml.", show_default=False)],
    prompts: Annotated[Path | None, typer.Option("--prompts", help="Prompt set (JSONL: id, category, messages or "
                                                                   "prompt, reference, scorer); the shipped "
                                                                   "LLMRouter set when omitted.")] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="Requests in flight at once.")] = 1,
    max_failure_rate: Annotated[float, typer.Option("--max-failure-rate", min=0.0, max=1.0,
                                                    help="Share of an expert's requests that may fail, with it "
                                                         "still getting a profile entry; past it the run exits 1."
                                                    )] = 0.05,
    latency_quantile: Annotated[float, typer.Option("--latency-quantile", min=0.0, max=1.0,
                                                    help="Quantile of the request latencies written as latency_s.")
                                ] = 0.9,
    idle_baseline: Annotated[float, typer.Option("--idle-baseline", min=0.0, help="Measure each server's idle "
                                                                                  "power for this many seconds "
                                                                                  "first.")] = 0.0,
    subtract_idle: Annotated[bool, typer.Option("--subtract-idle", help="Subtract the idle power from each "
                                                                        "request's energy.")] = False,
    retries: Annotated[int, typer.Option("--retries", min=0, help="Retries after a 5xx, 429, timeout, dropped "
                                                                  "connection or a 200 that is not a completion.")] = 2,
    retry_wait: Annotated[float, typer.Option("--retry-wait", min=0.0, help="Seconds before the first retry; it "
                                                                            "doubles, up to 8 s.")] = 0.5,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Unlogged requests per expert before its first "
                                                                "(loads the model).")] = 1,
    max_tokens: MaxTokensOpt = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from DIR/requests.jsonl.")
                      ] = False,
    per_category: Annotated[int | None, typer.Option("--per-category", min=1, help="Measure a seeded sample of N "
                                                                                   "prompts of each category "
                                                                                   "(all of them by default).",
                                                     show_default=False)] = None,
    seed: SeedOpt = 0,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Send every prompt to every expert, with streaming, and write measured profiles (latency at a
    quantile, mean J/query, accuracy), per-query outcomes and a scenario that uses them.

    Example: moe2 measure fleet.yaml --out measured/ && moe2 select measured/scenario.yaml
    """
    from moe2_cli.measure import MeasureInterrupted, MeasureSettings, Retry, measure  # httpx: this command only

    settings = MeasureSettings(prompts=prompts, concurrency=concurrency, retry=Retry(attempts=retries + 1,
                               backoff_s=retry_wait), max_failure_rate=max_failure_rate,
                               latency_quantile=latency_quantile,
                               idle_baseline_s=idle_baseline, subtract_idle=subtract_idle, warmup=warmup,
                               resume=resume, per_category=per_category, seed=seed,
                               max_tokens=tuple(max_tokens or ()))
    with progress_bar("measuring", lines=True) as progress:
        try:
            result = measure(scenario, out, settings, progress=progress)
        except MeasureInterrupted as err:
            raise MeasureInterrupted(f"{err}; run the same command with --resume to continue") from None
    _report(result, format)
    if result.excluded:
        raise typer.Exit(EXIT_UNMET)


def _rows(result: MeasureResult) -> list[dict]:
    from moe2_cli.measure.summary import describe_reasons

    return [{"expert": f"{e.server}/{e.llm}", "model": e.model, "category": category, "requests": c.requests,
             "failures": c.failures, "empty": c.empty, "p50_s": c.latency_p50_s, "p90_s": c.latency_p90_s,
             "ttft_p50_s": c.ttft_p50_s,
             "energy_j": c.energy_j, "accuracy": c.accuracy, "failed": describe_reasons(c.reasons),
             "profile": "no: " + e.excluded if e.excluded else "yes"}
            for e in result.experts for category, c in e.categories.items()]


def _warnings(result: MeasureResult) -> list[str]:
    """Experts whose numbers need a second look: many empty answers, or no token counts."""
    lines = [f"{e.server}/{e.llm}: {e.empty_warning}" for e in result.experts if e.empty_warning]
    silent = [f"{e.server}/{e.llm}" for e in result.experts if e.requests > e.failures and not e.token_counts]
    if silent:
        lines.append(f"{', '.join(silent)}: the server sent no token counts (usage) while streaming, as llama.cpp "
                     f"does; the profiles' prompt and output lengths are placeholders")
    return lines


def _report(result: MeasureResult, format: OutputFormat) -> None:
    rows = _rows(result)
    seconds = lambda x: f"{x:.3f}"  # noqa: E731
    columns = [Column("expert", "expert", justify="left"), Column("category", "category", justify="left"),
               Column("requests", "requests"), Column("failures", "failures"), Column("empty", "empty"),
               Column("p50_s", "p50 s", seconds),
               Column("p90_s", "p90 s", seconds), Column("ttft_p50_s", "TTFT p50 s", seconds),
               Column("energy_j", "J/query", lambda x: f"{x:.2f}"),
               Column("accuracy", "accuracy", lambda x: f"{x:.3f}"),
               Column("failed", "why failed", justify="left", no_wrap=True),
               Column("profile", "profile", justify="left")]
    warnings = _warnings(result)
    payload = {"scenario": result.scenario, "out": str(result.out_dir), "prompts": result.prompts,
               "new_requests": result.new_requests, "idle_watts": result.idle_watts,
               "files": [str(f) for f in result.files], "experts": rows, "warnings": warnings}
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{result.scenario}: {plural(result.prompts, 'prompt')} per expert, written to {result.out_dir}")
    for expert in result.excluded:
        print(f"moe2: {expert.server}/{expert.llm} gets no profile entry: {expert.excluded}", file=sys.stderr)
    for line in warnings:
        print(f"moe2: warning: {line}", file=sys.stderr)
    for note in result.notes:
        print(f"moe2: {note}", file=sys.stderr)
    print(f"moe2: next: moe2 select {result.out_dir / 'scenario.yaml'}", file=sys.stderr)
