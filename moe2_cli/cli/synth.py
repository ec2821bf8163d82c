"""`moe2 synth`: write seeded synthetic outcomes for a scenario's LLMs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.cli.common import handles_errors, plural, progress_bar
from moe2_cli.cli.options import FormatOpt, OutputFormat, ScenarioArg, SeedOpt
from moe2_cli.cli.render import Column, emit
from moe2_cli.fileio import check_writable
from moe2_cli.gating.ensemble import share_weights
from moe2_cli.outcomes import synthesize_for, write_outcomes
from moe2_cli.outcomes.synth import profile_accuracy
from moe2_cli.scenario.scenario import load_scenario

# A million queries take about half a minute and half a gigabyte of JSON lines: as many as
# `gating train --queries` synthesises at most, far more than a gate needs.
MAX_SYNTH_QUERIES = 1_000_000


@handles_errors
def synth(
    scenario: ScenarioArg = None,
    queries: Annotated[int, typer.Option("--queries", "-n", min=1, max=MAX_SYNTH_QUERIES,
                                         help="Number of queries to generate.")] = 5000,
    seed: SeedOpt = 0,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file: JSONL, or CSV when it ends in .csv "
                                                            "(add .gz to compress).")] = ...,  # type: ignore[assignment]  # typer: required
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Generate per-query outcomes from the profile accuracies (the model is in docs/outcomes.md)
    and report each LLM's generated accuracy next to its profile.

    Example: moe2 synth --queries 5000 --seed 1 --out outcomes.jsonl
    """
    check_writable(out, "out")
    loaded = load_scenario(scenario)
    with progress_bar(f"synthesising {plural(queries, 'query', 'queries')}"):
        table = synthesize_for(loaded.instance, queries, seed)
        write_outcomes(table, out)
    llms, target = profile_accuracy(loaded.instance)
    achieved = table.mean_scores()
    rows = [{"llm": llm, "category": cat, "queries": int((table.category == c).sum()),
             "profile": float(target[i, c]), "synthetic": float(achieved[i, c])}
            for i, llm in enumerate(llms) for c, cat in enumerate(table.categories)]
    weights = share_weights(table.category, loaded.instance.shares)
    payload = {"scenario": loaded.name, "out": str(out), "queries": queries, "seed": seed,
               "oracle": float(weights @ table.scores.max(axis=1)),
               "best_single": float((weights @ table.scores).max()), "accuracy": rows}
    columns = [Column("llm", "LLM", justify="left"), Column("category", "category", justify="left"),
               Column("queries", "queries"), Column("profile", "profile", lambda x: f"{x:.3f}"),
               Column("synthetic", "synthetic", lambda x: f"{x:.3f}")]
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{out}: {plural(queries, 'query', 'queries')}, seed {seed}; oracle {payload['oracle']:.3f}, "
               f"best single {payload['best_single']:.3f} (share-weighted)")
