"""F-evaluation throughput (masks/s) for N = 16 experts, 1,000 held-out queries and k = 2.

Random gate scores and 0/1 expert scores stand in for a trained gate: the cost of F depends
only on N, the number of queries and k. Three ways in are timed, each as the best of several
repetitions on a fresh cache:

- per mask: ``GatedObjective.evaluate`` (no cache, no all-masks table);
- through the cache: ``objective(masks)``, what solvers call; for large batches it switches to
  the all-masks table when that is cheaper;
- all masks: ``all_values()``, F of all 2^N masks at once.

    python benchmarks/objective_throughput.py [--experts 16] [--queries 1000] [--top-k 2]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=16)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--top-k", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n, rng = args.experts, np.random.default_rng(1)
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}")
    start = time.perf_counter()
    f = objective(n, args.queries, args.top_k)
    print(f"N={n} experts, {args.queries} held-out queries, k={args.top_k}; tables built in "
          f"{time.perf_counter() - start:.3f} s")
    print(f"{'batch':>9}  {'per mask':>14}  {'through the cache':>18}")
    for batch in (100, 1_000, 10_000, 100_000):
        masks = rng.integers(1, 1 << n, size=batch, dtype=np.int64)
        per_mask = best_rate(lambda: f.evaluate(masks), batch, args.repeats)  # noqa: B023 - run in this iteration
        fresh = [objective(n, args.queries, args.top_k) for _ in range(args.repeats)]
        cached = best_rate(lambda: fresh.pop()(masks), batch, args.repeats)  # noqa: B023 - run in this iteration
        print(f"{batch:>9,}  {per_mask:>10,.0f} /s  {cached:>14,.0f} /s")
    if n <= 26:
        fresh = [objective(n, args.queries, args.top_k) for _ in range(args.repeats)]
        rate = best_rate(lambda: fresh.pop().all_values(), 1 << n, args.repeats)
        print(f"all {1 << n:,} masks at once: {rate:,.0f} masks/s ({(1 << n) / rate:.3f} s)")


if __name__ == "__main__":
    main()
