"""Benchmark the level-1 solvers on seeded instance families.

    python benchmarks/solvers.py                        # N = 8 .. 48, tight / medium / loose budgets
    python benchmarks/solvers.py --quick                # N = 8, 12, 16 only
    python benchmarks/solvers.py --objective coverage   # a monotone F on the same data

For each N and budget family it prints, per solver, the status, F, objective evaluations, wall
time and the ratio of F to the reference: the true optimum from ``exhaustive-all`` (F on every
feasible set) where N <= 24, else CP-SAT exact when it completes, else the best F found. Every
solver gets a fresh objective, so none profits from another's cache.

F (default): ``moe2_cli.gating.ensemble.GatedObjective``, the expected accuracy of a top-2
softmax-gated ensemble over 1,000 held-out queries, here with seeded synthetic gate logits and
per-query correctness probabilities (the gate tracks each expert's chance on each query, with
noise). Such an F is close to monotone but not exactly: a second expert that takes weight from a
better first one lowers a query's value.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ortools  # noqa: E402

from moe2_cli.gating.ensemble import GatedObjective, share_weights  # noqa: E402
from moe2_cli.objective import Objective  # noqa: E402
from moe2_cli.problem import Budgets, Instance, Problem, masks_to_bool  # noqa: E402
from moe2_cli.solvers import ExhaustiveSolver, Limits, SolveResult, Status, get_solver  # noqa: E402

CATEGORIES = ("mcq", "math", "code", "open_qa")
SHARES = np.array([0.3, 0.2, 0.2, 0.3])
LENGTH = np.array([0.3, 1.6, 1.3, 1.0])  # relative answer length per category: cost and difficulty
# (energy fraction, latency fraction) of what selecting every expert would use
FAMILIES = {"tight": (0.35, 0.45), "medium": (0.5, 0.6), "loose": (0.7, 0.8)}
SIZES = (8, 12, 16, 20, 24, 32, 48)
QUICK_SIZES = (8, 12, 16)
EXHAUSTIVE_MAX_N = 24
SOLVERS = ("polyblock", "brb", "cpsat", "cpsat-surrogate", "exhaustive", "greedy")
TRUTH = "exhaustive-all"  # F on every feasible set: the optimum for any F
QUERIES = 1000


class CoverageF(Objective):
    """A monotone F on the same data: the weighted chance that some selected expert is right
    (an oracle router), used with ``--objective coverage`` to show proofs on monotone F."""

    name = "coverage (monotone)"

    def __init__(self, instance: Instance, probs: np.ndarray, weights: np.ndarray):
        super().__init__(instance)
        self._log_miss = np.log1p(-np.clip(probs, 0.0, 1.0 - 1e-12))
        self._weights = weights

    def _compute(self, masks: np.ndarray) -> np.ndarray:
        chosen = masks_to_bool(masks, self.instance.n_experts).astype(float)
        return (1.0 - np.exp(chosen @ self._log_miss.T)) @ self._weights


@dataclass(frozen=True)
class Case:
    n: int
    family: str
    seed: int


def make_problem(case: Case, top_k: int, objective: str = "gated") -> Problem:
    """Experts of different sizes on n/3 servers; bigger experts cost more and are more often
    right; the gate scores track each expert's chance on each query, with noise."""
    rng = np.random.default_rng(case.seed)
    n, servers = case.n, max(2, case.n // 3)
    size = rng.uniform(0.5, 3.0, n)
    server = rng.integers(0, servers, n)
    speed = rng.uniform(0.6, 1.6, servers)
    energy = np.round(10 * size[:, None] * LENGTH[None] * rng.uniform(0.8, 1.2, (n, 4)), 3)
    latency = np.round(0.8 * size[:, None] * LENGTH[None] * rng.uniform(0.8, 1.2, (n, 4)) / speed[server][:, None], 3)
    skill = 0.8 * (size - 1.5) + rng.normal(0, 0.5, n)
    category = rng.integers(0, 4, QUERIES)
    logit = (skill[None] - rng.normal(0, 1, QUERIES)[:, None] - 0.5 * LENGTH[category][:, None]
             + rng.normal(0, 1, (QUERIES, n)))
    probs = 1 / (1 + np.exp(-logit))
    scores = 4 * (logit + rng.normal(0, 0.25, (QUERIES, n)))
    accuracy = np.array([[probs[category == c, i].mean() for c in range(4)] for i in range(n)])
    inst = Instance(
        name=f"bench-{case.family}-{n}", expert_ids=tuple(f"s{server[i]}/m{i}" for i in range(n)),
        expert_llms=tuple(f"m{i}" for i in range(n)), expert_server=server,
        server_names=tuple(f"s{s}" for s in range(servers)),
        transmission_s=np.round(rng.uniform(0.01, 0.1, servers), 3), categories=CATEGORIES,
        shares=SHARES, latency_s=latency, energy_j=energy, accuracy=accuracy, top_k=top_k, aggregation_s=0.05,
    )
    full = inst.usage(np.array([inst.full_mask], dtype=np.int64))
    fe, fl = FAMILIES[case.family]
    latency_cap = fl * float(full.latency_s.max())
    budgets = Budgets.build(CATEGORIES, energy=fe * float(full.energy_j.max()), latency=latency_cap,
                            latency_by_cat={"math": 1.25 * latency_cap})
    weights = share_weights(category, SHARES)
    if objective == "coverage":
        return Problem(inst, budgets, CoverageF(inst, probs, weights))
    return Problem(inst, budgets, GatedObjective(inst, logits=scores, scores=probs, weights=weights))


def run_case(case: Case, solvers: tuple[str, ...], top_k: int, objective: str,
             time_limit: float) -> dict[str, SolveResult]:
    out = {}
    for name in solvers:
        if name in ("exhaustive", TRUTH) and case.n > EXHAUSTIVE_MAX_N:
            continue
        problem = make_problem(case, top_k, objective)  # a fresh objective: no shared cache
        solver = ExhaustiveSolver(all_feasible=True) if name == TRUTH else get_solver(name)
        out[name] = solver.solve(problem, Limits(time_s=time_limit))
    return out


def reference(results: dict[str, SolveResult]) -> float:
    for name in (TRUTH, "cpsat"):
        if name in results and results[name].status is Status.OPTIMAL:
            return results[name].objective
    return max((r.objective for r in results.values() if r.mask), default=float("nan"))


def machine_line() -> str:
    return (f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cpus; python {platform.python_version()}, numpy {np.__version__}, "
            f"ortools {ortools.__version__}")


HEADER = ("| N | budgets | solver | status | F | F / ref | evaluations | vs exhaustive | of 2^N | wall s | "
          "violations | gap |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def print_case(case: Case, results: dict[str, SolveResult]) -> None:
    ref = reference(results)
    ex = results.get("exhaustive")
    for name, r in results.items():
        ratio = f"{r.objective / ref:.6f}" if r.mask and ref else "-"
        versus = f"{r.evaluations / ex.evaluations:.2f}" if ex and ex.evaluations else "-"
        gap = f"{r.gap:.2g}" if r.status is Status.LIMIT else ""
        print(f"| {case.n} | {case.family} | {name} | {r.status.value} | {r.objective:.6f} | {ratio} | "
              f"{r.evaluations} | {versus} | {r.evaluations / 2 ** case.n:.1e} | {r.wall_s:.3f} | "
              f"{r.monotonicity_violations} | {gap} |")


def _same(a: float, b: float) -> bool:
    """Equal up to float round-off (batched F may round the same mask differently)."""
    return math.isclose(a, b, rel_tol=1e-9) or (math.isnan(a) and math.isnan(b))


def summarise(rows: list[tuple[Case, dict[str, SolveResult]]]) -> None:
    """The targets, one line each, measured on the rows above."""
    print("\ntargets:")
    small = [r for c, r in rows if c.n <= EXHAUSTIVE_MAX_N and "exhaustive" in r and "polyblock" in r]
    same = sum(_same(r["polyblock"].objective, r["exhaustive"].objective) for r in small)
    print(f"- polyblock F == exhaustive F (maximal sets) at N <= {EXHAUSTIVE_MAX_N}: {same}/{len(small)}")
    truth = [r for r in small if TRUTH in r]
    if truth:
        hit = sum(_same(r["polyblock"].objective, r[TRUTH].objective) for r in truth)
        proved = sum(r["polyblock"].status is Status.OPTIMAL for r in truth)
        print(f"- polyblock F == true optimum (F on all feasible sets): {hit}/{len(truth)}; "
              f"status optimal (no violation seen) in {proved}/{len(truth)}")
    for c, r in rows:
        if c.n == 24 and {"polyblock", "cpsat", "exhaustive"} <= set(r):
            p, ex = r["polyblock"], r["exhaustive"]
            every = f", exhaustive-all {r[TRUTH].evaluations}" if TRUTH in r else ""
            print(f"- N=24 {c.family}: wall polyblock {p.wall_s:.3f} s, cpsat {r['cpsat'].wall_s:.3f} s, "
                  f"exhaustive {ex.wall_s:.3f} s; evaluations polyblock {p.evaluations}, exhaustive "
                  f"{ex.evaluations} ({100 * p.evaluations / max(ex.evaluations, 1):.0f}%){every}, 2^24 = {2 ** 24}")
    for size in (32, 48):
        runs = [r["polyblock"] for c, r in rows if c.n == size and "polyblock" in r]
        if runs:
            walls = [p.wall_s for p in runs]
            states = ", ".join(f"{p.status.value} (gap {p.gap:.2g})" for p in runs)
            print(f"- N={size}: polyblock median {statistics.median(walls):.2f} s, max {max(walls):.2f} s: {states}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only N = 8, 12, 16")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the values of N")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--solvers", nargs="*", default=[*SOLVERS, TRUTH])
    parser.add_argument("--objective", choices=("gated", "coverage"), default="gated")
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--time-limit", type=float, default=60.0, help="per solve, seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    f_name = "GatedObjective (top-2 softmax gate, expected accuracy)" if args.objective == "gated" else CoverageF.name
    print(machine_line())
    print(f"command: python benchmarks/solvers.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"F: {f_name} over {QUERIES} held-out queries; top-k = {args.top_k}; time limit "
          f"{args.time_limit:g} s per solve; budgets as (energy, latency) fractions of all experts' use: "
          + ", ".join(f"{k} {v}" for k, v in FAMILIES.items()) + "\n")
    print(HEADER)
    rows = []
    for n in sizes:
        for f, family in enumerate(args.families):
            case = Case(n, family, seed=args.seed * 1000 + 10 * n + f)
            results = run_case(case, tuple(args.solvers), args.top_k, args.objective, args.time_limit)
            print_case(case, results)
            sys.stdout.flush()
            rows.append((case, results))
    summarise(rows)


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
