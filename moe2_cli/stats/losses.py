"""How far a fitted mixing measure is from the truth: Voronoi losses D1, D2 and density distances.

An atom is ωᵢ = (β1ᵢ, aᵢ, bᵢ, σᵢ) with mass exp(β0ᵢ). Each fitted atom belongs to the Voronoi
cell of its nearest true atom (ties to the lowest true index). D1 weighs every parameter error
linearly; D2 raises errors in cells of m ≥ 2 atoms to the power r̄(m) (r̄(m)/2 for a and σ),
matching the slower rates of over-specified cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from moe2_cli.errors import InputError
from moe2_cli.gating.topk import logsumexp, shifted_exp
from moe2_cli.stats.model import MoEParams, translate_gate
from moe2_cli.stats.xdist import XDist, composite_gauss_legendre

RBAR = {1: 1, 2: 4, 3: 6}  # r̄(m): known for cells of 1-3 atoms only
_TAIL_SD = 10.0  # the y range covers every active expert's mean ± 10 standard deviations
_Y_PANELS, _Y_ORDER = 64, 4


def atoms(params: MoEParams) -> np.ndarray:
    """(k, 2d+2) rows ωᵢ = (β1ᵢ, aᵢ, bᵢ, σᵢ): an atom does not contain β0."""
    return np.hstack([params.beta1, params.a, params.b[:, None], params.sigma[:, None]])


def voronoi_assignment(fitted: MoEParams, truth: MoEParams) -> np.ndarray:
    """(k,) index of the nearest true atom of every fitted atom (Euclidean; ties to the lowest)."""
    if fitted.dim != truth.dim:
        raise InputError(f"the fitted model has input dimension {fitted.dim} but the truth has {truth.dim}")
    diff = atoms(fitted)[:, None, :] - atoms(truth)[None, :, :]
    return np.argmin(np.linalg.norm(diff, axis=2), axis=1)


def voronoi_cells(fitted: MoEParams, truth: MoEParams) -> list[list[int]]:
    """A_j for every true atom j: the fitted atoms (0-based) nearest to it."""
    owner = voronoi_assignment(fitted, truth)
    return [np.flatnonzero(owner == j).tolist() for j in range(truth.n_experts)]


def kbar(cell_sizes, top_k: int) -> int:
    """K̄ = the largest total size of ``top_k`` cells: the sum of the ``top_k`` largest |A_j|."""
    return int(sum(sorted((int(s) for s in cell_sizes), reverse=True)[:top_k]))


def rbar(m: int) -> int:
    """r̄(m) for a cell of m atoms; InputError beyond the known values."""
    if m not in RBAR:
        raise InputError(f"D2 needs r̄ for a Voronoi cell of {m} fitted atoms; it is known only for "
                         f"cells of 1 to {max(RBAR)} atoms")
    return RBAR[m]


def _errors(fitted: MoEParams, truth: MoEParams, owner: np.ndarray) -> np.ndarray:
    """(k, 4) per fitted atom: ‖Δβ1‖, ‖Δa‖, |Δb|, |Δσ| against the true atom of its cell."""
    return np.stack([np.linalg.norm(fitted.beta1 - truth.beta1[owner], axis=1),
                     np.linalg.norm(fitted.a - truth.a[owner], axis=1),
                     np.abs(fitted.b - truth.b[owner]),
                     np.abs(fitted.sigma - truth.sigma[owner])], axis=1)


def _loss(fitted: MoEParams, truth: MoEParams, owner: np.ndarray, errors: np.ndarray) -> float:
    """Σᵢ exp(β0ᵢ)·errorsᵢ + Σ_j |Σ_{i∈A_j} exp(β0ᵢ) − exp(β*0j)| (empty cells included).

    A fit whose β0 drifted past ~700 has an infinite mass; the loss is then inf, not a warning.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        mass = np.exp(fitted.beta0)
        cell_mass = np.bincount(owner, weights=mass, minlength=truth.n_experts)
        return float(np.sum(mass * errors) + np.sum(np.abs(cell_mass - np.exp(truth.beta0))))


def d1(fitted: MoEParams, truth: MoEParams) -> float:
    """D1: mass-weighted linear parameter errors plus the cell mass mismatch (exact-specified loss)."""
    owner = voronoi_assignment(fitted, truth)
    return _loss(fitted, truth, owner, _errors(fitted, truth, owner).sum(axis=1))


