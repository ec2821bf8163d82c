"""Placement: which copy of each chosen LLM serves, and on which server.

When F depends only on the classes a selection meets (``Objective.expert_classes``: the LLMs,
whose copies on several servers share one outcome column), the best selection is a set of
classes plus a placement of one copy of each. A second copy changes no F and only adds cost,
and dropping it keeps every budget (the feasible selections form a down-set), so one copy per
class loses nothing. :class:`Placer` finds, for a set of classes, the cheapest feasible
placement in the tie order of :func:`~moe2_cli.solvers.base.tie_costs` (least traffic-weighted
worst-case energy, then latency), or proves that none fits. It is an exact depth-first search:

- classes with the fewest copies first, each one's copies by ascending cost;
- a partial placement that breaks a budget is abandoned: every budget only grows with S;
- a partial placement is abandoned when (its energy completed by each remaining class's
  cheapest energy per category, its latency) is not below the best found: both only grow;
- copies of equal costs on interchangeable servers are tried once. Two servers are
  interchangeable for a set of classes when they have the same transmission, host the same
  classes of the set at the same costs and carry the same load so far: swapping them maps
  placements to placements of equal cost. (With masks to avoid, experts are not
  interchangeable and all copies are tried.)

The rule is the one :class:`~moe2_cli.solvers.feasibility.FeasibilityModel` checks: per
category, the k largest energies of S within the cap; per used server, its transmission plus
the k largest latencies there within the cap less aggregation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from moe2_cli.problem import UNLIMITED, Problem
from moe2_cli.solvers.feasibility import FeasibilityModel

# A time limit is checked once per this many search nodes.
_CHECK_EVERY = 256

Top = tuple[int, ...]  # the k largest costs so far, descending


class PlacementStopped(Exception):
    """A limit stopped a placement search; the solve ends with its incumbent."""


class Placer:
    """Cheapest feasible placements of sets of classes (int masks over class indices), cached."""

    def __init__(self, problem: Problem, feas: FeasibilityModel, classes: np.ndarray, allowed: int,
                 stop: Callable[[], bool]):
        inst, budgets = problem.instance, problem.budgets
        self.k = inst.top_k
        self.feas = feas
        self.stop = stop
        self.nodes = 0
        self.shares = np.asarray(inst.shares, dtype=float).tolist()
        self.energy = inst.energy_units.astype(np.int64).tolist()
        self.latency = inst.latency_units.astype(np.int64).tolist()
        self.server = np.asarray(inst.expert_server, dtype=np.int64).tolist()
        self.transmission = np.asarray(inst.transmission_units, dtype=np.int64).tolist()
        self.aggregation = int(inst.aggregation_units)
        self.energy_caps = budgets.energy_units.tolist()
        self.latency_caps = [[UNLIMITED if cap >= UNLIMITED else cap - self.aggregation - t
                              for cap in budgets.latency_units.tolist()] for t in self.transmission]
        self.symmetric = not problem.avoid
        experts = [i for i in range(inst.n_experts) if allowed >> i & 1]
        self.copies: dict[int, list[int]] = {}
        for i in sorted(experts, key=lambda i: (self._alone(i), i)):
            self.copies.setdefault(int(classes[i]), []).append(i)
        rows = np.concatenate([inst.energy_units, inst.latency_units], axis=1)
        self.cost_type = np.unique(rows, axis=0, return_inverse=True)[1].reshape(-1).tolist()
        self.hosted: dict[int, list[tuple[int, int]]] = {}  # server -> (class, cost type) of its copies
        for i in experts:
            self.hosted.setdefault(self.server[i], []).append((int(classes[i]), self.cost_type[i]))
        n_categories = len(self.shares)
        self.min_energy = {c: [min(self.energy[i][j] for i in copies) for j in range(n_categories)]
                           for c, copies in self.copies.items()}
        self._cache: dict[int, int | None] = {0: 0}

    def _alone(self, i: int) -> tuple[float, float]:
        energy = sum(s * e for s, e in zip(self.shares, self.energy[i]))
        latency = sum(s * (self.transmission[self.server[i]] + v) for s, v in zip(self.shares, self.latency[i]))
        return energy, latency

    def place(self, class_mask: int) -> int | None:
        """The expert mask of the cheapest feasible placement of the classes, or None if none fits."""
        if class_mask not in self._cache:
            self._cache[class_mask] = _Search(self, class_mask).run()
        return self._cache[class_mask]

    @property
    def searched(self) -> int:
        """How many distinct sets of classes were placed."""
        return len(self._cache) - 1


class _Search:
    """One branch-and-bound over the copies of a set of classes."""

    def __init__(self, placer: Placer, class_mask: int):
        self.p = placer
        chosen = [c for c in placer.copies if class_mask >> c & 1]
        missing = class_mask & ~sum(1 << c for c in chosen)
        self.order = sorted(chosen, key=lambda c: (len(placer.copies[c]), c))
        self.feasible_classes = not missing
        k, n_categories = placer.k, len(placer.shares)
        # Per depth, per category: the k largest cheapest energies of the classes still to place.
        self.rest: list[list[Top]] = []
        for d in range(len(self.order) + 1):
            later = [placer.min_energy[c] for c in self.order[d:]]
            self.rest.append([tuple(sorted((e[j] for e in later), reverse=True)[:k]) for j in range(n_categories)])
        self.signature = self._signatures(set(chosen))
        self.best: tuple[float, float] = (float("inf"), float("inf"))
        self.best_mask: int | None = None

    def _signatures(self, chosen: set[int]) -> dict[int, tuple]:
        p = self.p
        return {s: (p.transmission[s], tuple(sorted(h for h in hosted if h[0] in chosen)))
                for s, hosted in p.hosted.items()}

    def run(self) -> int | None:
        if not self.feasible_classes:
            return None
        n_categories = len(self.p.shares)
        self._descend(0, 0, tuple(() for _ in range(n_categories)), {})
        return self.best_mask

    def _descend(self, depth: int, mask: int, energy: tuple[Top, ...], servers: dict[int, tuple[Top, ...]]) -> None:
        p = self.p
        p.nodes += 1
        if p.nodes % _CHECK_EVERY == 0 and p.stop():
            raise PlacementStopped
        if (self._energy_bound(energy, depth), self._latency(servers)) >= self.best:
            return
        if depth == len(self.order):
            self.best, self.best_mask = (self._energy_bound(energy, depth), self._latency(servers)), mask
            return
        tried = set()
        for i in p.copies[self.order[depth]]:
            s = p.server[i]
            if p.symmetric:
                twin = (p.cost_type[i], self.signature[s], servers.get(s))
                if twin in tried:
                    continue
                tried.add(twin)
            grown = self._add(i, energy, servers.get(s))
            if grown is None or not p.feas.avoids(mask | (1 << i)):
                continue
            self._descend(depth + 1, mask | (1 << i), grown[0], {**servers, s: grown[1]})

    def _add(self, i: int, energy: tuple[Top, ...], load: tuple[Top, ...] | None):
        """Energy and the server's load with expert ``i`` added, or None if a budget breaks."""
        p, k = self.p, self.p.k
        new_energy = tuple(_push(top, e, k) for top, e in zip(energy, p.energy[i]))
        if any(sum(top) > cap for top, cap in zip(new_energy, p.energy_caps)):
            return None
        caps = p.latency_caps[p.server[i]]
        new_load = tuple(_push(top, v, k) for top, v in zip(load or tuple(() for _ in caps), p.latency[i]))
        if any(sum(top) > cap for top, cap in zip(new_load, caps)):
            return None
        return new_energy, new_load

    def _energy_bound(self, energy: tuple[Top, ...], depth: int) -> float:
        """Traffic-weighted energy of any completion: the remaining classes at their cheapest."""
        k = self.p.k
        return sum(share * sum(sorted(top + rest, reverse=True)[:k])
                   for share, top, rest in zip(self.p.shares, energy, self.rest[depth]))

    def _latency(self, servers: dict[int, tuple[Top, ...]]) -> float:
        """Traffic-weighted worst-case latency of the placement so far (0 while empty)."""
        p = self.p
        if not servers:
            return 0.0
        worst = [max(p.transmission[s] + sum(load[j]) for s, load in servers.items()) for j in range(len(p.shares))]
        return sum(share * (w + p.aggregation) for share, w in zip(p.shares, worst))


def _push(top: Top, value: int, k: int) -> Top:
    """``top`` with ``value`` added, keeping the k largest, descending."""
    if len(top) < k:
        return tuple(sorted(top + (value,), reverse=True))
    if value <= top[-1]:
        return top
    return tuple(sorted(top[:-1] + (value,), reverse=True))
