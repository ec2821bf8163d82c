"""The distribution of the inputs X: sampling, and quadrature nodes for expectations over X."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from moe2_cli.errors import InputError

X_KINDS = ("uniform", "normal")
MAX_QUADRATURE_DIM = 4
# Nodes per axis of the tensor grid: about 4,000 points in total above d = 1.
_NODES_PER_AXIS = {1: 256, 2: 64, 3: 16, 4: 8}


@dataclass(frozen=True)
class XDist:
    """X uniform on the box [low, high]^dim, or normal with independent N(mean, std²) coordinates."""

    kind: str = "uniform"
    dim: int = 1
    low: float = -1.0
    high: float = 1.0
    mean: float = 0.0
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in X_KINDS:
            raise ValueError(f"x distribution must be one of {X_KINDS} (got {self.kind!r})")
        if self.dim < 1:
            raise ValueError(f"x dimension must be >= 1 (got {self.dim})")
        if self.kind == "uniform" and not self.low < self.high:
            raise ValueError(f"uniform x needs low < high (got {self.low}, {self.high})")
        if self.kind == "normal" and not self.std > 0:
            raise ValueError(f"normal x needs std > 0 (got {self.std})")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, dim) draws."""
        if self.kind == "uniform":
            return rng.uniform(self.low, self.high, size=(n, self.dim))
        return self.mean + self.std * rng.standard_normal((n, self.dim))

    def nodes(self) -> tuple[np.ndarray, np.ndarray]:
        """Quadrature points (m, dim) and probability weights (m,) summing to 1.

        Uniform: composite Gauss-Legendre (4 nodes per panel), robust to the kinks a top-K gate
        puts in the integrand. Normal: equal-probability midpoints of the quantile function.
        """
        if self.dim > MAX_QUADRATURE_DIM:
            raise InputError(f"expectations over X use a tensor grid, which supports input dimension "
                             f"<= {MAX_QUADRATURE_DIM} (got {self.dim})")
        m = _NODES_PER_AXIS[self.dim]
        if self.kind == "uniform":
            axis, weights = composite_gauss_legendre(self.low, self.high, m // 4, 4)
            weights = weights / (self.high - self.low)
        else:
            probs = (np.arange(m) + 0.5) / m
            axis = self.mean + self.std * np.array([NormalDist().inv_cdf(p) for p in probs])
            weights = np.full(m, 1.0 / m)
        grids = np.meshgrid(*([axis] * self.dim), indexing="ij")
        points = np.stack([g.ravel() for g in grids], axis=1)
        w = np.ones(1)
        for _ in range(self.dim):
            w = np.outer(w, weights).ravel()
        return points, w


def composite_gauss_legendre(low, high, panels: int, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of a composite Gauss-Legendre rule on [low, high] along the last axis.

    ``low`` and ``high`` may be arrays (one interval per row); the result then has a trailing
    axis of ``panels * order`` nodes.
    """
    t, w = np.polynomial.legendre.leggauss(order)
    low = np.asarray(low, dtype=float)
    width = ((np.asarray(high, dtype=float) - low) / panels)[..., None, None]
    nodes = low[..., None, None] + width * (np.arange(panels)[:, None] + (t + 1) / 2)
    weights = np.broadcast_to(width * w / 2, nodes.shape)
    shape = low.shape + (panels * order,)
    return nodes.reshape(shape), weights.reshape(shape)
