"""The processes a `moe2 serve` benchmark runs: two fake experts (the servers of
``examples/serve-local.yaml`` on free ports) and the proxy over every expert, top-2, from this
tree or from another source tree (an earlier commit, for before/after comparisons)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = ROOT / "examples" / "serve-local.yaml"
FAKES = {8081: ["qwen2.5-1.5b-instruct", "phi-3.5-mini-instruct"], 8082: ["qwen2.5-3b-instruct", "qwen2.5-7b-instruct"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(args: list[str], log: Path, root: Path = ROOT) -> subprocess.Popen:
    # Logs go to a file: a pipe nobody reads would fill up and stall the process.
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, *args], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(root)})


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (Linux /proc: VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


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


@dataclass
class Experts:
    """The running fake experts, the scenario and selection files pointing at them, and the
    first expert's URL (to ask it straight)."""

    processes: list[subprocess.Popen]
    scenario: Path
    selection: Path
    direct: str


def start_experts(directory: Path, delay: float, answer: str, token_delay: float = 0.0,
                  fail: tuple[str, ...] = ()) -> Experts:
    """The fake experts; ``fail`` holds ``LLM=MODE`` specs of the fake server's ``--fail``."""
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
    return Experts(processes, scenario, selection, direct)


def start_proxy(directory: Path, experts: Experts, *options: str, root: Path = ROOT,
                name: str = "serve") -> tuple[subprocess.Popen, str]:
    """``moe2 serve`` from the source tree ``root``, up and answering; (process, URL)."""
    port = free_port()
    process = start(["-m", "moe2_cli", "serve", str(experts.scenario), "--selection", str(experts.selection),
                     "--port", str(port), *options], directory / f"{name}.log", root)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/healthz")
    return process, url


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        process.wait(timeout=60)


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
