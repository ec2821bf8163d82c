"""Load on `moe2 serve`: lost requests, the latency the proxy adds over its experts, requests/s.

Two fake OpenAI-compatible servers (separate processes) stand in for the experts of
``examples/serve-local.yaml`` and answer after ``--delay`` seconds; ``moe2 serve`` runs as a
third process with every expert selected (top-2: two upstream calls per request); this process
sends ``--requests`` chat completions, ``--concurrency`` at a time. Every reply carries
``moe2.upstream_s``, the time the proxy waited for its experts, so the overhead of a request is
its latency seen by the client minus that wait: routing, parsing, aggregation, both HTTP hops
and the client's own queueing, all charged to the proxy.

    python benchmarks/serve_load.py [--requests 2000] [--concurrency 64] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "examples" / "serve-local.yaml"
FAKES = {8081: ["qwen2.5-1.5b-instruct", "phi-3.5-mini-instruct"], 8082: ["qwen2.5-3b-instruct", "qwen2.5-7b-instruct"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], log: Path) -> subprocess.Popen:
    # Logs go to a file: a pipe nobody reads would fill up and stall the process.
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def wait_until_up(url: str, limit_s: float = 120) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def setup(directory: Path, delay: float) -> tuple[list[subprocess.Popen], str]:
    """Fake experts and ``moe2 serve``; returns the processes and the proxy's URL."""
    text, processes = SCENARIO.read_text(), []
    for port, llms in FAKES.items():
        new = free_port()
        text = text.replace(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{new}")
        specs = [arg for llm in llms for arg in ("--model", f"{llm}={delay}:B")]
        processes.append(start(["-m", "tests.fakes.openai_server", "--port", str(new), *specs],
                               directory / f"expert-{port}.log"))
        wait_until_up(f"http://127.0.0.1:{new}/v1/models")
    scenario = directory / "serve-local.yaml"
    scenario.write_text(text)
    experts = [f"{server}/{llm}" for server, llms in zip(("orin", "rtx"), FAKES.values()) for llm in llms]
    selection = directory / "select.json"
    selection.write_text(json.dumps({"schema": "moe2.select/1", "scenario": "local-pair", "selection": experts,
                                     "top_k": 2}))
    port = free_port()
    processes.append(start(["-m", "moe2_cli", "serve", str(scenario), "--selection", str(selection),
                            "--port", str(port)], directory / "serve.log"))
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/healthz")
    return processes, url


async def load(url: str, requests: int, concurrency: int) -> tuple[list[tuple[float, float]], list[str], float]:
    """(client latency, upstream wait) of each answered request, why each lost one was lost, and wall time."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[tuple[float, float]] = []
    lost: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"model": "local-pair", "metadata": {"category": ("mcq", "math")[i % 2]},
                    "messages": [{"role": "user", "content": f"question {i}: pick A or B"}]}
            started = time.perf_counter()
            try:
                reply = await client.post(url + "/v1/chat/completions", json=body, timeout=30)
            except httpx.HTTPError as err:
                lost.append(f"{type(err).__name__}: {err}")
                continue
            elapsed = time.perf_counter() - started
            if reply.status_code != 200 or reply.json()["choices"][0]["message"]["content"] != "B":
                lost.append(f"HTTP {reply.status_code}: {reply.text[:300]}")
                continue
            results.append((elapsed, reply.json()["moe2"]["upstream_s"]))

    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return results, lost, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds each fake expert takes")
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as directory:
        processes, url = setup(Path(directory), args.delay)
        try:
            asyncio.run(load(url, args.warmup, args.concurrency))
            before = [cpu_seconds(p.pid) for p in processes] + [own_cpu_seconds()]
            results, lost, wall = asyncio.run(load(url, args.requests, args.concurrency))
            cpu = [cpu_seconds(p.pid) for p in processes] + [own_cpu_seconds()]
            cpu = [(b - a) * 1e3 / args.requests for a, b in zip(before, cpu)]
            overruns = (Path(directory) / "serve.log").read_text().count('"event": "budget_overrun"')
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    latency = np.array([r[0] for r in results]) * 1e3
    overhead = np.array([r[0] - r[1] for r in results]) * 1e3
    print(f"{args.requests} requests, concurrency {args.concurrency}, experts answer after {args.delay * 1e3:g} ms, "
          f"top-2 (two expert calls per request)")
    print(f"lost requests: {len(lost)}")
    for reason in sorted(set(lost)):
        print(f"  {lost.count(reason)} x {reason}")
    print(f"requests/s: {args.requests / wall:.0f} ({wall:.2f} s)")
    print(f"latency seen by the client, ms: p50 {np.percentile(latency, 50):.1f}, p99 {np.percentile(latency, 99):.1f}")
    print(f"overhead over the experts, ms: p50 {np.percentile(overhead, 50):.1f}, "
          f"p99 {np.percentile(overhead, 99):.1f}")
    print(f"CPU per request, ms: proxy {cpu[-2]:.2f}, fake experts {cpu[0] + cpu[1]:.2f}, load generator "
          f"{cpu[-1]:.2f} (the proxy alone could serve {1000 / cpu[-2]:.0f} requests/s per core)")
    print(f"budget overruns logged (warm-up included): {overruns}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
