"""`moe2 gating train` and `moe2 gating check`: fit the level-2 gate, and test what the
selection solvers assume about it (restriction ~ retraining, F monotone)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from moe2_cli.cli.common import (
    FormatOpt,
    OutputFormat,
    SeedOpt,
    handles_errors,
    progress_bar,
)
from moe2_cli.cli.inspect import ScenarioArg
from moe2_cli.cli.render import Column, emit
from moe2_cli.cli.select import MetricOpt, OutcomesOpt, TopKOpt
from moe2_cli.fileio import check_writable
from moe2_cli.gating.model import save_gate
from moe2_cli.gating.pipeline import DEFAULT_QUERIES
from moe2_cli.gating.reports import accuracy_report, check_report, gate_system

app = typer.Typer(name="gating", help="Train the top-k sparse softmax gate and check the optimality-preserving "
                                      "property and the monotonicity of F.", no_args_is_help=True)

# Upper bounds keep the work finite: 256 hidden units train in seconds, 2,000 take a minute.
QueriesOpt = Annotated[int, typer.Option("--queries", min=10, max=1_000_000, help="Synthetic queries when the "
                                         "scenario has no outcomes (a third are held out).")]
HiddenOpt = Annotated[int, typer.Option("--hidden", min=0, max=256, help="Units of a tanh hidden layer in the gate "
                                                                          "(0: linear h(x) = Wx + b).")]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# ---------------------------------------------------------------- train


@app.command()
@handles_errors
def train(
    scenario: ScenarioArg = None,
    outcomes: OutcomesOpt = None,
    top_k: TopKOpt = None,
    hidden: HiddenOpt = 0,
    queries: QueriesOpt = DEFAULT_QUERIES,
    seed: SeedOpt = 0,
    metric: MetricOpt = "accuracy",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save the weights and their metadata "
                                                                      "(.npz) here.")] = None,
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Train the gate on every expert and report its held-out accuracy against the best single
    LLM and the per-query oracle (split by question text).

    Example: moe2 gating train examples/llmrouter-edge.yaml --out gate.npz
    """
    if out is not None:
        check_writable(out, "--out")
    with progress_bar("training the gate") as progress:
        system = gate_system(scenario, outcomes, top_k, seed, metric, queries, hidden, progress)
    if out is not None:
        save_gate(out, system.saved)
    payload = {**accuracy_report(system), "seed": seed, "weights_file": str(out) if out else None}
    rows = payload["categories"] + [{"category": "all (share-weighted)", "share": 1.0,
                                     "queries": payload["queries"]["held_out"], **payload["overall"]}]
    columns = [Column("category", "category", justify="left"), Column("share", "share", _pct),
               Column("queries", "held-out queries"), Column("gate", "gate", _pct),
               Column("best_single", f"best single ({payload['best_single_llm']})", _pct),
               Column("category_router", "category router", _pct), Column("oracle", "oracle", _pct)]
    t = payload["training"]
    emit(format.value, payload=payload, rows=rows, columns=columns,
         title=f"{payload['scenario']}: top-{payload['top_k']} gate over {len(payload['llms'])} LLMs "
               f"({payload['experts']} experts); stopped at iteration {t['best_iteration']} of {t['iterations']}, "
               f"temperature {t['temperature']:g}")


# ---------------------------------------------------------------- check


def _check_rows(payload: dict) -> list[dict]:
    opt, mono = payload["optimality"], payload["monotonicity"]
    gap = opt["gap"]
    pairs = "every pair" if mono["exhaustive"] else "random pairs"
    return [
        {"quantity": "F of the full set (held out)", "value": payload["full_set_F"]},
        {"quantity": "subsets S retrained", "value": opt["subsets"]},
        *({"quantity": f"gap F(retrained on S) - F(restricted to S): {k}", "value": gap[k]}
          for k in ("mean", "median", "p90", "max", "min")),
        {"quantity": "subsets where retraining gains > 0.01", "value": opt["retraining_better_by_1pt"]},
        {"quantity": f"monotonicity: pairs S < S+{{i}} checked ({pairs})", "value": mono["pairs"]},
        {"quantity": "monotonicity: pairs where F drops", "value": mono["violations"]},
        {"quantity": "monotonicity: violation rate", "value": mono["rate"]},
        {"quantity": "monotonicity: largest drop", "value": mono["max_drop"]},
        {"quantity": "monotonicity: mean drop (violations)", "value": mono["mean_drop"]},
        {"quantity": "largest gap to the monotone envelope", "value": mono["envelope_gap"]},
    ]


def _value_cell(value) -> str:
    return str(value) if isinstance(value, int) else f"{value:.4f}"


@app.command()
@handles_errors
def check(
    scenario: ScenarioArg = None,
    outcomes: OutcomesOpt = None,
    top_k: TopKOpt = None,
    subsets: Annotated[int, typer.Option("--subsets", min=1, help="Random selections to retrain a gate on.")] = 20,
    samples: Annotated[int, typer.Option("--samples", min=1, help="Random pairs for the monotonicity check when "
                                                                   "N > 20 (smaller N checks every pair).")] = 20_000,
    hidden: HiddenOpt = 0,
    queries: QueriesOpt = DEFAULT_QUERIES,
    seed: SeedOpt = 0,
    metric: MetricOpt = "accuracy",
    format: FormatOpt = OutputFormat.table,
) -> None:
    """Compare F with the full-set gate restricted to random selections S against F with a gate
    retrained on S alone, and count the pairs S < S+{i} where F drops.

    Example: moe2 gating check --subsets 30 --format json
    """
    with progress_bar("training the gate") as progress:
        system = gate_system(scenario, outcomes, top_k, seed, metric, queries, hidden, progress)
    with progress_bar("retraining gates", total=subsets) as progress:
        payload = check_report(system, subsets, samples, seed, progress)
    emit(format.value, payload=payload, rows=_check_rows(payload),
         columns=[Column("quantity", "quantity", justify="left"), Column("value", "value", _value_cell)],
         title=f"{payload['scenario']}: optimality-preserving check and monotonicity of F "
               f"({payload['metric']}, top-{payload['top_k']})")
