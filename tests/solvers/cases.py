"""Seeded random instances and objectives shared by the solver tests."""

from __future__ import annotations

import numpy as np

from moe2_cli.objective import CoverageObjective, Objective
from moe2_cli.problem import Budgets, Instance, Problem, masks_to_bool

CATEGORIES = ("mcq", "math", "code")


def random_instance(rng: np.random.Generator, n: int, *, servers: int = 3, top_k: int = 2,
                    categories: tuple[str, ...] = CATEGORIES) -> Instance:
    """N experts spread over a few servers (so several are co-located), costs in mJ / µs steps."""
    c = len(categories)
    shares = rng.dirichlet(np.ones(c))
    return Instance(
        name="random",
        expert_ids=tuple(f"srv{i % servers}/llm-{i}" for i in range(n)),
        expert_llms=tuple(f"llm-{i}" for i in range(n)),
        expert_server=np.array([i % servers for i in range(n)]),
        server_names=tuple(f"srv{s}" for s in range(servers)),
        transmission_s=np.round(rng.uniform(0.0, 0.2, servers), 3),
        categories=categories,
        shares=shares,
        latency_s=np.round(rng.uniform(0.1, 1.5, (n, c)), 3),
        energy_j=np.round(rng.uniform(1.0, 10.0, (n, c)), 3),
        accuracy=rng.uniform(0.05, 0.8, (n, c)),
        top_k=top_k,
        aggregation_s=0.05,
    )


def budgets_for(inst: Instance, energy_frac: float, latency_frac: float, *,
                math_latency: float | None = None) -> Budgets:
    """Budgets as fractions of the cost of selecting everything (so they bind)."""
    full = inst.usage(np.array([inst.full_mask], dtype=np.int64))
    energy = energy_frac * float(full.energy_j.max())
    latency = latency_frac * float(full.latency_s.max())
    by_cat = {"math": math_latency} if math_latency is not None else None
    return Budgets.build(inst.categories, energy=energy, latency=latency, latency_by_cat=by_cat)


def budgets_between(inst: Instance, energy_frac: float, latency_frac: float, *,
                    math_latency_frac: float | None = None) -> Budgets:
    """Budgets a fraction of the way from what one cheap expert alone uses (0: it fits) to
    what selecting everyone uses (1: all fit), so draws are rarely empty or trivial."""
    alone = inst.usage(np.left_shift(np.int64(1), np.arange(inst.n_experts, dtype=np.int64)))
    full = inst.usage(np.array([inst.full_mask], dtype=np.int64))
    energy, latency = alone.energy_j.max(axis=1), alone.latency_s.max(axis=1)
    cheap = int(np.argmin(np.maximum(energy / full.energy_j.max(), latency / full.latency_s.max())))

    def between(low: float, high: float, frac: float) -> float:
        return low + frac * max(high - low, 0.0)

    by_cat = None
    if math_latency_frac is not None:
        c = inst.categories.index("math")
        by_cat = {"math": between(float(alone.latency_s[cheap, c]), float(full.latency_s[0, c]), math_latency_frac)}
    return Budgets.build(inst.categories,
                         energy=between(float(energy[cheap]), float(full.energy_j.max()), energy_frac),
                         latency=between(float(latency[cheap]), float(full.latency_s.max()), latency_frac),
                         latency_by_cat=by_cat)


class ProbabilityCoverage(Objective):
    """Monotone F over a per-query probability matrix: mean chance some selected expert is right."""

    name = "probability-coverage"
    monotone = True  # by construction: 1 - prod(1 - p) only grows with S

    def __init__(self, instance: Instance, probs: np.ndarray):
        super().__init__(instance)
        self._log_miss = np.log1p(-np.clip(probs, 0.0, 1.0 - 1e-12))  # (Q, N)

    def _compute(self, masks):
        chosen = masks_to_bool(masks, self.instance.n_experts).astype(float)
        return (1.0 - np.exp(chosen @ self._log_miss.T)).mean(axis=1)


class TopTwoAverage(Objective):
    """Non-monotone F: mean over queries of the average correctness of the two selected
    experts the fixed gate scores highest (a worse second expert drags the average down)."""

    name = "top-two-average"

    def __init__(self, instance: Instance, scores: np.ndarray, probs: np.ndarray):
        super().__init__(instance)
        self._order = np.argsort(-scores, axis=1, kind="stable")  # (Q, N)
        self._probs = np.take_along_axis(probs, self._order, axis=1)

    def _compute(self, masks):
        chosen = (masks[:, None, None] >> self._order[None]) & 1  # (B, Q, N) in gate order
        rank = np.cumsum(chosen, axis=2)
        take = chosen * (rank <= 2)
        count = np.maximum(take.sum(axis=2), 1)
        return ((take * self._probs[None]).sum(axis=2) / count).mean(axis=1)


def coverage_problem(seed: int, n: int, energy_frac: float = 0.35, latency_frac: float = 0.8, **kw) -> Problem:
    rng = np.random.default_rng(seed)
    inst = random_instance(rng, n, **kw)
    return Problem(inst, budgets_for(inst, energy_frac, latency_frac), CoverageObjective(inst))
