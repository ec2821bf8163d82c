"""moe2 serve's proxy overhead against LiteLLM proxy's, measured in the same run.

Two fake experts (separate processes, as in ``serve_load.py``) answer after ``--delay`` seconds.
``moe2 serve`` runs with a selection of one expert and ``top_k`` 1, and LiteLLM proxy routes the
same model name to that same expert, so each proxy makes exactly one upstream call per request.
The same load then goes straight to the expert, through moe2 and through LiteLLM, in alternating
blocks (the order rotates each block, so a change in the machine's load falls on all three), at
each ``--load CONCURRENCY:REQUESTS`` (requests per block and path). The overhead of a proxy is
its p50 client latency minus the p50 straight to the expert; the report gives it for both proxies
and their ratio, with requests/s and each proxy's CPU per request.

LiteLLM is not a dependency of moe2: install it in a venv of its own and pass its executable::

    python -m venv V && V/bin/pip install 'litellm[proxy]'
    python benchmarks/litellm_compare.py --litellm V/bin/litellm [--load 1:300 --load 16:1000] [--blocks 3]

LiteLLM runs offline, without a database, callbacks or telemetry, and without a master key, as
moe2 serve runs without ``--api-key``: neither proxy checks a key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from serve_stack import (
    FAKES,
    Experts,
    cpu_seconds,
    free_port,
    load,
    question,
    start_experts,
    start_proxy,
    stop,
    wait_until_up,
)

MODEL = "local-pair"  # the name both proxies serve, so both get byte-identical requests
EXPERT = FAKES[8081][0]
VENV_HINT = "make one with: python -m venv V && V/bin/pip install 'litellm[proxy]', then pass --litellm V/bin/litellm"

# Offline and quiet: the bundled cost map instead of a download, no telemetry, no feedback banner,
# no database, and no master key (LiteLLM refuses to start without one unless told this is local).
LITELLM_ENV = {"LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true",
               "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true", "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true"}
LITELLM_UNSET = ("DATABASE_URL", "LITELLM_MASTER_KEY", "REDIS_HOST", "REDIS_URL")


@dataclass
class Way:
    """One way to the expert: its URL, the model name it is asked for, the process whose CPU is
    counted (None straight to the expert), and what the blocks measured."""

    url: str
    model: str
    process: subprocess.Popen | None = None
    latencies: list[float] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.latencies) + len(self.lost)

    def cpu_ms(self) -> float:
        """The proxy's CPU per request sent, ms."""
        return self.cpu * 1e3 / self.sent


def litellm_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in LITELLM_UNSET}
    return {**env, **LITELLM_ENV}


def litellm_version(executable: str) -> str:
    reply = subprocess.run([executable, "--version"], capture_output=True, text=True, env=litellm_env(), timeout=300)
    return reply.stdout.strip().rsplit("=", 1)[-1].strip() or "unknown"


def one_expert(experts: Experts) -> None:
    """Rewrite the selection to the first expert alone, top-1: one upstream call per request."""
    data = json.loads(experts.selection.read_text())
    experts.selection.write_text(json.dumps({**data, "selection": [f"orin/{EXPERT}"], "top_k": 1}))


def check_one_call(url: str) -> None:
    """Stop unless moe2 serve asks exactly the one expert: otherwise the proxies do unequal work."""
    reply = httpx.post(url + "/v1/chat/completions", json=question(0, MODEL), timeout=30).json()
    asked = reply.get("moe2", {}).get("experts")
    if asked != [f"orin/{EXPERT}"]:
        raise SystemExit(f"moe2 serve asked {asked} for one request, not the one expert orin/{EXPERT}")


def litellm_config(directory: Path, direct: str) -> Path:
    # JSON is YAML, and LiteLLM reads its config as YAML.
    config = {"model_list": [{"model_name": MODEL, "litellm_params": {
        "model": f"openai/{EXPERT}", "api_base": f"{direct}/v1", "api_key": "x"}}],
        "litellm_settings": {"callbacks": [], "success_callback": [], "failure_callback": []}}
    path = directory / "litellm.yaml"
    path.write_text(json.dumps(config, indent=2))
    return path


def start_litellm(executable: str, directory: Path, direct: str) -> tuple[subprocess.Popen, str]:
    """LiteLLM proxy, one uvicorn worker on loopback, up and answering; (process, URL)."""
    port, log = free_port(), directory / "litellm.log"
    with log.open("w") as out:
        process = subprocess.Popen([executable, "--config", str(litellm_config(directory, direct)), "--host",
                                    "127.0.0.1", "--port", str(port), "--num_workers", "1"],
                                   cwd=directory, stdout=out, stderr=subprocess.STDOUT, env=litellm_env())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url + "/health/liveliness", limit_s=300)
    except SystemExit:
        stop([process])
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SystemExit(f"LiteLLM proxy did not come up at {url}; its log ends:\n{tail}") from None
    return process, url


def block(path: Way, requests: int, concurrency: int) -> None:
    before = cpu_seconds(path.process.pid) if path.process else 0.0
    results, lost, wall = asyncio.run(load(path.url, requests, concurrency, path.model))
    if path.process:
        path.cpu += cpu_seconds(path.process.pid) - before
    path.latencies += [latency for latency, _ in results]
    path.lost += lost
    path.wall += wall


