"""Fault scenarios of the `moe2 serve` benchmark: the expert every request ranks first
misbehaves, one scenario at a time. It is dead (accepts, never answers), drips its reply a byte a
second, sends 1 GiB, or answers 500. Each scenario starts fresh processes and reports the
requests answered, 503s, other errors and resets, the latency percentiles, the latency once the
breaker has opened (the second half of the requests), and the proxy's peak RSS growth."""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
from serve_stack import question, start_experts, start_proxy, stop

# The expert every request of this load ranks first (the router's choice for these questions).
FAULTY = "phi-3.5-mini-instruct"
# Scenario -> how the faulty expert fails (a ``--fail`` mode of the fake server), None: healthy.
FAULTS: dict[str, str | None] = {"healthy": None, "dead": "hang", "dripping": "drip", "1 GiB": "huge",
                                 "500-ing": "500"}


def rss_kib(pid: int, field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (the peak so far) of a process, in KiB (Linux /proc)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1])


async def fault_load(url: str, requests: int, concurrency: int, limit_s: float) -> list[tuple[int, float, str]]:
    """(request number, latency, outcome) of each request: its HTTP status, or "reset"."""
    out: list[tuple[int, float, str]] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            started = time.perf_counter()
            try:
                reply = await client.post(url + "/v1/chat/completions", json=question(i, "local-pair"),
                                          timeout=limit_s)
                outcome = str(reply.status_code)
            except httpx.HTTPError:
                outcome = "reset"
            out.append((i, time.perf_counter() - started, outcome))

    async with httpx.AsyncClient(trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return sorted(out)


def fault_scenario(name: str, args: argparse.Namespace, directory: Path) -> dict:
    """One scenario on fresh processes: outcomes, latencies and the proxy's RSS growth."""
    how = FAULTS[name]
    here = directory / name.replace(" ", "-")
    here.mkdir()
    experts = start_experts(here, args.delay, "B", fail=(f"{FAULTY}={how}",) if how else ())
    proxy, url = start_proxy(here, experts, "--timeout", str(args.timeout), "--breaker-cooldown", str(args.cooldown))
    try:
        asyncio.run(fault_load(url, 1, 1, args.timeout + 30))  # the router's first route, untimed
        before = rss_kib(proxy.pid, "VmRSS")
        started = time.perf_counter()
        results = asyncio.run(fault_load(url, args.requests, args.concurrency, args.timeout + 30))
        wall = time.perf_counter() - started
        peak = rss_kib(proxy.pid, "VmHWM")
    finally:
        stop([proxy, *experts.processes])
    latency = np.array([r[1] for r in results]) * 1e3
    later = latency[len(latency) // 2:]
    outcomes = [r[2] for r in results]
    return {"scenario": name, "answered": outcomes.count("200"), "503": outcomes.count("503"),
            "errors": sum(o not in ("200", "503", "reset") for o in outcomes), "resets": outcomes.count("reset"),
            "p50": np.percentile(latency, 50), "p99": np.percentile(latency, 99), "max": latency.max(),
            "later_p50": np.percentile(later, 50), "rss_growth_mb": max(peak - before, 0) / 1024, "wall": wall}


def faults(args: argparse.Namespace, directory: Path) -> list:
    """Every fault scenario in turn, printed as one table (rows of their own shape)."""
    print(f"{args.requests} requests per scenario, concurrency {args.concurrency}, experts answer after "
          f"{args.delay * 1e3:g} ms, top-2; {FAULTY} (ranked first for every request) misbehaves; moe2 serve "
          f"--timeout {args.timeout:g} --breaker-cooldown {args.cooldown:g}")
    print("| scenario | answered | 503 | errors | resets | p50 ms | p99 ms | max ms | p50 once open, ms | "
          "peak RSS growth, MB | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in FAULTS:
        r = fault_scenario(name, args, directory)
        print(f"| {name} | {r['answered']} | {r['503']} | {r['errors']} | {r['resets']} | {r['p50']:.1f} | "
              f"{r['p99']:.1f} | {r['max']:.1f} | {r['later_p50']:.1f} | {r['rss_growth_mb']:.1f} | "
              f"{r['wall']:.1f} |", flush=True)
    return []
