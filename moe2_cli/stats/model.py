"""The top-K sparse softmax gating Gaussian mixture of experts: parameters, gate and density.

    g(y|x) = Σ_i Softmax(TopK(β1ᵢᵀx, K; β0ᵢ)) · N(y | aᵢᵀx + bᵢ, σᵢ)

σ is a variance. ``select_on="score"`` picks the K largest β1ᵀx and adds β0 after selection (the
paper's definition, as recalled); ``"logit"`` picks the K largest β1ᵀx + β0 (the convention of
moe2's level-2 gate).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from moe2_cli.gating.topk import logsumexp, masked_log_softmax, topk_mask

SELECT_ON = ("score", "logit")
LOG_2PI = float(np.log(2 * np.pi))


def _frozen(values, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A read-only float copy of ``values`` in ``shape``."""
    array = np.array(values, dtype=float)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{name} must have shape {shape} (got {array.shape})")
    array = array.reshape(shape)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class MoEParams:
    """Parameters of k experts in d dimensions; ``top_k`` experts are selected at each x."""

    beta0: np.ndarray  # (k,) gate biases
    beta1: np.ndarray  # (k, d) gate slopes
    a: np.ndarray  # (k, d) expert slopes
    b: np.ndarray  # (k,) expert intercepts
    sigma: np.ndarray  # (k,) expert variances
    top_k: int
    select_on: str = "score"

    def __post_init__(self) -> None:
        k = np.size(self.beta0)
        d = np.size(self.beta1) // max(k, 1)
        if k < 1 or d < 1:
            raise ValueError("a model needs at least one expert and one input dimension")
        for name, shape in (("beta0", (k,)), ("beta1", (k, d)), ("a", (k, d)), ("b", (k,)), ("sigma", (k,))):
            object.__setattr__(self, name, _frozen(getattr(self, name), shape, name))
        if not 1 <= self.top_k <= k:
            raise ValueError(f"top_k must be in 1..{k} (got {self.top_k})")
        if self.select_on not in SELECT_ON:
            raise ValueError(f"select_on must be one of {SELECT_ON} (got {self.select_on!r})")
        if not np.all(self.sigma > 0):
            raise ValueError("every variance sigma must be > 0")

    @property
    def n_experts(self) -> int:
        return self.beta0.shape[0]

    @property
    def dim(self) -> int:
        return self.beta1.shape[1]

    def with_(self, **changes) -> MoEParams:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def selected(self, X: np.ndarray) -> np.ndarray:
        """(n, k) mask of the experts the gate selects at each row of X."""
        scores = X @ self.beta1.T
        key = scores + self.beta0 if self.select_on == "logit" else scores
        return topk_mask(key, self.top_k)

    def log_gate(self, X: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """(n, k) log gate weights, -inf for unselected experts; ``mask`` freezes the selection."""
        mask = self.selected(X) if mask is None else mask
        return masked_log_softmax(X @ self.beta1.T + self.beta0, mask)

    def gate(self, X: np.ndarray) -> np.ndarray:
        """(n, k) gate weights: each row sums to 1 over its ``top_k`` selected experts."""
        return np.exp(self.log_gate(X))

    def means(self, X: np.ndarray) -> np.ndarray:
        """(n, k) expert means aᵢᵀx + bᵢ."""
        return X @ self.a.T + self.b

    def log_expert(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """(n, k) Gaussian log densities log N(yₙ | aᵢᵀxₙ + bᵢ, σᵢ)."""
        resid = Y[:, None] - self.means(X)
        return -0.5 * (LOG_2PI + np.log(self.sigma) + resid ** 2 / self.sigma)

    def log_joint(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """(n, k) log(gate · expert density), -inf for unselected experts."""
        return self.log_gate(X) + self.log_expert(X, Y)

    def log_density(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """(n,) log g(yₙ | xₙ)."""
        return logsumexp(self.log_joint(X, Y), axis=1)

    def loglik(self, X: np.ndarray, Y: np.ndarray) -> float:
        """Observed log-likelihood Σₙ log g(yₙ | xₙ)."""
        return float(np.sum(self.log_density(X, Y)))


def translate_gate(params: MoEParams, t0: float, t1: np.ndarray) -> MoEParams:
    """Add (t0, t1) to every (β0ᵢ, β1ᵢ): the gate, hence the density, does not change."""
    return params.with_(beta0=params.beta0 + t0, beta1=params.beta1 + np.asarray(t1, dtype=float))


def to_reference(params: MoEParams, ref: int = -1) -> MoEParams:
    """Translate the gate so expert ``ref`` has (β0, β1) = (0, 0), the identifiable form."""
    return translate_gate(params, -params.beta0[ref], -params.beta1[ref])


def split_expert(params: MoEParams, index: int) -> MoEParams:
    """k+1 experts: expert ``index`` becomes two copies with β0 − log 2 each, and one more is selected.

    When expert ``index`` is selected everywhere (expert 1 of ``ident-k3K2``), both copies are
    too and the density is unchanged: the over-specified truth a fit with k+1 experts approaches.
    """
    rows = np.insert(np.arange(params.n_experts), index, index)
    beta0 = params.beta0[rows].copy()
    beta0[index:index + 2] -= np.log(2.0)
    return params.with_(beta0=beta0, beta1=params.beta1[rows], a=params.a[rows], b=params.b[rows],
                        sigma=params.sigma[rows], top_k=params.top_k + 1)
