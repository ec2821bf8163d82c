"""Load on `moe2 serve`: a suite of scenarios, each against fake OpenAI-compatible experts.

Two fake servers (separate processes) stand in for the experts of ``examples/serve-local.yaml``
and answer after ``--delay`` seconds; ``moe2 serve`` runs as a third process with every expert
selected (top-2: two upstream calls per request). Scenarios (``--scenario``, repeatable; the
registry :data:`SCENARIOS` is where more are added):

- ``load`` (default): ``--requests`` chat completions, ``--concurrency`` at a time. Every reply
  carries ``moe2.upstream_s``, the time the proxy waited for its experts, so the overhead of a
  request is its latency at the client minus that wait. The same load is then sent straight to
  one fake expert, and the p50 latencies compared.
- ``stream`` (or ``--stream``): the experts stream ``--tokens`` tokens, ``--token-delay`` apart,
  and the time to the first content token is compared, straight and through ``moe2 serve``.
- ``overload``: ``--clients`` clients (default 2,000) each send one request at once, each on its
  own connection, while a separate process asks ``/healthz`` every 20 ms: on the proxy's probe
  listener (``--probe-port``), or with ``--probe-at main`` on the port the clients use.
- ``sigterm``: ``--clients`` clients send requests back to back; after ``--sigterm-after``
  seconds the proxy gets SIGTERM, and every request's fate is counted until it has exited.
- ``faults``: the expert every request ranks first is dead, drips, sends 1 GiB or answers 500,
  one scenario at a time (:mod:`serve_faults`).
- ``overhead``: ``--concurrency`` clients (100 in the acceptance run) through this tree's proxy
  and, with ``--baseline DIR`` (an export of an earlier commit), through that one's, in
  alternating blocks against the same experts; the p50 overheads are compared.
- ``log``: the ``load`` scenario's requests, ``--concurrency`` at a time, through a proxy without
  ``--log`` and one with ``--log DIR``, in alternating blocks (:mod:`serve_log`); the throughputs
  and latencies are compared.

The suite reports per scenario: answered, 503 (each with ``Retry-After``), errors, resets, p50
and p99 latency of answered requests, the proxy's peak RSS, and the /healthz p99 during the run.

    python benchmarks/serve_load.py [--requests 2000] [--concurrency 64] [--delay 0.02]
    python benchmarks/serve_load.py --stream --requests 200 --concurrency 1 [--tokens 50] [--token-delay 0.01]
    python benchmarks/serve_load.py --scenario overload --scenario sigterm [--clients 2000] [--probe-at main]
    python benchmarks/serve_load.py --scenario overhead --concurrency 100 --baseline DIR
    python benchmarks/serve_load.py --scenario faults --requests 200 --concurrency 4 [--timeout 5]
    python benchmarks/serve_load.py --scenario log --requests 4000 --concurrency 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from serve_faults import faults
from serve_holds import Row, overhead, overload, sigterm, table
from serve_log import logged
from serve_stack import (
    FAKES,
    cpu_seconds,
    load,
    own_cpu_seconds,
    question,
    start_experts,
    start_proxy,
    stop,
)


async def stream_load(url: str, requests: int, model: str, answer: str) -> tuple[list[tuple[float, float]], list[str]]:
    """(time to the first content token, time to the end) of each streamed request, one at a
    time, and why each lost one was lost."""
    results: list[tuple[float, float]] = []
    lost: list[str] = []
    async with httpx.AsyncClient(trust_env=False) as client:
        for i in range(requests):
            started, first, text = time.perf_counter(), None, []
            try:
                async with client.stream("POST", url + "/v1/chat/completions", json=question(i, model, True),
                                         timeout=30) as reply:
                    async for line in reply.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        chunk = json.loads(line[len("data: "):])
                        piece = chunk["choices"][0]["delta"].get("content") if chunk.get("choices") else None
                        if piece and first is None:
                            first = time.perf_counter() - started
                        text.append(piece or "")
            except httpx.HTTPError as err:
                lost.append(f"{type(err).__name__}: {err}")
                continue
            if first is None or "".join(text) != answer:
                lost.append(f"HTTP {reply.status_code}: {''.join(text)[:100]!r}")
                continue
            results.append((first, time.perf_counter() - started))
    return results, lost


def compare_streams(args: argparse.Namespace, url: str, direct: str) -> None:
    """Time to the first token, straight to an expert and through ``moe2 serve``, alternating
    blocks so a change in the machine's load falls on both."""
    answer = " ".join(["B"] * args.tokens)
    model = FAKES[8081][0]
    asyncio.run(stream_load(url, args.warmup, "local-pair", answer))
    asyncio.run(stream_load(direct, args.warmup, model, answer))
    runs: dict[str, list[tuple[float, float]]] = {"direct": [], "moe2": []}
    lost: list[str] = []
    for _ in range(4):
        for name, (where, asked) in {"direct": (direct, model), "moe2": (url, "local-pair")}.items():
            results, missing = asyncio.run(stream_load(where, args.requests // 4, asked, answer))
            runs[name] += results
            lost += missing
    print(f"{args.requests} streamed requests each way, concurrency 1; experts wait {args.delay * 1e3:g} ms, then "
          f"stream {args.tokens} tokens {args.token_delay * 1e3:g} ms apart")
    print(f"lost requests: {len(lost)}")
    for reason in sorted(set(lost)):
        print(f"  {lost.count(reason)} x {reason}")
    for name, results in runs.items():
        ttft = np.array([r[0] for r in results]) * 1e3
        total = np.array([r[1] for r in results]) * 1e3
        print(f"{name:>6}: time to first token p50 {np.percentile(ttft, 50):.1f} ms, p99 {np.percentile(ttft, 99):.1f}"
              f" ms; whole stream p50 {np.percentile(total, 50):.1f} ms")
    added = np.percentile([r[0] for r in runs["moe2"]], 50) - np.percentile([r[0] for r in runs["direct"]], 50)
    print(f"added to the time to first token by moe2 serve, p50: {added * 1e3:.1f} ms")


def streams(args: argparse.Namespace, directory: Path) -> list[Row]:
    answer = " ".join(["B"] * args.tokens)
    experts = start_experts(directory, args.delay, answer, args.token_delay)
    proxy, url = start_proxy(directory, experts)
    try:
        compare_streams(args, url, experts.direct)
    finally:
        stop([proxy, *experts.processes])
    return []


def throughput(args: argparse.Namespace, directory: Path) -> list[Row]:
    """Lost requests, requests/s, the overhead over the experts and the CPU per request."""
    experts = start_experts(directory, args.delay, "B")
    proxy, url = start_proxy(directory, experts)
    processes = [*experts.processes, proxy]
    try:
        asyncio.run(load(url, args.warmup, args.concurrency))
        before = [cpu_seconds(p.pid) for p in processes] + [own_cpu_seconds()]
        results, lost, wall = asyncio.run(load(url, args.requests, args.concurrency))
        cpu = [cpu_seconds(p.pid) for p in processes] + [own_cpu_seconds()]
        cpu = [(b - a) * 1e3 / args.requests for a, b in zip(before, cpu)]
        overruns = (directory / "serve.log").read_text().count('"event": "budget_overrun"')
        straight, _, _ = asyncio.run(load(experts.direct, args.requests, args.concurrency, FAKES[8081][0]))
    finally:
        stop(processes)
    report_throughput(args, results, lost, wall, cpu, overruns, straight)
    return []


def report_throughput(args, results, lost, wall, cpu, overruns, straight) -> None:
    latency = np.array([r[0] for r in results]) * 1e3
    added = np.array([r[0] - r[1] for r in results]) * 1e3
    print(f"{args.requests} requests, concurrency {args.concurrency}, experts answer after {args.delay * 1e3:g} ms, "
          f"top-2 (two expert calls per request)")
    print(f"lost requests: {len(lost)}")
    for reason in sorted(set(lost)):
        print(f"  {lost.count(reason)} x {reason}")
    print(f"requests/s: {args.requests / wall:.0f} ({wall:.2f} s)")
    print(f"latency seen by the client, ms: p50 {np.percentile(latency, 50):.1f}, p99 {np.percentile(latency, 99):.1f}")
    print(f"overhead over the experts, ms: p50 {np.percentile(added, 50):.1f}, "
          f"p99 {np.percentile(added, 99):.1f}")
    direct_p50 = np.percentile([r[0] for r in straight], 50) * 1e3
    print(f"straight to one expert, ms: p50 {direct_p50:.1f}; added by moe2 serve, p50: "
          f"{np.percentile(latency, 50) - direct_p50:.1f}")
    print(f"CPU per request, ms: proxy {cpu[-2]:.2f}, fake experts {cpu[0] + cpu[1]:.2f}, load generator "
          f"{cpu[-1]:.2f} (the proxy alone could serve {1000 / cpu[-2]:.0f} requests/s per core)")
    print(f"budget overruns logged (warm-up included): {overruns}")


SCENARIOS: dict[str, Callable[[argparse.Namespace, Path], list[Row]]] = {
    "load": throughput, "stream": streams, "overload": overload, "sigterm": sigterm, "overhead": overhead,
    "faults": faults, "log": logged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="what to run (repeatable; default: load)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds each fake expert takes")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--stream", action="store_true", help="the stream scenario")
    parser.add_argument("--tokens", type=int, default=50, help="tokens each expert streams (stream)")
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds between streamed tokens (stream)")
    parser.add_argument("--clients", type=int, default=2000, help="clients sending at once (overload)")
    parser.add_argument("--probe-at", choices=("probe-port", "main"), default="probe-port",
                        help="where /healthz is asked during the burst (overload)")
    parser.add_argument("--client-timeout", type=float, default=120, help="seconds a client waits for an answer")
    parser.add_argument("--sigterm-after", type=float, default=3.0, help="seconds of load before SIGTERM (sigterm)")
    parser.add_argument("--grace", type=float, default=10.0, help="the proxy's --grace (sigterm)")
    parser.add_argument("--baseline", help="a source tree of an earlier moe2 to compare with (overhead)")
    parser.add_argument("--timeout", type=float, default=5.0, help="the proxy's --timeout (faults)")
    parser.add_argument("--cooldown", type=float, default=30.0, help="the proxy's --breaker-cooldown (faults)")
    args = parser.parse_args()
    chosen = args.scenario or (["stream"] if args.stream else ["load"])
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"command: python benchmarks/serve_load.py {' '.join(sys.argv[1:])}")
    rows: list[Row] = []
    for name in chosen:
        with tempfile.TemporaryDirectory() as directory:
            rows += SCENARIOS[name](args, Path(directory))
    if rows:
        print(f"experts answer after {args.delay * 1e3:g} ms; top-2 (two expert calls per request)")
        print(table(rows))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
