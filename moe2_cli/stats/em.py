"""EM for the top-K sparse softmax gating Gaussian MoE.

Each iteration: an E-step (responsibilities r ∝ gate · expert density); closed-form weighted
least squares for every expert; one Newton (IRLS) step for the gate on Q with the top-K sets
frozen at the current parameters. Selection cannot be optimised through Q (Q is -inf once a
selected expert with r > 0 is dropped), so the gate step is a generalised-EM step: it is kept
only if the observed log-likelihood, with selection recomputed, does not fall; otherwise it is
halved. The expert step is an exact M-step for a fixed gate, so the log-likelihood never falls.
The reference expert's (β0, β1) stays at its initial value, which removes the translation
invariance of the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.gating.topk import logsumexp, shifted_exp
from moe2_cli.progress import ProgressCallback, ProgressEvent
from moe2_cli.stats.model import MoEParams, to_reference

INITS = ("near-truth", "random")
MIN_VARIANCE = 1e-6  # keeps a collapsing expert from sending the likelihood to +inf
_HALVINGS = 20  # the last trial step is 2^-19 of the Newton step
_RIDGE = 1e-9


@dataclass(frozen=True, eq=False)
class FitResult:
    """A finished fit: the estimate, the log-likelihood after each iteration, and why it stopped."""

    params: MoEParams
    trace: np.ndarray  # observed log-likelihood, trace[0] at the initial parameters
    iterations: int
    status: str  # "converged" (mean log-likelihood moved < tol) or "max-iter"
    n: int

    @property
    def converged(self) -> bool:
        return self.status == "converged"

    @property
    def loglik(self) -> float:
        return float(self.trace[-1])


def _design(X: np.ndarray) -> np.ndarray:
    """(n, d+1) rows [1, x]: the features of both the experts' regression and the gate."""
    return np.hstack([np.ones((X.shape[0], 1)), X])


def responsibilities(log_joint: np.ndarray) -> tuple[np.ndarray, float]:
    """E-step: responsibilities (n, k) from log(gate · density), zero for unselected experts,
    and the observed log-likelihood."""
    joint, top = shifted_exp(log_joint, axis=1)
    total = np.sum(joint, axis=1, keepdims=True)
    return joint / total, float(np.sum(top[:, 0] + np.log(total[:, 0])))


def _weighted_gram(weights: np.ndarray, Z: np.ndarray) -> np.ndarray:
    """(k, p, p) matrices Σₙ wₙᵢ zₙ zₙᵀ, one per column of ``weights``, as a single matrix product."""
    n, k = weights.shape
    p = Z.shape[1]
    return ((weights[:, :, None] * Z[:, None, :]).reshape(n, k * p).T @ Z).reshape(k, p, p)


def expert_step(params: MoEParams, Z: np.ndarray, Y: np.ndarray, resp: np.ndarray) -> MoEParams:
    """Weighted least squares of Y on [1, X] per expert with weights r, then the weighted variance."""
    mass = resp.sum(axis=0)
    gram = _weighted_gram(resp, Z)
    rhs = resp.T @ (Z * Y[:, None])
    gram += _RIDGE * np.eye(Z.shape[1]) * (1.0 + np.trace(gram, axis1=1, axis2=2))[:, None, None]
    coef = np.linalg.solve(gram, rhs[..., None])[..., 0]
    resid = Y[:, None] - Z @ coef.T
    sigma = np.maximum(np.einsum("ni,ni->i", resp, resid ** 2) / np.maximum(mass, 1e-300), MIN_VARIANCE)
    # An expert no sample is assigned to keeps its parameters: its least squares is undetermined.
    alive = mass > 1e-8
    return params.with_(a=np.where(alive[:, None], coef[:, 1:], params.a),
                        b=np.where(alive, coef[:, 0], params.b),
                        sigma=np.where(alive, sigma, params.sigma))


def gate_newton_direction(w: np.ndarray, resp: np.ndarray, Z: np.ndarray, ref: int) -> np.ndarray:
    """Newton direction (k, d+1) for Q_gate = Σ r log w at gate weights ``w`` on frozen top-K sets.

    Q_gate is a multinomial logistic log-likelihood over each row's selected experts, so it is
    concave; the reference row of the direction is zero.
    """
    n, k = w.shape
    p = Z.shape[1]
    free = np.arange(k) != ref
    grad = ((resp - w).T @ Z)[free]
    wz = (w[:, :, None] * Z[:, None, :]).reshape(n, k * p)
    neg_hess = -(wz.T @ wz).reshape(k, p, k, p)
    neg_hess[np.arange(k), :, np.arange(k), :] += _weighted_gram(w, Z)
    m = int(free.sum()) * p
    neg_hess = neg_hess[free][:, :, free].reshape(m, m)
    neg_hess += _RIDGE * (1.0 + np.trace(neg_hess)) * np.eye(m)
    direction = np.zeros((k, p))
    direction[free] = np.linalg.solve(neg_hess, grad.reshape(m)).reshape(-1, p)
    return direction


