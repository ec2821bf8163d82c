"""F-evaluation throughput (masks/s) by number of experts N and gate width k, 1,000 held-out queries.

Random gate scores and 0/1 expert scores stand in for a trained gate: the cost of F depends
only on N, the number of queries and k. For every (N, k) two ways in are timed on the same
random masks, each as the best of several repetitions:

- fast: ``GatedObjective.evaluate``, the path solvers use (k <= 2: best-two rank tables;
  k >= 3: rank-bit tables and per-byte softmax sums; masks with at most k experts: per-byte
  products);
- generic (``--baseline``, on by default): ``GatedObjective.evaluate_generic``, the plain
  vectorised definition every earlier version used for k >= 3, on fewer masks since it is slow.

``--all-masks N...`` also times ``all_values()``, F of all 2^N masks (what the monotone
envelope tabulates), for every k.

    python benchmarks/objective_throughput.py [--experts 16 24 48 62] [--top-k 2 4 6 0] [--no-baseline]

``--top-k 0`` stands for k = N.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from moe2_cli.gating.ensemble import GatedObjective, share_weights
from moe2_cli.problem import Instance


def objective(n: int, queries: int, k: int, seed: int = 0) -> GatedObjective:
    rng = np.random.default_rng(seed)
    inst = Instance(name="bench", expert_ids=tuple(f"s{i % 4}/llm-{i}" for i in range(n)),
                    expert_llms=tuple(f"llm-{i}" for i in range(n)), expert_server=np.arange(n) % 4,
                    server_names=("s0", "s1", "s2", "s3"), transmission_s=np.zeros(4), categories=("a", "b"),
                    shares=np.array([0.6, 0.4]), latency_s=np.ones((n, 2)), energy_j=np.ones((n, 2)),
                    accuracy=np.full((n, 2), 0.5), top_k=k, aggregation_s=0.0)
    weights = share_weights(rng.integers(0, 2, queries), inst.shares)
    return GatedObjective(inst, rng.normal(size=(queries, n)), (rng.random((queries, n)) < 0.6).astype(float),
                          weights)


def best_rate(run, count: int, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, nargs="*", default=[16, 24, 48, 62])
    parser.add_argument("--top-k", type=int, nargs="*", default=[2, 4, 6, 0], help="0 stands for k = N")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--masks", type=int, default=4000, help="random masks per timing (generic: a tenth)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the generic path")
    parser.add_argument("--all-masks", type=int, nargs="*", default=[], help="also time all 2^N masks at these N")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}; {load_line()}")
    print(f"{args.queries} held-out queries, best of {args.repeats}\n")
    print("| N | k | fast masks/s | generic masks/s | fast / generic |\n|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for n in args.experts:
        masks = rng.integers(1, 1 << n, size=args.masks, dtype=np.int64)
        for k in args.top_k:
            f = objective(n, args.queries, k or n)
            fast = best_rate(lambda: f.evaluate(masks), masks.size, args.repeats)  # noqa: B023 - run in this iteration
            few = masks[: max(1, masks.size // 10)]
            generic = (best_rate(lambda: f.evaluate_generic(few), few.size, args.repeats)  # noqa: B023 - run here
                       if args.baseline else np.nan)
            print(f"| {n} | {k or n}{' (N)' if not k else ''} | {fast:,.0f} | {generic:,.0f} | {fast / generic:.1f}x |",
                  flush=True)
    for n in args.all_masks:
        for k in args.top_k:
            fresh = [objective(n, args.queries, k or n) for _ in range(args.repeats)]
            rate = best_rate(lambda: fresh.pop().all_values(), 1 << n, args.repeats)  # noqa: B023 - run here
            print(f"all 2^{n} masks, k = {k or n}: {(1 << n) / rate:.2f} s ({rate:,.0f} masks/s)", flush=True)
    print(f"\nafter: {load_line()}")


if __name__ == "__main__":
    main()
