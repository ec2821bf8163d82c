"""Empirical convergence rates: fit EM over a log grid of sample sizes, with replicates.

For every (n, replicate) the data and the start are drawn from ``default_rng([seed, n, rep])``,
so a replicate does not depend on the rest of the grid. Per-n medians are regressed on n in
log-log space (OLS); bootstrap intervals resample replicates within each n.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from moe2_cli.errors import InputError, UsageError
from moe2_cli.progress import ProgressCallback, step_counter
from moe2_cli.rng import stream
from moe2_cli.stats.em import fit_em, initial_params
from moe2_cli.stats.losses import RBAR, d1, d2, expected_distances, voronoi_assignment
from moe2_cli.stats.model import MoEParams, to_reference
from moe2_cli.stats.presets import Truth

SPECS = ("exact", "over")
# The over-specified likelihood is nearly flat along the split, so a 1e-6 stop halts EM a few dozen
# iterations from its start and the split cell looks better than the MLE is; 1e-8 reaches it.
DEFAULT_TOL = {"exact": 1e-6, "over": 1e-8}
DEFAULT_REPS = {"exact": 8, "over": 5}  # over-specified fits take hundreds of iterations each
FLAG_LOGLIK_GAP = 10.0  # a fit this far below the truth's log-likelihood is flagged as a bad optimum
# The runtime model: iterations from near the truth at tol 1e-6 (measured on ident-k3K2), and how
# they grow as tol shrinks (over-specified: about 60 at 1e-6, 700 at 1e-8, weighted by n).
_ITERATIONS_AT_1E6 = {"exact": 4, "over": 60}
_ITERATION_GROWTH = {"exact": 0.05, "over": 0.55}
_METRIC_SECONDS = 0.02  # distances and losses per fit


@dataclass(frozen=True)
class RatesConfig:
    """A sweep: sample sizes, replicates per size, and the EM settings of every fit."""

    spec: str = "exact"
    sizes: tuple[int, ...] = ()
    reps: int | None = None  # None: DEFAULT_REPS of the spec
    seed: int = 0
    max_iter: int = 1500
    tol: float | None = None  # None: DEFAULT_TOL of the spec
    init_noise: float = 0.1
    n_boot: int = 1000

    def __post_init__(self) -> None:
        if self.spec not in SPECS:
            raise ValueError(f"spec must be one of {SPECS} (got {self.spec!r})")
        if not self.sizes:
            object.__setattr__(self, "sizes", default_sizes(self.spec))

    @property
    def n_reps(self) -> int:
        """Replicates per sample size: ``reps``, or the spec's default."""
        return DEFAULT_REPS[self.spec] if self.reps is None else self.reps

    @property
    def tolerance(self) -> float:
        """EM's stopping tolerance: ``tol``, or the spec's default."""
        return DEFAULT_TOL[self.spec] if self.tol is None else self.tol


def log_grid(n_min: int, n_max: int, points: int) -> tuple[int, ...]:
    """``points`` sample sizes log-spaced from n_min to n_max (rounded, duplicates dropped)."""
    return tuple(int(n) for n in np.unique(np.round(np.geomspace(n_min, n_max, points)).astype(int)))


def default_sizes(spec: str) -> tuple[int, ...]:
    """Exact: 8 sizes 501..31,623. Over-specified fits are slow: 5 sizes 1,000..10,000."""
    return log_grid(501, 31623, 8) if spec == "exact" else log_grid(1000, 10000, 5)


def rates_config(spec: str, n_min: int | None, n_max: int | None, points: int | None, reps: int | None,
                 **settings: Any) -> RatesConfig:
    """A sweep over ``points`` log-spaced sizes from ``n_min`` to ``n_max``; what is not given
    comes from the spec's defaults (:func:`default_sizes`)."""
    default = default_sizes(spec)
    n_min, n_max = n_min or default[0], n_max or default[-1]
    if n_min > n_max:
        raise UsageError(f"({n_min}) must not exceed the largest size ({n_max})", "n_min")
    sizes = log_grid(n_min, n_max, points or len(default))
    return RatesConfig(spec=spec, sizes=sizes, reps=reps, **settings)


