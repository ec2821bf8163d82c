"""End-to-end wall time of a 50-point energy sweep on the default scenario.

Runs the installed ``moe2`` command as a user would (a fresh process each time, so loading,
gate training and all 50 solves are counted). The first run warms the OS file cache and
Python's bytecode cache; the table reports every later run.

    python benchmarks/frontier_sweep.py [--runs 5] [--sweep energy=20:1000:20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time


def run_once(sweep: str, scenario: str | None) -> tuple[float, dict]:
    cmd = [shutil.which("moe2") or "moe2", "frontier", *([scenario] if scenario else []), "--sweep", sweep,
           "--format", "json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sweep", default="energy=20:1000:20")
    parser.add_argument("--scenario", default=None)
    args = parser.parse_args()
    run_once(args.sweep, args.scenario)  # warm-up
    times, payload = [], None
    for _ in range(args.runs):
        elapsed, payload = run_once(args.sweep, args.scenario)
        times.append(elapsed)
    points = payload["points"]
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus, Python {sys.version.split()[0]}")
    print(f"moe2 frontier {args.scenario or '(default scenario)'} --sweep {args.sweep}")
    print("| points | Pareto points | F evaluations (sum) | wall s median | wall s max |")
    print("|---|---|---|---|---|")
    evaluations = sum(p["evaluations"] for p in points)
    print(f"| {len(points)} | {sum(p['pareto'] for p in points)} | {evaluations} | "
          f"{statistics.median(times):.2f} | {max(times):.2f} |")


if __name__ == "__main__":
    main()