def d2(fitted: MoEParams, truth: MoEParams) -> float:
    """D2: like D1, but errors in a cell of m ≥ 2 atoms are raised to r̄(m) (r̄(m)/2 for a and σ)."""
    owner = voronoi_assignment(fitted, truth)
    sizes = np.bincount(owner, minlength=truth.n_experts)[owner]
    r = np.array([rbar(int(m)) for m in sizes], dtype=float)
    exponents = np.where(sizes[:, None] > 1, np.stack([r, r / 2, r, r / 2], axis=1), 1.0)
    return _loss(fitted, truth, owner, np.sum(_errors(fitted, truth, owner) ** exponents, axis=1))


def align_translation(fitted: MoEParams, truth: MoEParams, ref: int = -1) -> MoEParams:
    """Translate the fitted gate so the atoms in the true reference cell carry its gate.

    After the shift, the cell's masses sum to exp(β*0,ref) and its mass-weighted mean β1 equals
    β*1,ref; the density does not change. Needed when a fit splits the reference expert.
    """
    cell = voronoi_cells(fitted, truth)[ref]
    if not cell:
        raise InputError("cannot align the gate: no fitted atom lies in the reference expert's Voronoi cell")
    mass, _ = shifted_exp(fitted.beta0[cell], axis=0)
    t1 = truth.beta1[ref] - mass @ fitted.beta1[cell] / mass.sum()
    t0 = truth.beta0[ref] - float(logsumexp(fitted.beta0[cell], axis=0))
    return translate_gate(fitted, t0, t1)


@dataclass(frozen=True)
class Distances:
    """E_X of the Hellinger and total-variation distances between two conditional densities of Y."""

    hellinger: float
    tv: float


def _mixture_density(params: MoEParams, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """(m, q) density g(Y[j, :] | X[j]) on a y grid per x."""
    mean = params.means(X)[:, None, :]
    comp = np.exp(-0.5 * (Y[:, :, None] - mean) ** 2 / params.sigma) / np.sqrt(2 * np.pi * params.sigma)
    return np.einsum("mqi,mi->mq", comp, params.gate(X))


def _y_range(params: MoEParams, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per x, the lowest and highest mean ∓ 10 sd over the experts the gate selects."""
    active = params.selected(X)
    mean, sd = params.means(X), np.sqrt(params.sigma)
    lo = np.min(np.where(active, mean - _TAIL_SD * sd, np.inf), axis=1)
    hi = np.max(np.where(active, mean + _TAIL_SD * sd, -np.inf), axis=1)
    return lo, hi


def expected_distances(p: MoEParams, q: MoEParams, x: XDist) -> Distances:
    """E_X h(g_p(·|X), g_q(·|X)) with h² = ½∫(√g_p − √g_q)², and E_X TV with TV = ½∫|g_p − g_q|.

    Quadrature over X (``XDist.nodes``) and, per x, composite Gauss-Legendre over a y range
    covering every selected expert of both models. h² is summed directly, never as 1 − ∫√(g_p g_q),
    so tiny distances keep their relative accuracy.
    """
    X, wx = x.nodes()
    lo_p, hi_p = _y_range(p, X)
    lo_q, hi_q = _y_range(q, X)
    Y, wy = composite_gauss_legendre(np.minimum(lo_p, lo_q), np.maximum(hi_p, hi_q), _Y_PANELS, _Y_ORDER)
    gp, gq = _mixture_density(p, X, Y), _mixture_density(q, X, Y)
    h2 = 0.5 * np.sum(wy * (np.sqrt(gp) - np.sqrt(gq)) ** 2, axis=1)
    tv = 0.5 * np.sum(wy * np.abs(gp - gq), axis=1)
    return Distances(hellinger=float(wx @ np.sqrt(np.clip(h2, 0.0, 1.0))), tv=float(wx @ np.clip(tv, 0.0, 1.0)))


def expected_hellinger(p: MoEParams, q: MoEParams, x: XDist) -> float:
    """E_X of the Hellinger distance (see ``expected_distances``)."""
    return expected_distances(p, q, x).hellinger


def fit_losses(estimate: MoEParams, truth: MoEParams, x: XDist) -> tuple[dict[str, float | int], list[list[int]]]:
    """Every loss of a fitted model against the truth (D1, D2, E_X Hellinger and TV, K̄, the
    fitted K) and the Voronoi cells (0-based fitted atoms per true expert)."""
    cells = voronoi_cells(estimate, truth)
    distances = expected_distances(estimate, truth, x)
    values: dict[str, float | int] = {
        "d1": d1(estimate, truth), "d2": d2(estimate, truth), "hellinger": distances.hellinger, "tv": distances.tv,
        "kbar": kbar([len(c) for c in cells], truth.top_k), "fitted_top_k": estimate.top_k}
    return values, cells
