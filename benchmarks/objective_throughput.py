"""F-evaluation throughput (masks/s) by number of experts N and gate width k, 1,000 held-out queries.

Random gate scores and 0/1 expert scores stand in for a trained gate: the cost of F depends
only on N, the number of queries and k. For every (N, k) two ways in are timed on the same
random masks, each as the best of several repetitions:

- fast: ``GatedObjective.evaluate``, the path solvers use (k <= 2: best-two rank tables;
  k >= 3: rank-bit tables and per-byte softmax sums; masks with at most k experts: per-byte
  products);
- generic (``--baseline``, on by default): ``GatedObjective.evaluate_generic``, the plain
  vectorised definition every earlier version used for k >= 3, on fewer masks since it is slow;
- masks-outer (with ``--baseline``, k >= 3): ``GatedObjective.evaluate_masks_outer``, the rank
  tables looped masks outer, which the query-outer kernels replace (same bits).

For k >= 3, single-mask F (``evaluate`` of one mask at a time) is timed against the masks-outer
rank tables it replaces (``evaluate_masks_outer``), in the same run: through the compiled scan
when numba is installed (``moe2[fast]``; compiled before timing, as a process does after its
first ``kernels.COMPILE_AFTER`` single masks), else through numpy's gate-order scan (``--numpy-scan``
forces it).

``--all-masks N...`` also times ``all_values()``, F of all 2^N masks (what the monotone
envelope tabulates), for every k; for k >= 3 against the masks-outer tables on all 2^N masks
(the query-outer kernel's reference), in wall and CPU seconds (all threads).

    python benchmarks/objective_throughput.py [--experts 16 24 48 62] [--top-k 2 4 6 0] [--no-baseline]

``--top-k 0`` stands for k = N.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from moe2_cli.gating import kernels
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
    return count / best_times(run, repeats)[0]


def best_times(run, repeats: int) -> tuple[float, float]:
    """The best wall and CPU seconds (all threads) of several runs."""
    wall = cpu = np.inf
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = min(wall, time.perf_counter() - start), min(cpu, time.process_time() - start_cpu)
    return wall, cpu


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
    parser.add_argument("--single", type=int, default=200, help="masks timed one at a time for single-mask F")
    parser.add_argument("--numpy-scan", action="store_true", help="single-mask F through numpy, not the compiled scan")
    parser.add_argument("--all-masks", type=int, nargs="*", default=[], help="also time all 2^N masks at these N")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}; {load_line()}")
    print(f"{args.queries} held-out queries, best of {args.repeats}\n")
    if args.experts:
        print("| N | k | fast masks/s | masks-outer masks/s | fast / masks-outer | generic masks/s | fast / generic |\n"
              "|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(1)
    for n in args.experts:
        masks = rng.integers(1, 1 << n, size=args.masks, dtype=np.int64)
        for k in args.top_k:
            f = objective(n, args.queries, k or n)
            fast = best_rate(lambda: f.evaluate(masks), masks.size, args.repeats)  # noqa: B023 - run in this iteration
            outer = (best_rate(lambda: f.evaluate_masks_outer(masks), masks.size, args.repeats)  # noqa: B023 - run here
                     if (k or n) >= 3 and args.baseline else np.nan)
            few = masks[: max(1, masks.size // 10)]
            generic = (best_rate(lambda: f.evaluate_generic(few), few.size, args.repeats)  # noqa: B023 - run here
                       if args.baseline else np.nan)
            versus = f"{outer:,.0f} | {fast / outer:.2f}x" if outer == outer else "— | —"  # NaN: not timed
            print(f"| {n} | {k or n}{' (N)' if not k else ''} | {fast:,.0f} | {versus} | "
                  f"{generic:,.0f} | {fast / generic:.1f}x |", flush=True)
    single_masks(args, rng)
    if args.all_masks:
        print("\n| all 2^N masks | k | query-outer s (CPU s) | masks-outer s (CPU s) | wall ratio | CPU ratio |\n"
              "|---|---|---|---|---|---|")
    for n in args.all_masks:
        for k in args.top_k:
            all_masks(n, k or n, args)
    print(f"\nafter: {load_line()}")


def single_masks(args, rng: np.random.Generator) -> None:
    """Single-mask F at k >= 3, one mask per call: each mask's best time over the repetitions,
    the paths timed in turn on the same mask, so all see the same load. With numba, the numpy
    scan that a process uses before it compiles is timed too."""
    wide = [k for k in args.top_k if (k or 3) >= 3]
    if not wide or not args.single or not args.experts:
        return
    compiled = not args.numpy_scan and kernels.compile_scan()
    if not compiled:
        kernels.COMPILE_AFTER = sys.maxsize  # numpy's scan for every single mask of this process
    print(f"\nsingle masks through {'the compiled scan (numba)' if compiled else 'numpy'}\n\n"
          "| N | k | one mask, scan µs | one mask, masks-outer µs | ratio | numpy scan µs |\n"
          "|---|---|---|---|---|---|")
    for n in args.experts:
        masks = rng.integers(1, 1 << n, size=args.single, dtype=np.int64).reshape(-1, 1)
        for k in wide:
            f = objective(n, args.queries, k or n)
            paths = [f.evaluate, f.evaluate_masks_outer] + ([numpy_scan(f)] if compiled else [])
            best = np.full((len(paths), masks.shape[0]), np.inf)
            for _ in range(max(args.repeats, 5)):  # single calls are short: more repetitions cost little
                for i, mask in enumerate(masks):
                    for path, run in enumerate(paths):
                        start = time.perf_counter()
                        run(mask)
                        best[path, i] = min(best[path, i], time.perf_counter() - start)
            new, old, *before = 1e6 * best.mean(axis=1)
            print(f"| {n} | {k or n} | {new:.0f} | {old:.0f} | {old / new:.2f}x | "
                  f"{f'{before[0]:.0f}' if before else '—'} |", flush=True)


def numpy_scan(f: GatedObjective):
    """``f.evaluate`` with the compiled scan set aside for the call."""
    def run(mask):
        compiled = kernels._COMPILED[:]
        kernels._COMPILED[:] = [None]
        try:
            return f.evaluate(mask)
        finally:
            kernels._COMPILED[:] = compiled
    return run


def all_masks(n: int, k: int, args) -> None:
    """All 2^n masks: all_values() on a fresh objective each time (nothing cached), and for k >= 3
    the masks-outer tables on the same masks."""
    fresh = [objective(n, args.queries, k) for _ in range(args.repeats)]
    wall, cpu = best_times(lambda: fresh.pop().all_values(), args.repeats)
    if k <= 2 or not args.baseline:
        print(f"| {n} | {k} | {wall:.2f} ({cpu:.2f}) | | | |", flush=True)
        return
    f, masks = objective(n, args.queries, k), np.arange(1 << n, dtype=np.int64)
    old_wall, old_cpu = best_times(lambda: f.evaluate_masks_outer(masks), args.repeats)
    print(f"| {n} | {k} | {wall:.2f} ({cpu:.2f}) | {old_wall:.2f} ({old_cpu:.2f}) | {old_wall / wall:.2f}x | "
          f"{old_cpu / cpu:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
