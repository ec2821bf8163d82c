"""Benchmark the level-1 solvers on seeded instance families.

    python benchmarks/solvers.py                        # N = 8 .. 48, tight / medium / loose budgets
    python benchmarks/solvers.py --quick                # N = 8, 12, 16 only
    python benchmarks/solvers.py --objective coverage   # a monotone F on the same data
    python benchmarks/solvers.py --sizes 32 48 --top-k 6 --llms 8   # a fleet repeating 8 LLMs
    python benchmarks/solvers.py --fleet 48:11 62:11 --top-k 2 4 6  # fleets from the shipped profiles

For each N and budget family it prints, per solver, the status, F, objective evaluations, wall
time and the ratio of F to the reference: the true optimum from ``exhaustive-all`` (F on every
feasible set) where N <= 24, else CP-SAT exact when it completes, else the best F found. Every
solver gets a fresh objective, so none profits from another's cache.

F (default): ``moe2_cli.gating.ensemble.GatedObjective``, the expected accuracy of a top-k
softmax-gated ensemble over 1,000 held-out queries, here with seeded synthetic gate logits and
per-query correctness probabilities (the gate tracks each LLM's chance on each query, with
noise). Such an F is close to monotone but not exactly: a second expert that takes weight from a
better first one lowers a query's value. Every expert hosts its own LLM unless ``--llms L``
makes expert i host LLM i mod L (a fleet: the same LLM on several servers shares its outcomes).

An instance's seed is a hash of its family, N, k, L and ``--seed``: the same instance whatever
else is run beside it.

``--fleet N:M`` builds instead the scenario of a real fleet: N experts over M distinct LLMs of
the shipped profiles, on servers alternating Jetson AGX Orin and RTX 4090, 3 LLMs each (server s
hosts LLMs 3s, 3s+1, 3s+2 mod M), with the budgets of ``examples/large.yaml`` and F from the gate
that ``moe2 select`` trains on it. Each row also gives how far a solve overran the time limit.
The shipped profiles describe 11 LLMs; for M > 11 the fleet's profiles (written beside its
scenario) add synthetic variants of them: variant j of LLM i has LLM i's numbers with each
accuracy moved by up to 0.05 and both token rates scaled by 0.8-1.25, seeded by (M, j), and says
so in its ``source``. They make fleets with more distinct LLMs for the solvers, not claims about
real models.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ortools  # noqa: E402

from moe2_cli.gating.ensemble import GatedObjective, share_weights  # noqa: E402
from moe2_cli.objective import Objective  # noqa: E402
from moe2_cli.problem import MAX_EXPERTS, WORD_EXPERTS, Budgets, Instance, Problem, as_masks, masks_to_bool  # noqa: E402
from moe2_cli.solvers import Limits, SolveResult, Status, get_solver  # noqa: E402

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
    monotone = True  # 1 - prod(1 - p) only grows with S

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
    top_k: int
    llms: int  # distinct LLMs; expert i hosts LLM i mod llms
    base_seed: int = 0

    @property
    def seed(self) -> int:
        """From the instance's own description, never from its position in a run."""
        return zlib.crc32(f"{self.family}/{self.n}/{self.top_k}/{self.llms}/{self.base_seed}".encode())


