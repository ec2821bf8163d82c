"""What a request log says about operation (``moe2 report``): requests per category, joules and
seconds saved against the baseline, the router's own overhead, and the expected accuracy
difference between the plan and the baseline expert for the log's mix of categories.

Savings are the profile estimates ``serve --baseline`` logged for each answered request: the
baseline expert alone against the experts called, by the scenario's energy and latency model.
Joules measured per request, where a line has them, are summed beside them, never mixed in.
Pure data: the command renders it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.serve.logread import Line, Read
from moe2_cli.serve.plan import Choice

REPORT_SCHEMA = "moe2.report/1"
ALL = "all"  # the row of every category together
BASIS = ("profile estimates: the baseline expert alone against the experts each request called, by the "
         "scenario's energy and latency model")


def summary(read: Read) -> dict[str, Any]:
    """The report's figures from the log alone (``accuracy`` is added by :func:`accuracy_against`)."""
    lines = read.lines
    categories = sorted({line.category for line in lines})
    rows = [_row(c, [line for line in lines if line.category == c]) for c in categories] + [_row(ALL, lines)]
    notes = []
    if read.skipped:
        notes.append(f"{read.skipped} malformed lines skipped (first: {'; '.join(read.skipped_first)})")
    if not any(line.baseline for line in lines):
        notes.append("no request was logged against a baseline: serve with --baseline best-single|EXPERT")
    return {"schema": REPORT_SCHEMA, "log": read.files, "skipped_lines": read.skipped,
            "requests": len(lines), "answered": sum(line.status == 200 for line in lines),
            "baselines": dict(sorted(Counter(line.baseline for line in lines if line.baseline).items())),
            "savings_basis": BASIS, "categories": rows, "overhead_s": _overhead(lines),
            "measured_j": _measured(lines), "accuracy": [], "notes": notes}


def _row(category: str, lines: list[Line]) -> dict[str, Any]:
    """One category's (or every category's) requests and savings; the sums cover the answered
    requests logged against a baseline, and so do the per-request means."""
    counted = [line for line in lines if line.saved_j is not None and line.saved_s is not None]
    n = len(counted)

    def total(values: Sequence[float | None]) -> float | None:
        return round(float(sum(v or 0.0 for v in values)), 6) if n else None

    saved_j, saved_s = total([x.saved_j for x in counted]), total([x.saved_s for x in counted])
    return {"category": category, "requests": len(lines), "answered": sum(x.status == 200 for x in lines),
            "against_baseline": n, "baseline_j": total([x.baseline_j for x in counted]),
            "estimated_j": total([x.estimated_j for x in counted]), "saved_j": saved_j,
            "saved_j_per_request": None if saved_j is None else round(saved_j / n, 6),
            "baseline_s": total([x.baseline_s for x in counted]),
            "estimated_s": total([x.estimated_latency_s for x in counted]), "saved_s": saved_s,
            "saved_s_per_request": None if saved_s is None else round(saved_s / n, 6)}


def _overhead(lines: list[Line]) -> dict[str, Any] | None:
    """The proxy's own time per request (latency minus the time waiting for experts): quantiles
    over the lines that logged ``upstream_s``."""
    own = np.array([max(0.0, x.latency_s - x.upstream_s) for x in lines if x.upstream_s is not None])
    if own.size == 0:
        return None
    p50, p99 = np.quantile(own, [0.5, 0.99])
    return {"requests": int(own.size), "p50": round(float(p50), 6), "p99": round(float(p99), 6),
            "mean": round(float(own.mean()), 6), "max": round(float(own.max()), 6)}


def _measured(lines: list[Line]) -> dict[str, Any] | None:
    """Joules measured on the requests that have them, beside the estimates of the same requests."""
    have = [x for x in lines if x.measured_j is not None]
    if not have:
        return None
    return {"requests": len(have), "measured_j": round(sum(x.measured_j or 0.0 for x in have), 6),
            "estimated_j": round(sum(x.estimated_j for x in have), 6)}


def check_against(read: Read, choice: Choice, shown: str) -> None:
    """InputError unless the log's categories and baselines are the scenario's."""
    instance = choice.scenario.instance
    for kind, names, known in (("category", {x.category for x in read.lines}, instance.categories),
                               ("baseline", {x.baseline for x in read.lines if x.baseline}, instance.expert_ids)):
        unknown = sorted(set(names) - set(known))
        if unknown:
            raise InputError(Diagnostic(shown, None, None, f"the log names {kind} {unknown[0]!r}, not one of "
                                        f"{choice.scenario.name!r} ({', '.join(known)})"))


def log_mix(lines: list[Line], baseline: str) -> dict[str, float]:
    """The category shares of the answered requests served against ``baseline``."""
    counts = Counter(x.category for x in lines if x.status == 200 and x.baseline == baseline)
    total = sum(counts.values())
    return {c: n / total for c, n in sorted(counts.items())}


def accuracy_against(choice: Choice, baseline: str, shares: dict[str, float], source: str, *, folds: int,
                     confidence: float, outcomes=None) -> dict[str, Any]:
    """The plan's F and the baseline expert's, and their difference, each with its paired
    bootstrap interval, reweighted to the category ``shares`` of the log (the plan's out-of-fold
    estimate, as ``select --mix`` gives it)."""
    from moe2_cli.gating.confidence import Bootstrap  # the gates load only when accuracy is asked for
    from moe2_cli.gating.mix import Mix, coverage_note
    from moe2_cli.gating.pipeline import estimate_objective

    mix = Mix(categories=shares, tags=None, source=source)
    estimate = estimate_objective(choice.scenario, top_k=choice.k, seed=choice.seed, folds=folds,
                                  router=choice.router_name, outcomes_path=outcomes, mix=mix)
    weights = estimate.weighting
    bootstrap = Bootstrap(estimate.objective, weights.strata, confidence=confidence, seed=choice.seed,
                          fold=estimate.fold, shares=weights.shares)
    single = 1 << choice.scenario.instance.expert_ids.index(baseline)
    covers = (coverage_note(weights.record) + ". It is an expectation from the plan's outcomes, not a score of "
              "the logged answers, which carry no correct answer.")
    return {"baseline": baseline, "selection": choice.selection, "router": choice.router_name,
            "confidence": confidence, "folds": folds, "mix": weights.record,
            "plan": bootstrap.of(choice.mask).as_dict(), "baseline_f": bootstrap.of(single).as_dict(),
            "difference": bootstrap.difference(choice.mask, single).as_dict(), "covers": covers,
            "notes": list(weights.notes)}
