"""`moe2 gating train` and `moe2 gating check`: fit the level-2 gate, and test what the
selection solvers assume about it (restriction ~ retraining, F monotone)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
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
from moe2_cli.errors import UsageError
from moe2_cli.fileio import check_writable
from moe2_cli.gating.ensemble import METRICS, monotonicity
from moe2_cli.gating.model import restrict, save_gate
from moe2_cli.gating.pipeline import (
    DEFAULT_QUERIES,
    GateSystem,
    optimality_gaps,
    random_subsets,
    train_system,
)
from moe2_cli.problem import members
from moe2_cli.scenario.scenario import load_scenario

app = typer.Typer(name="gating", help="Train the top-k sparse softmax gate and check the optimality-preserving "
                                      "property and the monotonicity of F.", no_args_is_help=True)

QueriesOpt = Annotated[int, typer.Option("--queries", min=10, help="Synthetic queries when the scenario has no "
                                                                    "outcomes (a third are held out).")]
HiddenOpt = Annotated[int, typer.Option("--hidden", min=0, help="Units of a tanh hidden layer in the gate "
                                                                 "(0: linear h(x) = Wx + b).")]


def _system(scenario, outcomes, top_k, seed, metric, queries, hidden) -> GateSystem:
    if metric not in METRICS:
        raise UsageError(f"--metric must be one of {', '.join(METRICS)} (got {metric!r})")
    if top_k is not None and top_k < 1:
        raise UsageError(f"--top-k must be >= 1 (got {top_k})")
    return train_system(load_scenario(scenario), top_k=top_k, seed=seed, outcomes_path=outcomes, metric=metric,
                        queries=queries, hidden=hidden)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# ---------------------------------------------------------------- train


def accuracy_report(system: GateSystem) -> dict:
    """Held-out expected accuracy of the full-set gate, the best single LLM, a category router
    (each category's best LLM on the training queries) and the per-query oracle, overall
    (traffic-share weighted) and per category."""
    objective, held = system.objective, system.outcomes.subset(system.split.held_out)
    scores, weights = objective.scores, objective.weights
    gate = (restrict(objective.logits, objective.k) * scores).sum(axis=1)
    best = int(np.argmax(weights @ scores))
    per_category = system.outcomes.subset(system.split.train).mean_scores()  # (LLMs, categories)
    router = scores[np.arange(len(scores)), np.nan_to_num(per_category, nan=0.0).argmax(axis=0)[held.category]]
    oracle = scores.max(axis=1)
    categories = []
    for c, name in enumerate(system.instance.categories):
        rows = held.category == c
        categories.append({"category": name, "share": float(system.instance.shares[c]), "queries": int(rows.sum()),
                           "gate": _mean(gate, rows), "best_single": _mean(scores[:, best], rows),
                           "category_router": _mean(router, rows), "oracle": _mean(oracle, rows)})
    history = system.saved.gate.history_
    return {
        "scenario": system.instance.name, "top_k": objective.k, "llms": list(system.outcomes.columns),
        "experts": system.instance.n_experts,
        "queries": {part: int(getattr(system.split, part).size) for part in ("train", "validation", "held_out")},
        "training": vars(history), "best_single_llm": system.outcomes.columns[best],
        "overall": {"gate": float(weights @ gate), "best_single": float(weights @ scores[:, best]),
                    "category_router": float(weights @ router), "oracle": float(weights @ oracle)},
        "categories": categories,
    }


def _mean(values: np.ndarray, rows: np.ndarray) -> float | None:
    return float(values[rows].mean()) if rows.any() else None


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
    system = _system(scenario, outcomes, top_k, seed, metric, queries, hidden)
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


def _distribution(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return dict.fromkeys(("mean", "median", "p90", "max", "min"))
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p90": float(np.quantile(values, 0.9)), "max": float(values.max()), "min": float(values.min())}


def check_report(system: GateSystem, subsets: int, samples: int, seed: int, advance) -> dict:
    """The optimality-preserving gaps on random subsets and the monotonicity of F."""
    rng = np.random.default_rng([seed, 2])
    masks = random_subsets(system, subsets, rng)
    gaps = optimality_gaps(system, masks, advance)
    gap_values = np.array([g.gap for g in gaps])
    mono = monotonicity(system.objective, rng, samples=samples)
    experts = system.instance.expert_ids
    return {
        "scenario": system.instance.name, "top_k": system.objective.k, "metric": system.objective.metric,
        "full_set_F": system.objective.value(system.instance.full_mask),
        "optimality": {
            "subsets": len(gaps), "gap": _distribution(gap_values),
            "retraining_better_by_1pt": int((gap_values > 0.01).sum()),
            "details": [{"experts": [experts[i] for i in members(g.mask)], "restricted": g.restricted,
                         "retrained": g.retrained, "gap": g.gap} for g in gaps],
        },
        "monotonicity": {"pairs": mono.pairs, "exhaustive": mono.exhaustive, "violations": mono.violations,
                         "rate": mono.rate, "max_drop": mono.max_drop, "mean_drop": mono.mean_drop,
                         "envelope_gap": mono.envelope_gap},
    }


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
    system = _system(scenario, outcomes, top_k, seed, metric, queries, hidden)
    with progress_bar("retraining gates", total=subsets) as advance:
        payload = check_report(system, subsets, samples, seed, advance)
    emit(format.value, payload=payload, rows=_check_rows(payload),
         columns=[Column("quantity", "quantity", justify="left"), Column("value", "value", _value_cell)],
         title=f"{payload['scenario']}: optimality-preserving check and monotonicity of F "
               f"({payload['metric']}, top-{payload['top_k']})")
