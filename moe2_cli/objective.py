"""The objective contract: F(S) batched over bit masks, cached and counted.

Every solver talks to F through :class:`Objective` alone. Concrete objectives implement
:meth:`Objective._compute`; the optional parts of the contract have defaults that suit an
objective without structure (not known to be monotone, no box bound, experts all distinct,
deploys what it is asked about, no reference values), and an objective that knows better
overrides them.

The box bound is what exact solvers prove with: an upper bound on F over every selection S
with low ⊆ S ⊆ high. For monotone F it is F(high). An objective that is not monotone may offer
a bound of its own, named by :attr:`Objective.bound_proof`; without one, solvers fall back to
assuming monotonicity and withdraw their proof when an evaluated edge contradicts it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from moe2_cli.problem import Instance, as_masks, masks_to_bool

MONOTONE_BOUND = "monotone"  # the bound_proof of a monotone F: F(high) bounds the box


class Objective(ABC):
    """F over bit masks (see :func:`moe2_cli.problem.as_masks`): larger is better; F(empty) is the worst value."""

    name = "objective"
    monotone: bool = False  # True only where adding an expert can never lower F
    monotone_proof = "monotone F"  # how a solver's notes name the proof monotonicity gives
    envelope = False  # True for an envelope max over subsets: valid only where subsets stay feasible

    def __init__(self, instance: Instance):
        self.instance = instance
        self._cache: dict[int, float] = {}

    @property
    def evaluations(self) -> int:
        """Distinct masks evaluated so far."""
        return len(self._cache)

    def __call__(self, masks: object) -> np.ndarray:
        """F of every mask in a batch (any shape of masks, flattened), from the cache where known."""
        n = self.instance.n_experts
        flat = as_masks(masks, n).reshape(-1)
        missing = as_masks(sorted({int(m) for m in flat if int(m) not in self._cache}), n)
        if missing.size:
            for m, v in zip(missing.tolist(), self._compute(missing).tolist()):
                self._cache[m] = float(v)
        return np.array([self._cache[int(m)] for m in flat], dtype=float)

    def value(self, mask: int) -> float:
        return float(self([mask])[0])

    def reset_count(self) -> None:
        """Forget cached values so a new solve counts its own evaluations."""
        self._cache.clear()

    @abstractmethod
    def _compute(self, masks: np.ndarray) -> np.ndarray:
        """F of distinct masks (an array as :func:`moe2_cli.problem.as_masks` gives) that are not cached yet."""

    @property
    def bound_proof(self) -> str | None:
        """What makes :meth:`box_bound` an upper bound: :data:`MONOTONE_BOUND`, the name of a
        bound that holds without monotonicity, or None when the objective offers no bound."""
        return MONOTONE_BOUND if self.monotone else None

    def box_bound(self, low: object, high: object) -> np.ndarray:
        """Upper bounds on F over the boxes of selections S with ``low_b`` ⊆ S ⊆ ``high_b`` (bit
        masks, ``low`` ⊆ ``high``): F(high) for monotone F. Only where :attr:`bound_proof` is set."""
        if self.bound_proof is None:
            raise NotImplementedError(f"{self.name} offers no bound over a box of selections")
        return self(high)

    def box_bound_without(self, low: int, high: int, removed: object) -> np.ndarray:
        """:meth:`box_bound` of the boxes [low, high minus removed_j], one per mask of
        ``removed``; each removed_j takes whole classes (see :meth:`expert_classes`) of ``high``
        that ``low`` does not meet. An objective may compute these faster than one by one."""
        removed = as_masks(removed, self.instance.n_experts).reshape(-1)
        return self.box_bound(np.full(removed.size, int(low), dtype=removed.dtype), int(high) & ~removed)

    def expert_classes(self) -> np.ndarray:
        """(N,) int: F(S) depends only on which classes S meets (experts serving one LLM are one
        class when F scores LLMs); by default every expert is a class of its own."""
        return np.arange(self.instance.n_experts)

    def deployable(self, mask: int) -> int:
        """The selection to deploy when a solver returns ``mask``: ``mask`` itself, unless the
        objective's value at ``mask`` is reached by a subset (see the monotone envelope)."""
        return mask

    def references(self, mask: int) -> dict[str, float]:
        """Context values for a selection (e.g. oracle and best single expert); may be empty."""
        return {}


class CoverageObjective(Objective):
    """Profile-only F: the traffic-weighted chance that at least one selected expert is right,
    treating experts as independent. Monotone by construction; used when no outcomes exist and
    as a known-monotone objective in solver tests."""

    monotone = True  # by construction: solvers need not check their proofs against it
    name = "coverage"

    def _compute(self, masks: np.ndarray) -> np.ndarray:
        chosen = masks_to_bool(masks, self.instance.n_experts)
        log_miss = np.log1p(-np.clip(self.instance.accuracy, 0.0, 1.0 - 1e-12))
        miss = np.exp(chosen.astype(float) @ log_miss)
        return np.asarray((1.0 - miss) @ self.instance.shares, dtype=float)
