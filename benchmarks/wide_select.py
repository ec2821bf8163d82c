"""`moe2 select` on a wide fleet: N experts on servers alternating Jetson AGX Orin and RTX 4090,
three of the shipped profiles' 11 LLMs each, under the default scenario's budgets.

    python benchmarks/wide_select.py --experts 256 --time-limit 10 [--solver brb]

The fleet is written to a temporary directory (``tests/fleet.py``). One untimed run fills a
private gate cache, so the timed runs measure what a user with a trained gate waits for: load the
scenario, take the cross-fitted gate from the cache, solve within ``--time-limit``, bootstrap
the intervals and look for a runner-up with what is left of the limit. Prints, per run, the
whole command's wall time, the solver's own ``wall_s`` and the answer (status, F, gap).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fleet import write_fleet  # noqa: E402


def run(path: Path, solver: str, limit: float, env: dict[str, str]) -> tuple[float, dict]:
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "moe2_cli", "select", str(path), "--solver", solver,
                           "--time-limit", str(limit), "--format", "json"],
                          capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - began, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experts", type=int, default=256)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--solver", default="brb")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MOE2_CACHE_DIR": tmp}
        path = write_fleet(Path(tmp), args.experts)
        run(path, args.solver, args.time_limit, env)  # fills the gate cache
        print(f"N = {args.experts}, solver {args.solver}, --time-limit {args.time_limit:g}")
        print("| run | command wall s | solve wall_s | status | F | gap | experts |")
        print("|---|---|---|---|---|---|---|")
        for i in range(args.runs):
            wall, out = run(path, args.solver, args.time_limit, env)
            gap = "null" if out["gap"] is None else f"{out['gap']:.3g}"
            print(f"| {i + 1} | {wall:.1f} | {out['wall_s']:.2f} | {out['status']} | {out['objective']:.4f} | "
                  f"{gap} | {len(out['selection'])} |")


if __name__ == "__main__":
    main()