def make_problem(case: Case, objective: str = "gated") -> Problem:
    """Experts of different sizes on n/3 servers; bigger LLMs cost more and are more often
    right; the gate scores track each LLM's chance on each query, with noise."""
    rng = np.random.default_rng(case.seed)
    n, servers, m = case.n, max(2, case.n // 3), case.llms
    column = np.arange(n) % m
    llm_size = rng.uniform(0.5, 3.0, m)
    size = llm_size[column]
    server = rng.integers(0, servers, n)
    speed = rng.uniform(0.6, 1.6, servers)
    energy = np.round(10 * size[:, None] * LENGTH[None] * rng.uniform(0.8, 1.2, (n, 4)), 3)
    latency = np.round(0.8 * size[:, None] * LENGTH[None] * rng.uniform(0.8, 1.2, (n, 4)) / speed[server][:, None], 3)
    skill = 0.8 * (llm_size - 1.5) + rng.normal(0, 0.5, m)
    category = rng.integers(0, 4, QUERIES)
    logit = (skill[None] - rng.normal(0, 1, QUERIES)[:, None] - 0.5 * LENGTH[category][:, None]
             + rng.normal(0, 1, (QUERIES, m)))
    probs = 1 / (1 + np.exp(-logit))
    scores = 4 * (logit + rng.normal(0, 0.25, (QUERIES, m)))
    accuracy = np.array([[probs[category == c, column[i]].mean() for c in range(4)] for i in range(n)])
    inst = Instance(
        name=f"bench-{case.family}-{n}", expert_ids=tuple(f"s{server[i]}/m{column[i]}" for i in range(n)),
        expert_llms=tuple(f"m{column[i]}" for i in range(n)), expert_server=server,
        server_names=tuple(f"s{s}" for s in range(servers)),
        transmission_s=np.round(rng.uniform(0.01, 0.1, servers), 3), categories=CATEGORIES,
        shares=SHARES, latency_s=latency, energy_j=energy, accuracy=accuracy, top_k=case.top_k,
        aggregation_s=0.05,
    )
    full = inst.usage(as_masks([inst.full_mask], inst.n_experts))
    fe, fl = FAMILIES[case.family]
    latency_cap = fl * float(full.latency_s.max())
    budgets = Budgets.build(CATEGORIES, energy=fe * float(full.energy_j.max()), latency=latency_cap,
                            latency_by_cat={"math": 1.25 * latency_cap})
    weights = share_weights(category, SHARES)
    if objective == "coverage":
        return Problem(inst, budgets, CoverageF(inst, probs[:, column], weights))
    return Problem(inst, budgets, GatedObjective(inst, logits=scores, scores=probs, weights=weights,
                                                 expert_columns=column))


def run_case(case: Case, solvers: tuple[str, ...], objective: str, time_limit: float) -> dict[str, SolveResult]:
    out = {}
    for name in solvers:
        if name in ("exhaustive", TRUTH) and case.n > EXHAUSTIVE_MAX_N:
            continue
        problem = make_problem(case, objective)  # a fresh objective: no shared cache
        solver = get_solver(name)
        out[name] = solver.solve(problem, Limits(time_s=time_limit))
    return out


def reference(results: dict[str, SolveResult]) -> float:
    for name in (TRUTH, "cpsat"):
        if name in results and results[name].status is Status.OPTIMAL:
            return results[name].objective
    return max((r.objective for r in results.values() if r.mask), default=float("nan"))


def machine_line() -> str:
    return (f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cpus (nproc); python {platform.python_version()}, numpy {np.__version__}, "
            f"ortools {ortools.__version__}; {load_line()}")


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


HEADER = ("| N | k | LLMs | budgets | solver | status | proof | F | F / ref | evaluations | wall s | gap |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def proof(result: SolveResult) -> str:
    """The proof named in the notes, shortened."""
    for note in result.notes:
        if note.startswith("proof: "):
            return note[len("proof: "):].split(" (")[0]
    return ""


def print_case(case: Case, results: dict[str, SolveResult]) -> None:
    ref = reference(results)
    for name, r in results.items():
        ratio = f"{r.objective / ref:.6f}" if r.mask and ref else "-"
        gap = f"{r.gap:.2g}" if r.status is Status.LIMIT else ""
        print(f"| {case.n} | {case.top_k} | {case.llms} | {case.family} | {name} | {r.status.value} | {proof(r)} | "
              f"{r.objective:.6f} | {ratio} | {r.evaluations} | {r.wall_s:.3f} | {gap} |")


def _same(a: float, b: float) -> bool:
    """Equal up to float round-off (batched F may round the same mask differently)."""
    return math.isclose(a, b, rel_tol=1e-9) or (math.isnan(a) and math.isnan(b))


def summarise(rows: list[tuple[Case, dict[str, SolveResult]]]) -> None:
    """Per N and k: how many instances each solver proved optimal, its median and largest wall
    time, and how often it found the best F any solver found."""
    print("\nsummary (proved optimal / instances; median and max wall s; best F found / instances):")
    keys = sorted({(c.n, c.top_k, c.llms) for c, _ in rows})
    names = list(dict.fromkeys(name for _, r in rows for name in r))
    for n, k, llms in keys:
        group = [r for c, r in rows if (c.n, c.top_k, c.llms) == (n, k, llms)]
        for name in names:
            runs = [r[name] for r in group if name in r]
            if not runs:
                continue
            best = [max(x.objective for x in r.values() if x.mask) for r in group if name in r]
            proved = sum(x.status is Status.OPTIMAL for x in runs)
            hit = sum(_same(x.objective, b) for x, b in zip(runs, best))
            walls = [x.wall_s for x in runs]
            print(f"- N={n} k={k} LLMs={llms} {name}: {proved}/{len(runs)} optimal; wall median "
                  f"{statistics.median(walls):.2f} s, max {max(walls):.2f} s; best F {hit}/{len(runs)}")


PROFILES = ("jetson-agx-orin-64gb", "rtx-4090")
FLEET_SOLVERS = ("brb", "cpsat")


def fleet_llms() -> list[str]:
    """The LLMs both shipped profiles describe, in the Orin profile's order."""
    import yaml
    root = Path(__file__).resolve().parents[1] / "profiles"
    orin, rtx = (yaml.safe_load((root / f"{name}.yaml").read_text(encoding="utf-8"))["llms"] for name in PROFILES)
    return [name for name in orin if name in rtx]


def write_fleet_profiles(m: int, directory: Path) -> list[str]:
    """The fleet's M LLMs; for M above the shipped 11, profiles with synthetic variants added
    are written to DIRECTORY/profiles (found before the shipped ones)."""
    import yaml
    shipped = fleet_llms()
    if m <= len(shipped):
        return shipped[:m]
    root = Path(__file__).resolve().parents[1] / "profiles"
    (directory / "profiles").mkdir(exist_ok=True)
    names = shipped + [f"{shipped[j % len(shipped)]}-variant-{j // len(shipped) + 1}" for j in range(m - len(shipped))]
    for profile in PROFILES:
        data = yaml.safe_load((root / f"{profile}.yaml").read_text(encoding="utf-8"))
        for j, name in enumerate(names[len(shipped):]):
            data["llms"][name] = _variant(data["llms"][shipped[j % len(shipped)]], np.random.default_rng([m, j]))
        (directory / "profiles" / f"{profile}.yaml").write_text(yaml.safe_dump(data, sort_keys=False),
                                                                encoding="utf-8")
    return names


def _variant(entry: dict, rng: np.random.Generator) -> dict:
    """A synthetic LLM: ``entry``'s numbers moved a little (see the module notes)."""
    out = {**entry, "throughput": dict(entry["throughput"]), "accuracy": dict(entry["accuracy"])}
    scale = float(rng.uniform(0.8, 1.25))
    for rate in ("prefill_tok_s", "decode_tok_s"):
        out["throughput"][rate] = round(float(entry["throughput"][rate]) * scale, 2)
    out["throughput"]["source"] = out["accuracy"]["source"] = "synthetic variant (benchmarks/solvers.py --fleet)"
    for category, value in entry["accuracy"].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out["accuracy"][category] = round(float(np.clip(value + rng.uniform(-0.05, 0.05), 0.0, 1.0)), 3)
    return out


def parse_fleet(spec: str) -> tuple[int, int]:
    """``N:M`` to (N, M); a clear error for anything this build cannot run."""
    try:
        n, m = (int(part) for part in spec.split(":"))
    except ValueError:
        raise SystemExit(f"--fleet: expected N:M, e.g. 48:11 (got {spec!r})") from None
    if not 1 <= m <= WORD_EXPERTS:
        raise SystemExit(f"--fleet {spec}: M must be 1..{WORD_EXPERTS}, the most LLMs the gate has columns for")
    if not m <= n <= MAX_EXPERTS:
        raise SystemExit(f"--fleet {spec}: N must be {m}..{MAX_EXPERTS}, the most experts a scenario may have")
    return n, m


def fleet_scenario(n: int, m: int, directory: Path) -> Path:
    """The scenario file of a fleet of n experts over m LLMs (see the module notes)."""
    import yaml
    llms = write_fleet_profiles(m, directory)
    servers = []
    for s in range((n + 2) // 3):
        hosted = [llms[(3 * s + j) % m] for j in range(min(3, n - 3 * s))]
        servers.append({"name": f"{PROFILES[s % 2].split('-')[0]}-{s}", "profile": PROFILES[s % 2],
                        "transmission_s": 0.02 if s % 2 == 0 else 0.03, "llms": hosted})
    scenario = {
        "schema_version": 1, "name": f"fleet-{n}-{m}", "top_k": 2, "aggregation_s": 0.05,
        "categories": {"mcq": {"share": 0.35}, "math": {"share": 0.25, "latency_budget_s": 12.0},
                       "code": {"share": 0.2, "latency_budget_s": 10.0}, "open_qa": {"share": 0.2}},
        "budgets": {"energy_j": 1000, "latency_s": 3.0}, "servers": servers,
    }
    path = directory / f"fleet-{n}-{m}.yaml"
    path.write_text(yaml.safe_dump(scenario, sort_keys=False), encoding="utf-8")
    return path


FLEET_HEADER = ("| N | LLMs | k | solver | status | F | wall s | over limit s | gap |\n"
                "|---|---|---|---|---|---|---|---|---|")


def run_fleets(specs: list[str], ks: list[int], solvers: tuple[str, ...], time_limit: float) -> None:
    import tempfile

    from moe2_cli.session import open_session
    fleets = [parse_fleet(spec) for spec in specs]  # every spec checked before any work
    print(FLEET_HEADER)
    rows: list[tuple[int, int, str, SolveResult]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, m in fleets:
            (own := Path(tmp) / f"fleet-{n}-{m}").mkdir(exist_ok=True)  # profiles of its own when M > 11
            path = fleet_scenario(n, m, own)
            for k in ks:
                for name in solvers:
                    session = open_session(path, top_k=k, envelope=False)  # a fresh objective per solve
                    r = get_solver(name).solve(session.problem, Limits(time_s=time_limit))
                    over = max(0.0, r.wall_s - time_limit)
                    gap = f"{r.gap:.2g}" if r.status is Status.LIMIT else ""
                    print(f"| {n} | {m} | {k} | {name} | {r.status.value} | {r.objective:.6f} | {r.wall_s:.2f} | "
                          f"{over:.2f} | {gap} |")
                    sys.stdout.flush()
                    rows.append((n, m, name, r))
    print("\nsummary (proved optimal / solves; median and max wall s; largest overrun of the limit):")
    for n, m in dict.fromkeys(fleets):
        for name in solvers:
            runs = [r for rn, rm, rs, r in rows if (rn, rm, rs) == (n, m, name)]
            walls = [r.wall_s for r in runs]
            proved = sum(r.status is Status.OPTIMAL for r in runs)
            print(f"- N={n} LLMs={m} {name}: {proved}/{len(runs)} optimal; wall median "
                  f"{statistics.median(walls):.2f} s, max {max(walls):.2f} s; "
                  f"overrun max {max(0.0, max(walls) - time_limit):.2f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="only N = 8, 12, 16")
    parser.add_argument("--sizes", type=int, nargs="*", help="override the values of N")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--solvers", nargs="*", default=[*SOLVERS, TRUTH])
    parser.add_argument("--objective", choices=("gated", "coverage"), default="gated")
    parser.add_argument("--top-k", type=int, nargs="*", default=[2])
    parser.add_argument("--llms", type=int, default=0, help="distinct LLMs (0: one per expert)")
    parser.add_argument("--time-limit", type=float, default=60.0, help="per solve, seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fleet", nargs="*", metavar="N:M", help="fleets of N experts over M LLMs (see above)")
    args = parser.parse_args(argv)
    if args.fleet:
        print(machine_line())
        print(f"command: python benchmarks/solvers.py {' '.join(argv if argv is not None else sys.argv[1:])}")
        print(f"time limit {args.time_limit:g} s per solve\n")
        solvers = tuple(args.solvers) if "--solvers" in (argv if argv is not None else sys.argv) else FLEET_SOLVERS
        run_fleets(args.fleet, args.top_k, solvers, args.time_limit)
        print(f"after: {load_line()}")
        return
    sizes = args.sizes or (QUICK_SIZES if args.quick else SIZES)
    ks = ", ".join(map(str, args.top_k))
    f_name = (f"GatedObjective (top-k softmax gate, expected accuracy; k = {ks})" if args.objective == "gated"
              else CoverageF.name)
    print(machine_line())
    print(f"command: python benchmarks/solvers.py {' '.join(argv if argv is not None else sys.argv[1:])}")
    print(f"F: {f_name} over {QUERIES} held-out queries; time limit "
          f"{args.time_limit:g} s per solve; budgets as (energy, latency) fractions of all experts' use: "
          + ", ".join(f"{k} {v}" for k, v in FAMILIES.items()) + "\n")
    print(HEADER)
    rows = []
    for top_k in args.top_k:
        for n in sizes:
            for family in args.families:
                case = Case(n, family, top_k, min(args.llms or n, n), args.seed)
                results = run_case(case, tuple(args.solvers), args.objective, args.time_limit)
                print_case(case, results)
                sys.stdout.flush()
                rows.append((case, results))
    summarise(rows)
    print(f"after: {load_line()}")


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"\ntotal {time.perf_counter() - started:.1f} s")
