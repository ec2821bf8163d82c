"""`moe2 route` on a large query file made from the shipped LLMRouter prompts, on the shipped
LLMRouter scenario.

    python benchmarks/route_scale.py [--queries 300000] [--distinct] [--infer]

The file cycles through the 160 shipped prompts, each with its category and its LLMRouter task
as a tag. ``--distinct`` appends the line number to every text, so that no two texts are alike
and none is featurised once for many lines; ``--infer`` leaves the categories out, so that the
classifier infers every one. The gate and the classifier are fitted once beforehand into a
temporary cache, as a deployment has them; then the command is run as a whole process, timed
(wall and CPU), and its output lines counted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = ROOT / "examples" / "data" / "llmrouter-prompts.jsonl.gz"


def write_queries(path: Path, n: int, distinct: bool, infer: bool) -> None:
    prompts = [json.loads(line) for line in gzip.open(PROMPTS, "rt", encoding="utf-8")]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            p = prompts[i % len(prompts)]
            row = {"id": f"{p['id']}#{i}", "text": p["prompt"] + (f"\n(query {i})" if distinct else ""),
                   "tags": [p["id"].split("/")[0]]}
            if not infer:
                row["category"] = p["category"]
            out.write(json.dumps(row) + "\n")


def run(command: list[str], env: dict[str, str]) -> tuple[float, float, int, int]:
    """Wall seconds, CPU seconds, peak RSS in MB and stdout lines of one run of ``command``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return wall, cpu, after.ru_maxrss // 1024, done.stdout.count(b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300_000)
    parser.add_argument("--distinct", action="store_true", help="no two texts alike")
    parser.add_argument("--infer", action="store_true", help="no categories given: every one inferred")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        queries, warm = Path(tmp) / "queries.jsonl", Path(tmp) / "warm.jsonl"
        write_queries(queries, args.queries, args.distinct, args.infer)
        write_queries(warm, 160, args.distinct, args.infer)
        env = {**os.environ, "MOE2_CACHE_DIR": str(Path(tmp) / "cache"), "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "moe2_cli", "route", "llmrouter-edge", "--queries"]
        run([*command, str(warm)], env)  # fits the gate (and the classifier) into the cache
        command.append(str(queries))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        wall, cpu, rss, lines = run(command, env)
        print(f"{len(os.sched_getaffinity(0))} cores; load average before {load}, after "
              f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"command: moe2 route llmrouter-edge --queries QUERIES ({args.queries:,} lines, "
              f"{queries.stat().st_size / 2**20:.0f} MiB; {'distinct' if args.distinct else 'repeated'} texts; "
              f"categories {'inferred' if args.infer else 'given'})")
        print(f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss} MB, {lines:,} routes")
        if lines != args.queries:
            sys.exit(f"expected {args.queries} routes")


if __name__ == "__main__":
    main()
