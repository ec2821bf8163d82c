"""`moe2 stats`: simulate, fit, measure and sweep a top-K sparse softmax gating Gaussian MoE."""

from __future__ import annotations

import inspect
import sys
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from moe2_cli.cli.common import handles_errors, plural, progress_bar
from moe2_cli.cli.options import FormatOpt, OutputFormat, SeedOpt
from moe2_cli.cli.render import Column, emit, stderr_console, to_table
from moe2_cli.errors import Diagnostic, InputError, UsageError
from moe2_cli.fileio import atomic_output, check_writable, write_atomic
from moe2_cli.rng import stream
from moe2_cli.stats.em import fit_em, initial_params
from moe2_cli.stats.losses import (
    align_translation,
    fit_losses,
    rbar,
)
from moe2_cli.stats.model import to_reference
from moe2_cli.stats.params_file import dump_truth, load_truth, truth_to_dict
from moe2_cli.stats.plot import check_plot_path, plot_rates
from moe2_cli.stats.presets import PRESETS, Truth, preset
from moe2_cli.stats.rates import (
    DEFAULT_TOL,
    estimate_seconds,
    fit_model,
    rates_config,
    run_rates,
    seconds_per_sample_iteration,
)
from moe2_cli.stats.samples import (
    format_for,
    load_samples,
    sample_chunks,
)