def measure(ways: dict[str, tuple[str, str, subprocess.Popen | None]], concurrency: int, requests: int,
            blocks: int, warmup: int) -> dict[str, Way]:
    paths = {name: Way(url, model, process) for name, (url, model, process) in ways.items()}
    for path in paths.values():
        asyncio.run(load(path.url, warmup, concurrency, path.model))
    names = list(paths)
    for i in range(blocks):
        for name in names[i % len(names):] + names[:i % len(names)]:
            block(paths[name], requests, concurrency)
    return paths


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1e3 if values else float("nan")


def rows(concurrency: int, paths: dict[str, Way]) -> list[str]:
    direct = p(paths["direct"].latencies, 50)
    lines = []
    for name, path in paths.items():
        overhead = "-" if name == "direct" else f"{p(path.latencies, 50) - direct:.2f}"
        cpu = "-" if path.process is None else f"{path.cpu_ms():.2f}"
        lines.append(f"| {concurrency} | {name} | {path.sent} | {len(path.lost)} | {path.sent / path.wall:.0f} | "
                     f"{p(path.latencies, 50):.2f} | {p(path.latencies, 99):.2f} | {overhead} | {cpu} |")
    return lines


def verdict(concurrency: int, paths: dict[str, Way]) -> str:
    direct = p(paths["direct"].latencies, 50)
    moe2, litellm = (p(paths[name].latencies, 50) - direct for name in ("moe2 serve", "LiteLLM"))
    # A ratio over an overhead lost in the noise (zero or below) would read as a result; say so instead.
    ratio = f"{moe2 / litellm:.2f}" if litellm > 0 else "undefined (LiteLLM's overhead <= 0)"
    cpu = paths["moe2 serve"].cpu_ms() / paths["LiteLLM"].cpu_ms()
    return (f"concurrency {concurrency}: overhead p50 moe2 serve {moe2:.2f} ms, LiteLLM {litellm:.2f} ms; "
            f"ratio moe2 / LiteLLM {ratio} (target <= 0.5); proxy CPU per request, moe2 / LiteLLM {cpu:.2f}")


def report(results: dict[int, dict[str, Way]]) -> None:
    print("| concurrency | path | requests | lost | requests/s | p50 ms | p99 ms | overhead p50 ms "
          "| proxy CPU ms / request |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency, paths in results.items():
        print("\n".join(rows(concurrency, paths)))
    for concurrency, paths in results.items():
        print(verdict(concurrency, paths))
        for name, path in paths.items():
            for reason in sorted(set(path.lost)):
                print(f"  {name}: {path.lost.count(reason)} x {reason}")


def parse_load(text: str) -> tuple[int, int]:
    try:
        concurrency, requests = (int(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CONCURRENCY:REQUESTS, e.g. 16:1000 (got {text!r})") from None
    if concurrency < 1 or requests < 1:
        raise argparse.ArgumentTypeError(f"concurrency and requests must be >= 1 (got {text!r})")
    return concurrency, requests


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--litellm", required=True, help=f"LiteLLM's executable, from a venv of its own ({VENV_HINT})")
    parser.add_argument("--load", type=parse_load, action="append",
                        help="CONCURRENCY:REQUESTS, requests per block and path (repeatable; default 1:300 16:1000)")
    parser.add_argument("--blocks", type=int, default=3, help="alternating blocks per load")
    parser.add_argument("--warmup", type=int, default=50, help="requests per path before each load's blocks")
    parser.add_argument("--delay", type=float, default=0.02, help="seconds the fake expert takes")
    args = parser.parse_args()
    executable = Path(args.litellm)
    if not (executable.is_file() and os.access(executable, os.X_OK)):
        parser.error(f"--litellm {args.litellm}: not an executable file; {VENV_HINT}")
    if args.blocks < 1:
        parser.error(f"--blocks must be >= 1 (got {args.blocks})")
    args.load = args.load or [(1, 300), (16, 1000)]
    return args


def main() -> None:
    args = arguments()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"command: python benchmarks/litellm_compare.py {' '.join(sys.argv[1:])}")
    print(f"LiteLLM {litellm_version(args.litellm)}; expert answers after {args.delay * 1e3:g} ms; one upstream "
          f"call per request through either proxy; {args.blocks} alternating blocks per load")
    with tempfile.TemporaryDirectory() as directory:
        experts = start_experts(Path(directory), args.delay, "B")
        processes = list(experts.processes)
        try:
            one_expert(experts)
            moe2, moe2_url = start_proxy(Path(directory), experts)
            processes.append(moe2)
            check_one_call(moe2_url)
            litellm, litellm_url = start_litellm(args.litellm, Path(directory), experts.direct)
            processes.append(litellm)
            ways = {"direct": (experts.direct, EXPERT, None), "moe2 serve": (moe2_url, MODEL, moe2),
                    "LiteLLM": (litellm_url, MODEL, litellm)}
            results = {c: measure(ways, c, n, args.blocks, args.warmup) for c, n in args.load}
        finally:
            stop(processes)
    report(results)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
