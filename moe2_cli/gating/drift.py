"""Has traffic drifted from the plan? The mix shift between the plan's training outcomes and new
ones, the plan's F reweighted to the new mix, and where the selection's F on the new queries
falls against that interval.

The plan's interval covers queries drawn like its training ones; reweighted to the new mix it
covers F for the new proportions of tasks and categories. The new file is itself a finite
sample of that mix, so the verdict compares its F with the prediction interval: the reweighted
interval widened by the new F's own sampling error. Below it, the selection does worse than its
plan allows for the new mix (the experts or the queries within a task changed); above, better.
"""

from __future__ import annotations

import math
from pathlib import Path
from statistics import NormalDist
from typing import Any

from moe2_cli.gating.confidence import Bootstrap
from moe2_cli.gating.crossfit import DEFAULT_FOLDS
from moe2_cli.gating.mix import Mix, mix_of
from moe2_cli.gating.pipeline import estimate_objective
from moe2_cli.jsontext import load_record
from moe2_cli.outcomes import Outcomes
from moe2_cli.problem import Instance

VERDICTS = ("inside", "above", "below")


def mix_shift(instance: Instance, training: Outcomes, new: Outcomes) -> dict[str, Any]:
    """Category and tag shares (those F weighs by) and query counts, training against new, and
    the tags of the new queries that training has none of."""
    before, after = mix_of(training, instance, training.source), mix_of(new, instance, new.source)
    return {"categories": _rows(before.categories, after.categories, _counts(training, False), _counts(new, False)),
            "tags": None if after.tags is None and before.tags is None else
            _rows(before.tags, after.tags, _counts(training, True), _counts(new, True)),
            "unseen_tags": sorted(set(after.tags or {}) - set(before.tags or {}))}


def _counts(table: Outcomes, tags: bool) -> dict[str, int]:
    out: dict[str, int] = {}
    labels = ([t[0] for t in table.tags if t] if table.tags is not None else []) if tags else \
        [table.categories[c] for c in table.category]
    for label in labels:
        out[label] = out.get(label, 0) + 1
    return out


def _rows(before, after, n_before, n_after) -> list[dict[str, Any]]:
    before, after = before or {}, after or {}
    return [{"name": name, "training_share": before.get(name, 0.0), "new_share": after.get(name, 0.0),
             "training_queries": n_before.get(name, 0), "new_queries": n_after.get(name, 0)}
            for name in sorted(set(before) | set(after))]


def plan_settings(path: Path) -> dict[str, Any]:
    """The seed, folds and router a saved select record was estimated with (their defaults when
    absent); the record was validated when its selection was read."""
    record = load_record(path, "the selection")
    seed, folds, router = record.get("seed"), record.get("folds"), record.get("router")
    return {"seed": seed if isinstance(seed, int) else 0,
            "folds": folds if isinstance(folds, int) and folds >= 1 else DEFAULT_FOLDS,
            "router": router if isinstance(router, str) else "gate"}


def reweighted_plan(scenario, instance: Instance, mask: int, mix: Mix, settings: dict[str, Any], *,
                    confidence: float, use_cache: bool) -> dict[str, Any]:
    """The plan's out-of-fold F of ``mask``, reweighted to ``mix``, with its interval."""
    estimate = estimate_objective(scenario, top_k=instance.top_k, seed=settings["seed"], folds=settings["folds"],
                                  router=settings["router"], use_cache=use_cache, mix=mix)
    weights = estimate.weighting
    bootstrap = Bootstrap(estimate.objective, weights.strata, confidence=confidence, seed=settings["seed"],
                          fold=estimate.fold, shares=weights.shares)
    return {"objective": bootstrap.of(mask).as_dict(), "mix": weights.record, "notes": list(weights.notes),
            **settings}


def prediction(plan: dict[str, float], new_se: float, confidence: float) -> dict[str, float]:
    """The interval F on the new queries should fall in: the plan's (reweighted) interval, each
    side widened in quadrature by the normal half-width of the new F's own sampling error (a
    finite sample of the new mix scatters around the F the plan estimates)."""
    half = (NormalDist().inv_cdf(0.5 + confidence / 2) * new_se) ** 2
    estimate = plan["estimate"]
    return {"low": estimate - math.sqrt((estimate - plan["low"]) ** 2 + half),
            "high": estimate + math.sqrt((plan["high"] - estimate) ** 2 + half)}


def verdict(value: float, interval: dict[str, float]) -> str:
    """Where ``value`` falls against ``interval``: inside, above or below."""
    if value < interval["low"]:
        return "below"
    return "above" if value > interval["high"] else "inside"