app = typer.Typer(
    name="stats",
    help="Top-K sparse softmax gating Gaussian mixture of experts (Nguyen, Akbarian, Yan, Ho; arXiv "
    "2309.13850): draw samples, fit by EM, measure Voronoi losses and density distances, and "
    "measure convergence rates.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

Preset = Enum("Preset", {name: name for name in PRESETS}, type=str)  # type: ignore[misc]  # members from PRESETS


# A rich table of ten thousand rows takes seconds to draw and more to read; files take millions.
MAX_TABLE_SAMPLES = 10_000


class Spec(str, Enum):
    exact = "exact"
    over = "over"


class Init(str, Enum):
    near_truth = "near-truth"
    random = "random"


PresetOpt = Annotated[Preset | None, typer.Option(
    "--preset", help="Shipped model: ident-k3K2 (identifiable, k*=3, K=2; the default) or paper-top1 "
    "(k*=2, K=1, as in an unattributed public implementation).")]
ParamsOpt = Annotated[Path | None, typer.Option(
    "--params", help="YAML parameter file instead of a preset (keys: top_k, select_on, x, experts with "
    "beta0, beta1, a, b, sigma as a variance).", dir_okay=False)]
SpecOpt = Annotated[Spec, typer.Option(
    "--spec", help="exact: fit as many experts as the model has. over: one more, by splitting expert "
    "--split in two, and select one more (K̄ = K + 1).")]
SplitOpt = Annotated[int, typer.Option("--split", min=1, help="Expert (1-based) that --spec over duplicates.")]
MaxIterOpt = Annotated[int, typer.Option("--max-iter", min=1, max=100_000, help="EM iteration cap.")]
TolOpt = Annotated[float | None, typer.Option(
    "--tol", min=0.0, help="Stop when the mean log-likelihood per sample moves less than this. "
    "Default 1e-6 exact, 1e-8 over: the over-specified likelihood is flat along the split, and a "
    "looser stop halts EM near its start.")]
NoiseOpt = Annotated[float, typer.Option(
    "--noise", min=0.0, help="near-truth start: N(0, noise²) on β0, β1, a, b; variances × (1 + noise·N(0,1)).")]


def _reflowed(fn):
    """Join the lines of each docstring paragraph: typer keeps single line breaks after the first."""
    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    fn.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    return fn


def _truth(preset_name: Preset | None, params: Path | None, split: int = 1) -> Truth:
    """The model from --preset or --params (not both), with its split expert set."""
    if preset_name is not None and params is not None:
        raise UsageError("give --preset or --params, not both")
    truth = load_truth(params) if params is not None else preset((preset_name or Preset["ident-k3K2"]).value)
    if not 1 <= split <= truth.params.n_experts:
        raise UsageError(f"--split must be an expert of the model, 1..{truth.params.n_experts} (got {split})")
    return replace(truth, split=split - 1)


def _fmt_vector(values) -> str:
    return " ".join(f"{v:.4g}" for v in np.ravel(values))


def _expert_rows(params) -> list[dict]:
    return [{"expert": i + 1, "beta0": float(params.beta0[i]), "beta1": params.beta1[i].tolist(),
             "a": params.a[i].tolist(), "b": float(params.b[i]), "sigma": float(params.sigma[i])}
            for i in range(params.n_experts)]


EXPERT_COLUMNS = [Column("expert", "expert"), Column("beta0", "β0"), Column("beta1", "β1", _fmt_vector),
                  Column("a", "a", _fmt_vector), Column("b", "b"), Column("sigma", "σ (variance)")]


@app.command()
@_reflowed
@handles_errors
def simulate(
    n: Annotated[int, typer.Option("-n", "--n", min=1, max=10_000_000, help="Number of (x, y) samples (a table "
                                   f"shows at most {MAX_TABLE_SAMPLES:,}).")] = 1000,
    preset_name: PresetOpt = None,
    params: ParamsOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", dir_okay=False, help="Write the samples here (.jsonl: JSON lines, else CSV) and print "
        "a summary instead.")] = None,
    seed: SeedOpt = 0,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Draw n samples (x, y): x from the model's input law, an expert from the top-K gate, y from it.

    Without --out the samples go to stdout: a table, CSV (--format csv) or JSON lines (--format json),
    both readable by `moe2 stats fit`.

    Example: moe2 stats simulate --preset ident-k3K2 -n 2000 --seed 1 --out samples.csv
    """
    if out is not None:
        check_writable(out, "out")
    elif fmt is OutputFormat.table and n > MAX_TABLE_SAMPLES:
        raise UsageError(f"a table shows at most {MAX_TABLE_SAMPLES:,} samples (got -n {n:,}): write them with "
                         "--out FILE, or to stdout with --format csv or json")
    truth = _truth(preset_name, params)
    X, Y = truth.sample(stream(seed, "stats-sample"), n)
    if out is None and fmt is not OutputFormat.table:
        with progress_bar("writing samples", n) as progress:
            sys.stdout.writelines(sample_chunks(X, Y, "jsonl" if fmt is OutputFormat.json else "csv",
                                                progress=progress))
        return
    if out is None:
        rows = [{**{f"x{j + 1}": float(x[j]) for j in range(X.shape[1])}, "y": float(y)} for x, y in zip(X, Y)]
        columns = [Column(f"x{j + 1}", f"x{j + 1}") for j in range(X.shape[1])] + [Column("y", "y")]
        emit(fmt.value, payload=rows, rows=rows, columns=columns, title=f"{plural(n, 'sample')} from {truth.name}")
        return
    with atomic_output(out) as target, progress_bar("writing samples", n) as progress:
        target.writelines(sample_chunks(X, Y, format_for(out), progress=progress))
    summary = {"model": truth.name, "n": n, "dim": X.shape[1], "seed": seed, "out": str(out),
               "format": format_for(out), "y_mean": float(np.mean(Y)), "y_sd": float(np.std(Y))}
    columns = [Column(key, key) for key in summary]
    emit(fmt.value, payload=summary, rows=[summary], columns=columns, title="samples written")


def _read_samples(path: Path, dim: int) -> tuple[np.ndarray, np.ndarray]:
    X, Y = load_samples(path)
    if X.shape[1] != dim:
        raise InputError(Diagnostic(str(path), None, None,
                                    f"samples have {X.shape[1]} input columns but the model has dimension {dim}"))
    return X, Y


@app.command()
@_reflowed
@handles_errors
def fit(
    samples: Annotated[Path, typer.Argument(help="Samples from `moe2 stats simulate` (CSV or JSON lines; - for stdin).",
                                            dir_okay=False)],
    preset_name: PresetOpt = None,
    params: ParamsOpt = None,
    spec: SpecOpt = Spec.exact,
    split: SplitOpt = 1,
    init: Annotated[Init, typer.Option("--init", help="near-truth: the model plus noise. random: random gate "
                                                      "and experts, intercepts at quantiles of y.")] = Init.near_truth,
    noise: NoiseOpt = 0.1,
    max_iter: MaxIterOpt = 2000,
    tol: TolOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", dir_okay=False,
                                                help="Write the fitted model as a parameter file (YAML).")] = None,
    trace: Annotated[bool, typer.Option("--trace", help="Also show the log-likelihood after every iteration.")] = False,
    seed: SeedOpt = 0,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Fit the model to samples by EM and print the estimate, the log-likelihood and the stopping status.

    Each iteration: E-step; weighted least squares for every expert; a Newton step for the gate with
    the top-K sets frozen, kept only if the observed log-likelihood does not fall (else halved). The
    last expert's gate (β0, β1) is fixed at 0 for identifiability. --preset/--params give the number
    of experts, K, the selection rule, and the near-truth start.

    Example: moe2 stats fit samples.csv --preset ident-k3K2 --spec over --out fitted.yaml
    """
    if out is not None:
        check_writable(out, "out")
    truth = _truth(preset_name, params, split)
    truth = replace(truth, params=to_reference(truth.params))
    X, Y = _read_samples(samples, truth.params.dim)
    start = initial_params(fit_model(truth, spec.value), init.value, stream(seed, "em-start"), noise=noise, Y=Y)
    with progress_bar("EM iterations", max_iter) as progress:
        result = fit_em(X, Y, start, max_iter=max_iter, tol=DEFAULT_TOL[spec.value] if tol is None else tol,
                        progress=progress)
    fitted = replace(truth, name=f"{truth.name}-fit", params=result.params)
    if out is not None:
        write_atomic(out, dump_truth(fitted))
    _emit_fit(truth.name, fitted, spec, init, result, truth.params.loglik(X, Y), fmt, trace)


