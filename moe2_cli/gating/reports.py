"""What the level-2 gate commands measure: held-out accuracy of the trained gate against simple
references, and the optimality-preserving and monotonicity checks. Plain records, no printing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moe2_cli.errors import UsageError
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.gating.ensemble import METRICS, monotonicity
from moe2_cli.gating.foldcheck import fold_gaps
from moe2_cli.gating.model import restrict
from moe2_cli.gating.pipeline import DEFAULT_QUERIES, GateSystem, random_subsets, train_system
from moe2_cli.problem import members
from moe2_cli.progress import ProgressCallback
from moe2_cli.rng import stream
from moe2_cli.scenario.scenario import load_scenario


def gate_system(scenario: str | Path | None = None, outcomes: Path | None = None, top_k: int | None = None,
                seed: int = 0, metric: str = "accuracy", queries: int = DEFAULT_QUERIES, hidden: int = 0,
                progress: ProgressCallback | None = None) -> GateSystem:
    """The gate trained on every expert of a scenario, with its data split and F."""
    if metric not in METRICS:
        raise UsageError(f"must be one of {', '.join(METRICS)} (got {metric!r})", "metric")
    return train_system(load_scenario(scenario), top_k=top_k, seed=seed, outcomes_path=outcomes, metric=metric,
                        queries=queries, hidden=hidden, progress=progress)


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


def _distribution(values: np.ndarray) -> dict[str, float | None]:
    if values.size == 0:
        return dict.fromkeys(("mean", "median", "p90", "max", "min"))
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p90": float(np.quantile(values, 0.9)), "max": float(values.max()), "min": float(values.min())}


def _spread(values: np.ndarray) -> float | None:
    return float(values.std(ddof=1)) if values.size > 1 else None


def check_report(system: GateSystem, subsets: int, samples: int, seed: int, folds: int = DEFAULT_FOLDS,
                 progress: ProgressCallback | None = None) -> dict:
    """The optimality-preserving gaps on random subsets, fold by fold (each selection's gap is
    the mean over folds; each fold's gap the mean over selections, with their spread), and the
    monotonicity of F on the system's held-out queries."""
    rng = stream(seed, "gate-check")
    masks = random_subsets(system, subsets, rng)
    result = fold_gaps(system, masks, folds, seed, progress)
    gaps = result.gaps  # (K, S)
    per_selection, per_fold = gaps.mean(axis=0), gaps.mean(axis=1)
    mono = monotonicity(system.objective, rng, samples=samples)
    experts = system.instance.expert_ids
    return {
        "scenario": system.instance.name, "top_k": system.objective.k, "metric": system.objective.metric,
        "full_set_F": system.objective.value(system.instance.full_mask),
        "optimality": {
            "subsets": len(masks), "folds": int(gaps.shape[0]), "gap": _distribution(per_selection),
            "retraining_better_by_1pt": int((per_selection > 0.01).sum()),
            "fold_gaps": [float(g) for g in per_fold],
            "fold_gap_mean": float(per_fold.mean()), "fold_gap_spread": _spread(per_fold),
            "fold_gap_range": [float(per_fold.min()), float(per_fold.max())],
            "single_fold_gap": _distribution(gaps.ravel()),
            "details": [{"experts": [experts[i] for i in members(mask)],
                         "restricted": float(result.restricted[:, j].mean()),
                         "retrained": float(result.retrained[:, j].mean()), "gap": float(per_selection[j]),
                         "fold_gaps": [float(g) for g in gaps[:, j]], "spread": _spread(gaps[:, j])}
                        for j, mask in enumerate(masks)],
        },
        "monotonicity": {"pairs": mono.pairs, "exhaustive": mono.exhaustive, "violations": mono.violations,
                         "rate": mono.rate, "max_drop": mono.max_drop, "mean_drop": mono.mean_drop,
                         "envelope_gap": mono.envelope_gap},
    }
