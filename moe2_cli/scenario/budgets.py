"""Budgets as specs, from the Python API or the command line: ``energy=150``, ``latency=2.5``,
``latency.math=4``, ``energy.code=90``.

They mean what the scenario file means. ``latency=3`` is the default cap, like ``budgets:
latency_s: 3`` in the YAML: it holds for every category without a cap of its own, and a
category's own cap (``latency_budget_s`` in the file, or a ``latency.math=4`` spec)
overrides it, whatever the order. Of two specs for the same cap the later wins. ``none`` lifts
a cap: ``latency=none`` the default, ``latency.math=none`` one category's.

``energy.mean=300`` and ``latency.mean.math=5`` cap the mean cost per query instead of the worst
case (see moe2_cli.mean_cost), with the same default and per-category rules; the two
kinds of cap combine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from moe2_cli.errors import UsageError
from moe2_cli.problem import MAX_ENERGY_J, MAX_LATENCY_S, Budgets
from moe2_cli.yamlio import did_you_mean

RESOURCES = ("energy", "latency")
# What a cap bounds: a resource's worst case, or its mean per query; and the Budgets field of each.
KINDS = ("energy", "latency", "energy.mean", "latency.mean")
FIELDS = {"energy": "energy_j", "latency": "latency_s", "energy.mean": "energy_mean_j",
          "latency.mean": "latency_mean_s"}
# The largest cap a budget may name, as in the scenario files: J for energy, s for latency.
MAXIMA = {"energy": MAX_ENERGY_J, "latency": MAX_LATENCY_S, "energy.mean": MAX_ENERGY_J,
          "latency.mean": MAX_LATENCY_S}


def split_key(key: str, option: str) -> tuple[str, str]:
    """``latency.mean.math`` as (kind, category or ""): the kind is a resource, or a resource
    followed by ``.mean``. UsageError (about ``option``) for an unknown resource."""
    resource, _, rest = key.strip().partition(".")
    if resource not in RESOURCES:
        hint = did_you_mean(resource, RESOURCES)
        raise UsageError(f"resource must be energy or latency (got {resource!r}{hint})", option)
    head, _, tail = rest.partition(".")
    if head == "mean":
        return f"{resource}.mean", tail
    return resource, rest


def caps_of(budgets: Budgets, kind: str) -> tuple[float | None, ...]:
    """The caps of one kind by category (None: no cap)."""
    caps: tuple[float | None, ...] = getattr(budgets, FIELDS[kind])
    return caps or (None,) * len(budgets.categories)


def parse_budget(spec: str, categories: Sequence[str] | None) -> tuple[str, str | None, float | None]:
    """``latency.math=4`` as (kind, category or None, cap or None for ``none``); the kind is
    ``energy``, ``latency``, ``energy.mean`` or ``latency.mean``. With ``categories`` None, a
    category name is not checked (to refuse bad specs before any work)."""
    key, sep, raw = spec.partition("=")
    if not sep:
        raise UsageError(f"must look like energy=150, latency.math=4 or energy.mean=300 (got {spec!r})", "budget")
    resource, category = split_key(key, "budget")
    if category and categories is not None and category not in categories:
        raise UsageError(f"names unknown category {category!r}{did_you_mean(category, categories)} "
                         f"(categories: {', '.join(categories)})", "budget")
    if raw.strip().lower() == "none":
        return resource, category or None, None
    return resource, category or None, budget_value(key.strip(), resource, raw)


def budget_value(key: str, resource: str, raw: str) -> float:
    """The cap ``key`` (``energy``, ``latency.math``) in J or s: a finite number above 0 and at
    most the bound every input file obeys."""
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{key} must be a number (got {raw!r})", "budget") from None
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{key} must be a positive number (got {raw!r})", "budget")
    if value > MAXIMA[resource]:
        raise UsageError(f"{key} must be at most {MAXIMA[resource]:g} (got {raw!r})", "budget")
    return value


def own_caps_after(specs: list[str] | None, categories: Sequence[str],
                   own_caps: Mapping[str, frozenset[str]] | None = None) -> dict[str, frozenset[str]]:
    """Per resource, the categories with a cap of their own once ``specs`` are applied: the
    scenario's, and those a ``latency.CAT=`` spec names. A swept default leaves them alone too."""
    pinned = {kind: set((own_caps or {}).get(kind, ())) for kind in KINDS}
    for spec in specs or []:
        kind, category, _ = parse_budget(spec, categories)
        if category is not None:
            pinned[kind].add(category)
    return {kind: frozenset(cats) for kind, cats in pinned.items()}


def apply_budget_specs(base: Budgets, specs: list[str] | None,
                       own_caps: Mapping[str, frozenset[str]] | None = None) -> Budgets:
    """The scenario's budgets with the command-line specs applied. ``own_caps`` names, per
    resource, the categories whose cap the scenario sets itself: a default leaves them alone."""
    cats = base.categories
    caps = {kind: dict(zip(cats, caps_of(base, kind))) for kind in KINDS}
    pinned = {kind: set((own_caps or {}).get(kind, ())) for kind in KINDS}
    defaults: dict[str, float | None] = {}
    for spec in specs or []:
        kind, category, value = parse_budget(spec, cats)
        if category is None:
            defaults[kind] = value
        else:
            caps[kind][category] = value
            pinned[kind].add(category)
    for kind, value in defaults.items():
        caps[kind].update({c: value for c in cats if c not in pinned[kind]})
    mean = {FIELDS[kind]: tuple(caps[kind][c] for c in cats) for kind in ("energy.mean", "latency.mean")}
    if all(v is None for caps_ in mean.values() for v in caps_):
        mean = {field: () for field in mean}  # no mean cap: the budgets stay as they were
    return Budgets(categories=cats, energy_j=tuple(caps["energy"][c] for c in cats),
                   latency_s=tuple(caps["latency"][c] for c in cats), **mean)
