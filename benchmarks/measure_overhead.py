"""How much latency `moe2 measure` adds to what a server takes: measure a loopback server that
answers after a fixed delay, and print the measured p50 and p90 minus that delay.

    python benchmarks/measure_overhead.py [--delay 0.1] [--prompts 20] [--concurrency 1]

The server (tests/fakes/openai_server.py) runs in this process, so the figures include its own
HTTP handling; on a busy machine they grow with the scheduling delay.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moe2_cli.measure import MeasureSettings, measure  # noqa: E402
from tests.fakes.openai_server import FakeModel, FakeOpenAI  # noqa: E402
from tests.measure.helpers import write_prompts, write_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.1, help="seconds the server waits before answering")
    parser.add_argument("--prompts", type=int, default=20, help="prompts per expert")
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    prompts = [{"id": f"p{i}", "category": "mcq" if i % 2 else "math", "prompt": f"Question {i}",
                "reference": "B", "scorer": "mcq"} for i in range(args.prompts)]
    a = {"qwen-a": FakeModel("B", args.delay), "llama-a": FakeModel("B", args.delay)}
    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(a) as server_a, \
            FakeOpenAI({"qwen-b": FakeModel("B", args.delay)}) as server_b:
        scenario = write_scenario(Path(tmp) / "fleet.yaml", server_a.url, server_b.url)
        result = measure(scenario, Path(tmp) / "out", MeasureSettings(
            prompts=write_prompts(Path(tmp) / "p.jsonl", prompts), concurrency=args.concurrency))
        log = (Path(tmp) / "out" / "requests.jsonl").read_text()
    latencies = np.array([json.loads(line)["latency_s"] for line in log.splitlines()])
    print(f"{len(latencies)} requests, delay {args.delay:g} s, concurrency {args.concurrency}: overhead "
          f"p50 {1000 * (np.median(latencies) - args.delay):.1f} ms, "
          f"p90 {1000 * (np.quantile(latencies, 0.9) - args.delay):.1f} ms ({result.scenario})")


if __name__ == "__main__":
    main()
