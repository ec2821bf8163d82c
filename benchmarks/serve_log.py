"""The request log's cost on `moe2 serve`: the same load through two proxies over the same
experts, one without ``--log`` and one with ``--log DIR``, in alternating blocks so a change in
the machine's load falls on both. Each row's note is its throughput and the proxy's CPU time per
request; the lines the log wrote and dropped are read from its ``/metrics``."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import httpx
from serve_holds import Outcome, Row
from serve_stack import cpu_seconds, load, peak_rss_mb, start_experts, start_proxy, stop

BLOCKS = 4


def logged(args, directory: Path) -> list[Row]:
    experts = start_experts(directory, args.delay, "B")
    bounds = ("--max-inflight", str(args.concurrency), "--max-queue", str(args.concurrency))
    log_dir = directory / "requests"
    proxies = {"without --log": start_proxy(directory, experts, *bounds, name="plain"),
               "with --log DIR": start_proxy(directory, experts, *bounds, "--log", str(log_dir), name="logged")}
    runs: dict[str, list[Outcome]] = {name: [] for name in proxies}
    wall, cpu = dict.fromkeys(proxies, 0.0), dict.fromkeys(proxies, 0.0)
    try:
        for _, url in proxies.values():
            asyncio.run(load(url, args.warmup, args.concurrency))
        for _ in range(BLOCKS):
            for name, (process, url) in proxies.items():
                before = cpu_seconds(process.pid)
                results, lost, seconds = asyncio.run(load(url, args.requests // BLOCKS, args.concurrency))
                wall[name] += seconds
                cpu[name] += cpu_seconds(process.pid) - before
                runs[name] += [Outcome(200, False, latency, upstream) for latency, upstream in results]
                runs[name] += [Outcome(None, False, math.nan, error="lost") for _ in lost]
        lines = log_lines(proxies["with --log DIR"][1])
        rss = {name: peak_rss_mb(process.pid) for name, (process, _) in proxies.items()}
    finally:
        stop([*(p for p, _ in proxies.values()), *experts.processes])
    written = sum(1 for _ in (log_dir / "requests.jsonl").open())
    print(f"request log: {lines} per /metrics (warm-up included); {written} lines in the file after shutdown")
    return [Row(f"log, {name}", args.concurrency, outcomes, rss[name],
                note=f"{len(outcomes) / wall[name]:.0f} requests/s, proxy CPU {cpu[name] * 1e3 / len(outcomes):.2f} "
                     "ms/request") for name, outcomes in runs.items()]


def log_lines(url: str) -> str:
    text = httpx.get(url + "/metrics", timeout=10).text
    counts = [line.split('"')[1] + " " + line.rsplit(" ", 1)[1] for line in text.splitlines()
              if line.startswith("moe2_log_lines_total{")]
    return ", ".join(counts)
