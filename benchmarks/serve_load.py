"""Load on `moe2 serve`: lost requests, the latency the proxy adds over its experts, requests/s.

Two fake OpenAI-compatible servers (separate processes) stand in for the experts of
``examples/serve-local.yaml`` and answer after ``--delay`` seconds; ``moe2 serve`` runs as a
third process with every expert selected (top-2: two upstream calls per request); this process
sends ``--requests`` chat completions, ``--concurrency`` at a time. Every reply carries
``moe2.upstream_s``, the time the proxy waited for its experts, so the overhead of a request is
its latency seen by the client minus that wait: routing, parsing, aggregation, both HTTP hops
and the client's own queueing, all charged to the proxy. The same load is then sent straight to
one fake expert, and the p50 latencies compared.

With ``--stream`` the experts stream ``--tokens`` tokens, ``--token-delay`` seconds apart, after
``--delay``; the requests stream (``top`` passes the highest-weight expert's stream through),
and the time to the first content token is compared, sent straight to a fake expert and through
``moe2 serve``.

    python benchmarks/serve_load.py [--requests 2000] [--concurrency 64] [--delay 0.02]
    python benchmarks/serve_load.py --stream --requests 200 --concurrency 1 [--tokens 50] [--token-delay 0.01]

With ``--faults`` the highest-ranked expert misbehaves, one scenario at a time (see
:data:`FAULTS`): it is dead (accepts, never answers), drips its reply a byte a second, sends
1 GiB, or answers 500. Each scenario starts fresh processes and reports the requests answered,
503s, other errors and resets, the latency percentiles, the latency once the breaker has opened
(the second half of the requests), and the proxy's peak RSS growth over the run.

    python benchmarks/serve_load.py --faults [--requests 200] [--concurrency 4] [--timeout 5]
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


def setup(directory: Path, delay: float, answer: str, token_delay: float, fail: tuple[str, ...] = (),
          serve_args: tuple[str, ...] = ()) -> tuple[list[subprocess.Popen], str, str]:
    """Fake experts (``fail``: their ``--fail`` specs) and ``moe2 serve`` (with ``serve_args``);
    returns the processes, the proxy's URL and the first fake expert's URL."""
    text, processes, direct = SCENARIO.read_text(), [], ""
    for port, llms in FAKES.items():
        new = free_port()
        text = text.replace(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{new}")
        specs = [arg for llm in llms for arg in ("--model", f"{llm}={delay}:{answer}")]
        specs += [arg for spec in fail if spec.split("=")[0] in llms for arg in ("--fail", spec)]
        processes.append(start(["-m", "tests.fakes.openai_server", "--port", str(new), "--token-delay",
                                str(token_delay), *specs], directory / f"expert-{port}.log"))
        wait_until_up(f"http://127.0.0.1:{new}/v1/models")
        direct = direct or f"http://127.0.0.1:{new}"
    scenario = directory / "serve-local.yaml"
    scenario.write_text(text)
    experts = [f"{server}/{llm}" for server, llms in zip(("orin", "rtx"), FAKES.values()) for llm in llms]
    selection = directory / "select.json"
    selection.write_text(json.dumps({"schema": "moe2.select/1", "scenario": "local-pair", "selection": experts,
                                     "top_k": 2}))
    port = free_port()
    processes.append(start(["-m", "moe2_cli", "serve", str(scenario), "--selection", str(selection),
                            "--port", str(port), *serve_args], directory / "serve.log"))
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/healthz")
    return processes, url, direct


async def load(url: str, requests: int, concurrency: int, model: str = "local-pair",
               answer: str = "B") -> tuple[list[tuple[float, float]], list[str], float]:
    """(client latency, upstream wait) of each answered request, why each lost one was lost, and
    wall time; a reply without ``moe2`` (an expert asked directly) waited for its expert throughout."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    results: list[tuple[float, float]] = []
    lost: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            started = time.perf_counter()
            try:
                reply = await client.post(url + "/v1/chat/completions", json=question(i, model), timeout=30)
            except httpx.HTTPError as err:
                lost.append(f"{type(err).__name__}: {err}")
                continue
            elapsed = time.perf_counter() - started
            if reply.status_code != 200 or reply.json()["choices"][0]["message"]["content"] != answer:
                lost.append(f"HTTP {reply.status_code}: {reply.text[:300]}")
                continue
            results.append((elapsed, reply.json().get("moe2", {}).get("upstream_s", elapsed)))

    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return results, lost, time.perf_counter() - started


def question(i: int, model: str, stream: bool = False) -> dict:
    return {"model": model, "metadata": {"category": ("mcq", "math")[i % 2]}, "stream": stream,
            "messages": [{"role": "user", "content": f"question {i}: pick A or B"}]}


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


def streamed(args: argparse.Namespace, url: str, direct: str) -> None:
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