def _loglik(log_gate: np.ndarray, log_expert: np.ndarray) -> float:
    return float(np.sum(logsumexp(log_gate + log_expert, axis=1)))


def gate_step(params: MoEParams, X: np.ndarray, Z: np.ndarray, resp: np.ndarray, log_gate: np.ndarray,
              log_expert: np.ndarray, ref: int) -> tuple[MoEParams, np.ndarray]:
    """A safeguarded gate step: the longest of 1, 1/2, 1/4, ... that does not lower the observed
    log-likelihood (selection recomputed). Returns the gate parameters and their log gate weights."""
    current = _loglik(log_gate, log_expert)
    direction = gate_newton_direction(np.exp(log_gate), resp, Z, ref)
    step = 1.0
    for _ in range(_HALVINGS):
        trial = params.with_(beta0=params.beta0 + step * direction[:, 0],
                             beta1=params.beta1 + step * direction[:, 1:])
        trial_log_gate = trial.log_gate(X)
        if _loglik(trial_log_gate, log_expert) >= current:
            return trial, trial_log_gate
        step /= 2
    return params, log_gate


def fit_em(X: np.ndarray, Y: np.ndarray, init: MoEParams, *, max_iter: int = 2000, tol: float = 1e-6,
           ref: int = -1, progress: ProgressCallback | None = None) -> FitResult:
    """Fit by EM from ``init``; stop when the mean log-likelihood moves less than ``tol``.

    ``ref`` is the reference expert whose (β0, β1) is held fixed. ``progress`` gets an ``em``
    event after each iteration, with the log-likelihood in its values.
    """
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float)
    Z = _design(X)
    n = X.shape[0]
    ref = ref % init.n_experts
    params = init
    log_gate = params.log_gate(X)
    resp, loglik = responsibilities(log_gate + params.log_expert(X, Y))
    trace = [loglik]
    status = "max-iter"
    for it in range(1, max_iter + 1):
        params = expert_step(params, Z, Y, resp)
        log_expert = params.log_expert(X, Y)
        params, log_gate = gate_step(params, X, Z, resp, log_gate, log_expert, ref)
        resp, loglik = responsibilities(log_gate + log_expert)
        trace.append(loglik)
        if progress is not None:
            progress(ProgressEvent("em", it, max_iter, {"loglik": loglik}))
        if abs(trace[-1] - trace[-2]) < tol * n:
            status = "converged"
            break
    return FitResult(params, np.array(trace), len(trace) - 1, status, n)


def initial_params(template: MoEParams, how: str, rng: np.random.Generator, *, noise: float = 0.1,
                   Y: np.ndarray | None = None) -> MoEParams:
    """Starting parameters shaped like ``template``, in reference form (last expert's gate at 0).

    ``near-truth``: the template plus N(0, noise²) on β0, β1, a, b and variances times
    (1 + noise·N(0,1)). ``random``: gate and slopes N(0, 1), intercepts at random quantiles of
    Y, variances var(Y).
    """
    if how not in INITS:
        raise ValueError(f"init must be one of {INITS} (got {how!r})")
    k, d = template.n_experts, template.dim
    if how == "near-truth":
        start = template.with_(
            beta0=template.beta0 + noise * rng.standard_normal(k),
            beta1=template.beta1 + noise * rng.standard_normal((k, d)),
            a=template.a + noise * rng.standard_normal((k, d)),
            b=template.b + noise * rng.standard_normal(k),
            sigma=template.sigma * np.maximum(1 + noise * rng.standard_normal(k), 0.1))
    else:
        y = np.zeros(1) if Y is None else np.asarray(Y, dtype=float)
        start = template.with_(
            beta0=rng.standard_normal(k), beta1=rng.standard_normal((k, d)),
            a=rng.standard_normal((k, d)), b=np.quantile(y, rng.random(k)),
            sigma=np.full(k, max(float(np.var(y)), MIN_VARIANCE)))
    return to_reference(start)
