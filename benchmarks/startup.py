"""Start-up time: `moe2 --version` and `moe2 select` with a cached gate against a bare typer, rich import.

Whole-process wall time of each command (``subprocess``), median of several runs each,
interleaved so that a change in the machine's load affects every command alike. `select` runs
on the default scenario with the gate cache filled once beforehand in a temporary
``MOE2_CACHE_DIR``, so each run loads the scenario, takes the cross-fitted gates from the cache
(verifying the entry), bootstraps and solves.

The acceptance ratio is `--version` at most 4x the bare import.

    python benchmarks/startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

MOE2 = [sys.executable, "-m", "moe2_cli"]
COMMANDS = {
    "import typer, rich": [sys.executable, "-c", "import typer, rich"],
    "moe2 --version": [*MOE2, "--version"],
    "moe2 select (cached gate)": [*MOE2, "select", "--format", "json"],
}


def wall_time(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "MOE2_CACHE_DIR": cache}
        wall_time(COMMANDS["moe2 select (cached gate)"], env)  # fills the gate cache
        times: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.runs):
            for name, command in COMMANDS.items():
                times[name].append(wall_time(command, env))
    median = {name: statistics.median(t) for name, t in times.items()}
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # as nproc
    print(f"{cores} cores, load average {load}; median of {args.runs} runs (whole process)")
    for name, seconds in median.items():
        print(f"  {name:<26} {seconds:6.3f} s")
    version = median["moe2 --version"] / median["import typer, rich"]
    select = median["moe2 select (cached gate)"] / median["moe2 --version"]
    print(f"  --version / import typer, rich:   {version:5.2f}  (at most 4)")
    print(f"  select (cached gate) / --version: {select:5.2f}")


if __name__ == "__main__":
    main()
