"""brb under mean energy budgets on fleets: experts copying a few LLMs on several servers.

    python benchmarks/mean_budgets.py                       # N = 24, 12 LLMs, k = 2 and 4
    python benchmarks/mean_budgets.py --sizes 16 24 32 --llms 8 --top-k 2

Each fleet has 1,000 evaluation queries in four categories; the gate tracks each LLM's chance on
each query, with noise, and bigger LLMs cost more. The worst-case energy budget is loose (90 % of
what every expert together may use); the mean energy budget per query, the same for every
category, sits at ``--mean-frac`` between the cheapest and the dearest single expert's mean (the
full fleet's mean lies within, so it binds). Printed per fleet: status, F, time, boxes and the
mean energy per category against its budget.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moe2_cli.gating.ensemble import GatedObjective, share_weights  # noqa: E402
from moe2_cli.mean_cost import Routing, mean_use  # noqa: E402
from moe2_cli.problem import Budgets, Instance, Problem  # noqa: E402
from moe2_cli.solvers import Limits, get_solver  # noqa: E402

CATEGORIES = ("mcq", "math", "code", "open_qa")
SHARES = np.array([0.3, 0.2, 0.2, 0.3])
LENGTH = np.array([0.3, 1.6, 1.3, 1.0])  # relative answer length per category
QUERIES = 1000


def fleet(n: int, llms: int, top_k: int, mean_frac: float, seed: int) -> Problem:
    """N experts on N/3 servers, expert i hosting LLM i mod ``llms``."""
    rng = np.random.default_rng(zlib.crc32(f"mean/{n}/{llms}/{top_k}/{seed}".encode()))
    servers = max(2, n // 3)
    column = np.arange(n) % llms
    size = rng.uniform(0.5, 3.0, llms)
    server = rng.integers(0, servers, n)
    energy = np.round(10 * size[column][:, None] * LENGTH[None] * rng.uniform(0.8, 1.2, (n, 4)), 3)
    latency = np.round(0.8 * size[column][:, None] * LENGTH[None] * rng.uniform(0.8, 1.2, (n, 4)), 3)
    category = rng.integers(0, 4, QUERIES)
    logit = (0.8 * (size - 1.5))[None] - rng.normal(0, 1, QUERIES)[:, None] + rng.normal(0, 1, (QUERIES, llms))
    probs = 1 / (1 + np.exp(-logit))
    accuracy = np.array([[probs[category == c, column[i]].mean() for c in range(4)] for i in range(n)])
    inst = Instance(name=f"fleet-{n}", expert_ids=tuple(f"s{server[i]}/m{column[i]}" for i in range(n)),
                    expert_llms=tuple(f"m{c}" for c in column), expert_server=server,
                    server_names=tuple(f"s{s}" for s in range(servers)),
                    transmission_s=np.full(servers, 0.02), categories=CATEGORIES, shares=SHARES,
                    latency_s=latency, energy_j=energy, accuracy=accuracy, top_k=top_k, aggregation_s=0.05)
    objective = GatedObjective(inst, 4 * (logit + rng.normal(0, 0.25, logit.shape)), probs,
                               share_weights(category, SHARES), expert_columns=column)
    routing = Routing(order=objective.order, category=category, expert_columns=column)
    singles = np.left_shift(np.int64(1), np.arange(n, dtype=np.int64))
    # Each single expert's mean energy per query in its dearest category, in J.
    per_query = (mean_use(routing, inst, singles).energy / np.bincount(category, minlength=4) / 1e3).max(axis=1)
    cap = float(per_query.min() + mean_frac * (per_query.max() - per_query.min()))
    full = inst.usage(np.array([inst.full_mask], dtype=np.int64))
    budgets = Budgets(CATEGORIES, energy_j=(0.9 * float(full.energy_j.max()),) * 4, latency_s=(None,) * 4,
                      energy_mean_j=(cap,) * 4)
    return Problem(inst, budgets, objective, routing=routing)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[24])
    parser.add_argument("--llms", type=int, default=12)
    parser.add_argument("--top-k", type=int, nargs="*", default=[2, 4])
    parser.add_argument("--mean-frac", type=float, default=0.4)
    parser.add_argument("--time-limit", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print("N  LLMs k  status     F          cpu_s  boxes  mean energy / budget (J per query)")
    for n in args.sizes:
        for k in args.top_k:
            problem = fleet(n, args.llms, k, args.mean_frac, args.seed)
            began = time.process_time()
            result = get_solver("brb").solve(problem, Limits(time_s=args.time_limit))
            cpu = time.process_time() - began
            cap = problem.budgets.energy_mean_j[0]
            means = ", ".join(f"{c} {v:.1f}" for c, v in result.mean.get("energy_j", {}).items())
            print(f"{n:<3}{args.llms:<5}{k:<3}{result.status.value:<11}{result.objective:<11.6f}{cpu:<7.2f}"
                  f"{result.iterations:<7}{means} / {cap:.1f}")


if __name__ == "__main__":
    main()