def fault_scenario(name: str, args: argparse.Namespace) -> dict:
    """One scenario on fresh processes: outcomes, latencies and the proxy's RSS growth."""
    how = FAULTS[name]
    fail = (f"{FAULTY}={how}",) if how else ()
    serve_args = ("--timeout", str(args.timeout), "--breaker-cooldown", str(args.cooldown))
    with tempfile.TemporaryDirectory() as directory:
        processes, url, _ = setup(Path(directory), args.delay, "B", 0.0, fail, serve_args)
        proxy = processes[-1].pid
        try:
            asyncio.run(fault_load(url, 1, 1, args.timeout + 30))  # the router's first route, untimed
            before = rss_kib(proxy, "VmRSS")
            started = time.perf_counter()
            results = asyncio.run(fault_load(url, args.requests, args.concurrency, args.timeout + 30))
            wall = time.perf_counter() - started
            peak = rss_kib(proxy, "VmHWM")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
    latency = np.array([r[1] for r in results]) * 1e3
    later = latency[len(latency) // 2:]
    outcomes = [r[2] for r in results]
    return {"scenario": name, "answered": outcomes.count("200"), "503": outcomes.count("503"),
            "errors": sum(o not in ("200", "503", "reset") for o in outcomes), "resets": outcomes.count("reset"),
            "p50": np.percentile(latency, 50), "p99": np.percentile(latency, 99), "max": latency.max(),
            "later_p50": np.percentile(later, 50), "rss_growth_mb": max(peak - before, 0) / 1024, "wall": wall}


def faulted(args: argparse.Namespace) -> None:
    print(f"{args.requests} requests per scenario, concurrency {args.concurrency}, experts answer after "
          f"{args.delay * 1e3:g} ms, top-2; {FAULTY} (ranked first for every request) misbehaves; moe2 serve "
          f"--timeout {args.timeout:g} --breaker-cooldown {args.cooldown:g}")
    print("| scenario | answered | 503 | errors | resets | p50 ms | p99 ms | max ms | p50 once open, ms | "
          "peak RSS growth, MB | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in FAULTS:
        r = fault_scenario(name, args)
        print(f"| {name} | {r['answered']} | {r['503']} | {r['errors']} | {r['resets']} | {r['p50']:.1f} | "
              f"{r['p99']:.1f} | {r['max']:.1f} | {r['later_p50']:.1f} | {r['rss_growth_mb']:.1f} | "
              f"{r['wall']:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay", type=float, default=0.02, help="seconds each fake expert takes")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--stream", action="store_true", help="stream, and compare the time to the first token")
    parser.add_argument("--tokens", type=int, default=50, help="tokens each expert streams (with --stream)")
    parser.add_argument("--token-delay", type=float, default=0.01, help="seconds between streamed tokens")
    parser.add_argument("--faults", action="store_true", help="the fault scenarios (dead, dripping, 1 GiB, 500)")
    parser.add_argument("--timeout", type=float, default=5.0, help="moe2 serve --timeout (with --faults)")
    parser.add_argument("--cooldown", type=float, default=30.0, help="moe2 serve --breaker-cooldown (with --faults)")
    args = parser.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.faults:
        faulted(args)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    with tempfile.TemporaryDirectory() as directory:
        answer = " ".join(["B"] * args.tokens) if args.stream else "B"
        processes, url, direct = setup(Path(directory), args.delay, answer, args.token_delay if args.stream else 0)
        try:
            if args.stream:
                streamed(args, url, direct)
                return
            asyncio.run(load(url, args.warmup, args.concurrency))
            before = [cpu_seconds(p.pid) for p in processes] + [own_cpu_seconds()]
            results, lost, wall = asyncio.run(load(url, args.requests, args.concurrency))
            cpu = [cpu_seconds(p.pid) for p in processes] + [own_cpu_seconds()]
            cpu = [(b - a) * 1e3 / args.requests for a, b in zip(before, cpu)]
            overruns = (Path(directory) / "serve.log").read_text().count('"event": "budget_overrun"')
            straight, _, _ = asyncio.run(load(direct, args.requests, args.concurrency, FAKES[8081][0]))
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
    direct_p50 = np.percentile([r[0] for r in straight], 50) * 1e3
    print(f"straight to one expert, ms: p50 {direct_p50:.1f}; added by moe2 serve, p50: "
          f"{np.percentile(latency, 50) - direct_p50:.1f}")
    print(f"CPU per request, ms: proxy {cpu[-2]:.2f}, fake experts {cpu[0] + cpu[1]:.2f}, load generator "
          f"{cpu[-1]:.2f} (the proxy alone could serve {1000 / cpu[-2]:.0f} requests/s per core)")
    print(f"budget overruns logged (warm-up included): {overruns}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
