"""Data-generating models: a parameter set plus the distribution of X, and the shipped presets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.stats.model import MoEParams, split_expert
from moe2_cli.stats.xdist import XDist


@dataclass(frozen=True)
class Truth:
    """The model samples are drawn from: G* and X's law. ``split`` is the expert that the
    over-specified fit duplicates (0-based)."""

    name: str
    params: MoEParams
    x: XDist
    note: str = ""
    split: int = 0

    def sample(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n i.i.d. pairs: X (n, d) from ``x`` and Y (n,) from the mixture at each X."""
        return sample(self.params, self.x, rng, n)

    def over_specified(self) -> MoEParams:
        """The same density written with one more expert (``split`` duplicated, one more selected)."""
        return split_expert(self.params, self.split)


def sample(params: MoEParams, x: XDist, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw X from ``x``, an expert from the sparse gate at X, then Y from that Gaussian expert."""
    X = x.sample(rng, n)
    cdf = np.cumsum(params.gate(X), axis=1)
    u = rng.random(n)
    # The first expert whose cumulative weight exceeds u; clip guards against cdf[-1] < 1 by rounding.
    z = np.minimum(np.sum(cdf <= u[:, None], axis=1), params.n_experts - 1)
    mean = np.sum(X * params.a[z], axis=1) + params.b[z]
    return X, mean + np.sqrt(params.sigma[z]) * rng.standard_normal(n)


def _ident_k3K2() -> Truth:
    params = MoEParams(beta0=np.array([0.5, -1.0, 0.0]), beta1=np.array([[3.0], [6.0], [0.0]]),
                       a=np.array([[0.5], [2.0], [1.0]]), b=np.array([0.0, 2.0, -2.0]),
                       sigma=np.array([0.09, 0.16, 0.12]), top_k=2, select_on="score")
    note = ("identifiable default: k*=3, K=2, X ~ U[-1,1]; expert 1 is selected everywhere, "
            "expert 3 is the reference")
    return Truth("ident-k3K2", params, XDist("uniform", 1, -1.0, 1.0), note)


def _paper_top1() -> Truth:
    params = MoEParams(beta0=np.array([-8.0, 0.0]), beta1=np.array([[25.0], [0.0]]), a=np.array([[-20.0], [20.0]]),
                       b=np.array([15.0, -5.0]), sigma=np.array([0.3, 0.4]), top_k=1, select_on="logit")
    note = ("as in an unattributed public implementation (not confirmed as the paper's): k*=2, "
            "K=1, X ~ N(0,1); with K=1 the gate's bias and scale are not identifiable")
    return Truth("paper-top1", params, XDist("normal", 1, mean=0.0, std=1.0), note)


PRESETS = {"ident-k3K2": _ident_k3K2, "paper-top1": _paper_top1}


def preset(name: str) -> Truth:
    """A shipped model by name; KeyError lists the names."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
