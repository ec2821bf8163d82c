"""The objective F(S) behind one small interface: batched over bit masks, cached, counted.

Concrete objectives implement :meth:`Objective._compute`. Solvers only call the instance, so
the number of distinct masks evaluated (``evaluations``) is comparable across solvers.
"""

from __future__ import annotations

import numpy as np

from moe2_cli.problem import Instance, masks_to_bool


class Objective:
    """F over int64 bit masks: larger is better; F(empty) is the worst value."""

    name = "objective"
    monotone = False  # True only where adding an expert can never lower F

    def __init__(self, instance: Instance):
        self.instance = instance
        self._cache: dict[int, float] = {}

    @property
    def evaluations(self) -> int:
        """Distinct masks evaluated so far."""
        return len(self._cache)

    def __call__(self, masks) -> np.ndarray:
        masks = np.asarray(masks, dtype=np.int64).reshape(-1)
        missing = np.array(sorted({int(m) for m in masks if int(m) not in self._cache}), dtype=np.int64)
        if missing.size:
            for m, v in zip(missing.tolist(), self._compute(missing).tolist()):
                self._cache[m] = float(v)
        return np.array([self._cache[int(m)] for m in masks], dtype=float)

    def value(self, mask: int) -> float:
        return float(self(np.array([mask], dtype=np.int64))[0])

    def reset_count(self) -> None:
        """Forget cached values so a new solve counts its own evaluations."""
        self._cache.clear()

    def _compute(self, masks: np.ndarray) -> np.ndarray:
        raise NotImplementedError

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
        return (1.0 - miss) @ self.instance.shares