def fit_model(truth: Truth, spec: str) -> MoEParams:
    """The truth written with the fitted number of experts: itself, or one expert split in two."""
    return truth.params if spec == "exact" else truth.over_specified()


def metric_names(spec: str) -> tuple[str, ...]:
    """Per-fit metrics: E_X Hellinger, E_X TV, D1 or D2, and parameter errors by Voronoi cell."""
    return ("hellinger", "tv", "d1" if spec == "exact" else "d2", "beta1_split", "a_split", "beta1_rest")


def theory_slopes(truth: Truth, spec: str) -> dict[str, float]:
    """The rate exponents the theorems give (upper bounds; log factors dropped)."""
    split = -0.5 if spec == "exact" else -1.0 / (2 * RBAR[2])
    a_split = -0.5 if spec == "exact" else -1.0 / RBAR[2]
    return dict(zip(metric_names(spec), (-0.5, -0.5, -0.5, split, a_split, -0.5)))


def _cell_max(errors: np.ndarray, owner: np.ndarray, cells: list[int]) -> float:
    chosen = errors[np.isin(owner, cells)]
    return float(chosen.max()) if chosen.size else float("nan")


def _voronoi_loss(fitted: MoEParams, true: MoEParams, spec: str) -> float:
    """D1 (exact) or D2 (over); NaN when a cell is too large for D2, so one odd fit cannot stop a sweep."""
    if spec == "exact":
        return d1(fitted, true)
    try:
        return d2(fitted, true)
    except InputError:
        return float("nan")


def fit_metrics(fitted: MoEParams, truth: Truth, spec: str) -> dict[str, float]:
    """The metrics of one fit against the truth (``metric_names``)."""
    true = truth.params
    dist = expected_distances(fitted, true, truth.x)
    owner = voronoi_assignment(fitted, true)
    d_beta1 = np.linalg.norm(fitted.beta1 - true.beta1[owner], axis=1)
    d_a = np.linalg.norm(fitted.a - true.a[owner], axis=1)
    # The reference expert's gate is fixed at the truth, so its β1 error says nothing.
    rest = [j for j in range(true.n_experts) if j not in (truth.split, true.n_experts - 1)]
    values = (dist.hellinger, dist.tv, _voronoi_loss(fitted, true, spec),
              _cell_max(d_beta1, owner, [truth.split]), _cell_max(d_a, owner, [truth.split]),
              _cell_max(d_beta1, owner, rest))
    return dict(zip(metric_names(spec), values))


@dataclass(frozen=True)
class Replicate:
    """One fit of the sweep."""

    n: int
    rep: int
    metrics: dict[str, float]
    iterations: int
    status: str
    loglik_gap: float  # fitted minus true log-likelihood on the same data

    @property
    def flagged(self) -> bool:
        return self.loglik_gap < -FLAG_LOGLIK_GAP


def _run_replicate(truth: Truth, config: RatesConfig, n: int, rep: int) -> Replicate:
    """Draw n samples and a near-truth start from ``default_rng([seed, n, rep])``, fit, measure."""
    rng = stream(config.seed, "rates-replicate", n, rep)
    X, Y = truth.sample(rng, n)
    init = initial_params(fit_model(truth, config.spec), "near-truth", rng, noise=config.init_noise)
    fit = fit_em(X, Y, init, max_iter=config.max_iter, tol=config.tolerance)
    gap = fit.loglik - truth.params.loglik(X, Y)
    return Replicate(n, rep, fit_metrics(fit.params, truth, config.spec), fit.iterations, fit.status, gap)


@dataclass(frozen=True)
class Slope:
    """OLS slope of log(median metric) on log n, with a bootstrap percentile interval."""

    metric: str
    slope: float
    low: float
    high: float
    theory: float


@dataclass(frozen=True)
class RatesResult:
    """A finished sweep: every replicate, per-n medians, and fitted slopes."""

    config: RatesConfig
    truth_name: str
    replicates: list[Replicate]
    medians: dict[str, np.ndarray]  # metric -> (len(sizes),)
    slopes: list[Slope]

    def values(self, metric: str) -> np.ndarray:
        """(len(sizes), reps) metric values."""
        return _values(self.replicates, metric, len(self.config.sizes))


