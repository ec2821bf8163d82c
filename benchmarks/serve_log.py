"""What operating `moe2 serve` costs: the same load through three proxies over the same experts,
in alternating blocks so a change in the machine's load falls on all: one without ``--log``, one
with ``--log DIR``, and one that does all the operation work at once (``--log DIR --log-text``,
``--shadow-rate 0.05`` and joules measured per request from a power-meter log that a thread
writes ten times a second). Each row's note is its throughput and the proxy's CPU time per
request; the lines the log wrote and dropped are read from its ``/metrics``."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import re
import sys
from pathlib import Path

import httpx
from serve_holds import Outcome, Row
from serve_stack import ROOT, cpu_seconds, load, peak_rss_mb, start_experts, start_proxy, stop

sys.path.insert(0, str(ROOT))  # the test suite's fake power meter
from tests.fakes.power_meter import meter_log  # noqa: E402

BLOCKS = 4


def logged(args, directory: Path) -> list[Row]:
    experts = start_experts(directory, args.delay, "B")
    bounds = ("--max-inflight", str(args.concurrency), "--max-queue", str(args.concurrency))
    log_dir, operated = directory / "requests", directory / "operated"
    metered = metered_experts(experts, directory / "meter.csv")
    with meter_log(directory / "meter.csv", watts=40.0, interval_s=0.1):
        proxies = {"without --log": start_proxy(directory, experts, *bounds, name="plain"),
                   "with --log DIR": start_proxy(directory, experts, *bounds, "--log", str(log_dir), name="logged"),
                   "log + text + shadow 0.05 + power": start_proxy(
                       directory, metered, *bounds, "--log", str(operated), "--log-text", "--shadow-rate", "0.05",
                       name="operated")}
        return _compare(args, experts, proxies, log_dir)


def _compare(args, experts, proxies: dict, log_dir: Path) -> list[Row]:
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
    operated = [json.loads(line) for line in (log_dir.parent / "operated" / "requests.jsonl").open()]
    shadows = sum(1 for r in operated if r.get("shadow"))
    measured = sum(1 for r in operated if not r.get("shadow") and r.get("measured_j") is not None)
    print(f"operated: {len(operated) - shadows} request lines ({measured} with measured joules), {shadows} shadow "
          f"calls")
    rates = {name: len(outcomes) / wall[name] for name, outcomes in runs.items()}
    plain = rates["without --log"]
    print("throughput against the proxy without --log: " + ", ".join(
        f"{name} {rate / plain:.3f}x" for name, rate in rates.items() if name != "without --log"))
    return [Row(f"log, {name}", args.concurrency, outcomes, rss[name],
                note=f"{len(outcomes) / wall[name]:.0f} requests/s, proxy CPU {cpu[name] * 1e3 / len(outcomes):.2f} "
                     "ms/request") for name, outcomes in runs.items()]


def metered_experts(experts, meter_log: Path):
    """The same experts, their servers' power read from ``meter_log``."""
    text = re.sub(r"power: none[^\n]*\n( *)watts: [0-9.]+\n", lambda m: f'power: "file:{meter_log}"\n',
                  experts.scenario.read_text())
    scenario = experts.scenario.with_name("serve-local-metered.yaml")
    scenario.write_text(text)
    return dataclasses.replace(experts, scenario=scenario)


def log_lines(url: str) -> str:
    text = httpx.get(url + "/metrics", timeout=10).text
    counts = [line.split('"')[1] + " " + line.rsplit(" ", 1)[1] for line in text.splitlines()
              if line.startswith("moe2_log_lines_total{")]
    return ", ".join(counts)
