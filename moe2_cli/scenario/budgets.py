"""Command-line budgets: ``energy=150``, ``latency=2.5``, ``latency.math=4``, ``energy.code=90``.

Later specs override earlier ones; a per-category spec overrides the global one for that
category whatever the order. ``none`` lifts a cap.
"""

from __future__ import annotations

import math

from moe2_cli.errors import UsageError
from moe2_cli.problem import Budgets
from moe2_cli.yamlio import did_you_mean

RESOURCES = ("energy", "latency")


def _parse_one(spec: str, categories) -> tuple[str, str | None, float | None]:
    key, sep, raw = spec.partition("=")
    if not sep:
        raise UsageError(f"--budget must look like energy=150 or latency.math=4 (got {spec!r})")
    resource, _, category = key.strip().partition(".")
    if resource not in RESOURCES:
        hint = did_you_mean(resource, RESOURCES)
        raise UsageError(f"--budget resource must be energy or latency (got {resource!r}{hint})")
    if category and category not in categories:
        raise UsageError(f"--budget names unknown category {category!r}{did_you_mean(category, categories)} "
                         f"(categories: {', '.join(categories)})")
    if raw.strip().lower() == "none":
        return resource, category or None, None
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"--budget {key} must be a number (got {raw!r})") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"--budget {key} must be a positive number (got {raw!r})")
    return resource, category or None, value


def apply_budget_specs(base: Budgets, specs: list[str] | None) -> Budgets:
    """The scenario's default budgets with the command-line specs applied."""
    cats = base.categories
    caps = {"energy": dict(zip(cats, base.energy_j)), "latency": dict(zip(cats, base.latency_s))}
    per_category = []
    for spec in specs or []:
        resource, category, value = _parse_one(spec, cats)
        if category is None:
            caps[resource] = {c: value for c in cats}
        else:
            per_category.append((resource, category, value))
    for resource, category, value in per_category:
        caps[resource][category] = value
    return Budgets(categories=cats, energy_j=tuple(caps["energy"][c] for c in cats),
                   latency_s=tuple(caps["latency"][c] for c in cats))