def _emit_fit(model: str, fitted: Truth, spec: Spec, init: Init, result, loglik_model: float, fmt: OutputFormat,
              trace: bool) -> None:
    payload = {"model": model, "spec": spec.value, "init": init.value, "n": result.n,
               "status": result.status, "iterations": result.iterations, "loglik": result.loglik,
               "loglik_model": loglik_model, "params": truth_to_dict(fitted), "trace": result.trace.tolist()}
    title = (f"{spec.value}-specified fit of {model} on {result.n} samples: {result.status} after {result.iterations} "
             f"iterations, log-likelihood {result.loglik:.6g} (true model: {loglik_model:.6g})")
    extra = [to_table([{"iteration": i, "loglik": v} for i, v in enumerate(result.trace)],
                      [Column("iteration", "iteration"), Column("loglik", "log-likelihood", lambda v: f"{v:.10g}")],
                      title="log-likelihood trace")] if trace else None
    emit(fmt.value, payload=payload, rows=_expert_rows(result.params), columns=EXPERT_COLUMNS, title=title,
         extra=extra)


@app.command()
@_reflowed
@handles_errors
def loss(
    fitted: Annotated[Path, typer.Argument(help="Fitted model: a parameter file, e.g. from `moe2 stats fit --out`.",
                                           dir_okay=False)],
    preset_name: PresetOpt = None,
    params: ParamsOpt = None,
    align: Annotated[bool, typer.Option(
        "--align-translation", help="First shift the fitted gate so the atoms in the reference expert's cell "
        "carry the true reference gate (needed when a fit splits the reference expert).")] = False,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Compare a fitted model with the true one: Voronoi cells, D1, D2, E_X Hellinger and TV, and K̄.

    Atoms are (β1, a, b, σ) with mass exp(β0); each fitted atom joins the cell A_j of its nearest
    true atom. D1 is the exact-specified loss. D2 raises errors in a cell of m ≥ 2 atoms to r̄(m)
    (r̄ = 1, 4, 6 for m = 1, 2, 3; larger cells are refused). Hellinger and total variation are
    averaged over X by quadrature. K̄ is the largest total size of K cells (K of the true model).
    The true model is first written with its last expert's gate at 0, the form fits are in.

    Example: moe2 stats loss fitted.yaml --preset ident-k3K2
    """
    truth = _truth(preset_name, params)
    truth = replace(truth, params=to_reference(truth.params))
    estimate = load_truth(fitted).params
    if align:
        estimate = align_translation(estimate, truth.params)
    values, cells = fit_losses(estimate, truth.params, truth.x)
    cell_rows = [{"quantity": f"A_{j + 1}", "value": [i + 1 for i in cell],
                  "meaning": f"fitted atoms in the cell of true expert {j + 1}{_rbar_note(len(cell))}"}
                 for j, cell in enumerate(cells)]
    meaning = {"d1": "Voronoi loss D1", "d2": "Voronoi loss D2", "hellinger": "E_X Hellinger distance",
               "tv": "E_X total variation", "kbar": f"K̄ for K = {truth.params.top_k}",
               "fitted_top_k": "experts the fitted gate selects"}
    rows = [{"quantity": key, "value": value, "meaning": meaning[key]} for key, value in values.items()] + cell_rows
    payload = {**values, "cells": [[i + 1 for i in cell] for cell in cells], "model": truth.name,
               "aligned": align}
    columns = [Column("quantity", "quantity", justify="left"), Column("value", "value"),
               Column("meaning", "meaning", justify="left")]
    emit(fmt.value, payload=payload, rows=rows, columns=columns, title=f"{fitted} against {truth.name}")


def _rbar_note(size: int) -> str:
    return f" (r̄ = {rbar(size)})" if size else " (empty)"


def _metric_headers(split: int) -> dict[str, str]:
    """Table headers; ``split`` is the 0-based expert whose cell the *_split metrics look at."""
    cell = f"A_{split + 1}"
    return {"hellinger": "E_X Hellinger", "tv": "E_X TV", "d1": "D1", "d2": "D2",
            "beta1_split": f"max‖Δβ1‖ in {cell}", "a_split": f"max‖Δa‖ in {cell}",
            "beta1_rest": "max‖Δβ1‖ other cells"}


@app.command()
@_reflowed
@handles_errors
def rates(
    preset_name: PresetOpt = None,
    params: ParamsOpt = None,
    spec: SpecOpt = Spec.exact,
    split: SplitOpt = 1,
    n_min: Annotated[int | None, typer.Option("--n-min", min=50,
                                                 help="Smallest n (exact: 501, over: 1000).")] = None,
    n_max: Annotated[int | None, typer.Option("--n-max", min=50, max=1_000_000,
                                                 help="Largest n (exact: 31623, over: 10000).")] = None,
    points: Annotated[int | None, typer.Option("--points", min=2, max=50,
                                                  help="Sample sizes on the log grid (exact: 8, over: 5).")] = None,
    reps: Annotated[int | None, typer.Option("--reps", min=1, max=1000,
                                                help="Replicates per n (exact: 8, over: 5).")] = None,
    max_iter: MaxIterOpt = 1500,
    tol: TolOpt = None,
    noise: NoiseOpt = 0.1,
    boot: Annotated[int, typer.Option("--boot", min=10, max=100_000,
                                      help="Bootstrap resamples for the slope intervals.")] = 1000,
    plot: Annotated[Path | None, typer.Option("--plot", dir_okay=False,
                                                 help="Also draw a log-log plot (.png or .svg).")] = None,
    seed: SeedOpt = 0,
    fmt: FormatOpt = OutputFormat.table,
) -> None:
    """Measure convergence rates: fit EM from near the truth over a log grid of n, with replicates.

    Prints per-n medians of E_X Hellinger, E_X TV, D1 (exact) or D2 (over) and the worst parameter
    errors in the split expert's Voronoi cell and in the other non-reference cells, then the OLS
    slope of log(median) on log n with a 95% bootstrap interval, against the theory (−1/2 for
    densities and D1/D2; over-specified split cells: −1/8 for β1, −1/4 for a, upper bounds). Fits
    more than 10 below the true log-likelihood are counted as flagged. --format csv prints the
    per-n table only. A runtime estimate goes to stderr first.

    Example: moe2 stats rates --spec exact --reps 8 --seed 0 --plot rates.png
    """
    truth = _truth(preset_name, params, split)
    if plot is not None:
        check_plot_path(plot)
    config = rates_config(spec.value, n_min, n_max, points, reps, seed=seed, max_iter=max_iter, tol=tol,
                           init_noise=noise, n_boot=boot)
    fits = len(config.sizes) * config.n_reps
    seconds = estimate_seconds(config, seconds_per_sample_iteration(truth, config.spec))
    stderr_console().print(f"moe2 stats rates: {fits} fits, n = {config.sizes[0]}..{config.sizes[-1]}; "
                           f"estimated {_duration(seconds)} on this machine", highlight=False)
    with progress_bar("fitting", fits) as progress:
        result = run_rates(truth, config, progress=progress)
    if plot is not None:
        plot_rates(result, plot)
    _emit_rates(result, fmt, truth.split)


def _signed(value: float) -> str:
    return f"{value:+.3f}" if np.isfinite(value) else "-"


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _emit_rates(result, fmt: OutputFormat, split: int) -> None:
    config = result.config
    metrics = list(result.medians)
    headers = _metric_headers(split)
    iterations = np.array([r.iterations for r in result.replicates]).reshape(len(config.sizes), -1)
    flagged = np.array([r.flagged for r in result.replicates]).reshape(len(config.sizes), -1)
    capped = np.array([r.status != "converged" for r in result.replicates]).reshape(len(config.sizes), -1)
    rows = [{"n": n, **{m: float(result.medians[m][i]) for m in metrics},
             "iterations": float(np.median(iterations[i])), "flagged": int(flagged[i].sum()),
             "max_iter": int(capped[i].sum())} for i, n in enumerate(config.sizes)]
    columns = ([Column("n", "n")] + [Column(m, f"median {headers[m]}") for m in metrics]
               + [Column("iterations", "median iters"), Column("flagged", "flagged"), Column("max_iter", "hit cap")])
    slopes = [{"metric": s.metric, "slope": s.slope, "ci_low": s.low, "ci_high": s.high, "theory": s.theory}
              for s in result.slopes]
    slope_table = to_table(slopes, [Column("metric", "metric", justify="left"), Column("slope", "slope", _signed),
                                    Column("ci_low", "95% low", _signed), Column("ci_high", "95% high", _signed),
                                    Column("theory", "theory", _signed)],
                           title="log-log slopes of the per-n medians (OLS; bootstrap over replicates)")
    payload = {"model": result.truth_name, "spec": config.spec, "sizes": list(config.sizes), "reps": config.n_reps,
               "seed": config.seed, "max_iter": config.max_iter, "tol": config.tolerance, "noise": config.init_noise,
               "medians": rows, "slopes": slopes,
               "replicates": [{"n": r.n, "rep": r.rep, **r.metrics, "iterations": r.iterations, "status": r.status,
                               "loglik_gap": r.loglik_gap, "flagged": r.flagged} for r in result.replicates]}
    title = f"{result.truth_name}, {config.spec}-specified: medians over {config.n_reps} replicates"
    emit(fmt.value, payload=payload, rows=rows, columns=columns, title=title, extra=[slope_table])