def _values(replicates: list[Replicate], metric: str, n_sizes: int) -> np.ndarray:
    return np.array([r.metrics[metric] for r in replicates]).reshape(n_sizes, -1)


def ols_slopes(log_n: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """OLS slopes of each row of ``log_y`` (..., P) on ``log_n`` (P,), ignoring non-finite points."""
    ok = np.isfinite(log_y)
    x = np.where(ok, log_n, 0.0)
    count = ok.sum(axis=-1)
    y = np.where(ok, log_y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = x.sum(-1) / count, y.sum(-1) / count
        cov = np.sum(ok * (x - mx[..., None]) * (y - my[..., None]), axis=-1)
        var = np.sum(ok * (x - mx[..., None]) ** 2, axis=-1)
        return np.where(count >= 2, cov / var, np.nan)


def _median(values: np.ndarray, axis: int) -> np.ndarray:
    """nanmedian that returns NaN for an all-NaN slice without a warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(values, axis=axis)


def _log(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log(np.where(values > 0, values, 1.0)), np.nan)


def fit_slope(sizes, values: np.ndarray, rng: np.random.Generator, n_boot: int) -> tuple[float, float, float]:
    """Slope of log(per-n median) on log n for ``values`` (P, R), and its 95% bootstrap interval."""
    log_n = np.log(np.asarray(sizes, dtype=float))
    slope = float(ols_slopes(log_n, _log(_median(values, axis=1))))
    reps = values.shape[1]
    idx = rng.integers(0, reps, size=(n_boot,) + values.shape)
    boot = np.take_along_axis(np.broadcast_to(values, idx.shape), idx, axis=2)
    slopes = ols_slopes(log_n, _log(_median(boot, axis=2)))
    if not np.any(np.isfinite(slopes)):
        return slope, float("nan"), float("nan")
    low, high = np.nanpercentile(slopes, [2.5, 97.5])
    return slope, float(low), float(high)


def summarise(truth: Truth, config: RatesConfig, replicates: list[Replicate]) -> RatesResult:
    """Per-n medians and slopes of every metric."""
    theory = theory_slopes(truth, config.spec)
    rng = stream(config.seed, "rates-bootstrap")
    medians, slopes = {}, []
    for metric in metric_names(config.spec):
        values = _values(replicates, metric, len(config.sizes))
        medians[metric] = _median(values, axis=1)
        slope, low, high = fit_slope(config.sizes, values, rng, config.n_boot)
        slopes.append(Slope(metric, slope, low, high, theory[metric]))
    return RatesResult(config, truth.name, replicates, medians, slopes)


def run_rates(truth: Truth, config: RatesConfig, progress: ProgressCallback | None = None) -> RatesResult:
    """Fit every (n, replicate) of the sweep; ``progress`` gets a ``rates`` event after each fit.

    The truth is first written with its last expert's gate at zero, the form EM fits in.
    """
    truth = replace(truth, params=to_reference(truth.params))
    replicates = []
    step = step_counter("rates", len(config.sizes) * config.n_reps, progress)
    for n in config.sizes:
        for rep in range(config.n_reps):
            replicates.append(_run_replicate(truth, config, n, rep))
            step()
    return summarise(truth, config, replicates)


def seconds_per_sample_iteration(truth: Truth, spec: str, n: int = 4000, iterations: int = 5) -> float:
    """Time one EM iteration per sample on this machine (a short timed fit)."""
    rng = stream(0, "rates-timing")
    X, Y = truth.sample(rng, n)
    init = initial_params(fit_model(truth, spec), "near-truth", rng)
    start = time.perf_counter()
    fit_em(X, Y, init, max_iter=iterations, tol=0.0)
    return (time.perf_counter() - start) / (n * iterations)


def estimate_seconds(config: RatesConfig, per_sample_iteration: float) -> float:
    """Expected wall time of ``run_rates``: typical iterations × n × the measured unit cost."""
    growth = (1e-6 / config.tolerance) ** _ITERATION_GROWTH[config.spec] if config.tolerance > 0 else np.inf
    iterations = min(config.max_iter, _ITERATIONS_AT_1E6[config.spec] * growth)
    work = sum(config.sizes) * config.n_reps * iterations * per_sample_iteration
    return work + len(config.sizes) * config.n_reps * _METRIC_SECONDS
