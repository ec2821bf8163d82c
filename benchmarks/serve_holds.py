"""Scenarios of `moe2 serve` under stress: a burst of clients, SIGTERM under load, and the
overhead at a fixed concurrency compared with an earlier version. Each returns rows of one table.

Clients here speak HTTP/1.1 on raw sockets, one connection per request, so that a reset, a
refused connection, a connection closed without an answer and a timeout are told apart, and so
that thousands of them cost the load generator little."""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import multiprocessing
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from serve_stack import (
    cpu_seconds,
    free_port,
    load,
    peak_rss_mb,
    question,
    start_experts,
    start_proxy,
    stop,
)

HEALTH_EVERY_S = 0.02
HEALTH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no HTTP answer (see ``error``)
    retry_after: bool
    seconds: float
    upstream_s: float | None = None  # the proxy's wait for its experts, on a 200
    error: str | None = None  # reset, closed (before an answer), refused, timeout


@dataclass
class Row:
    scenario: str
    clients: int
    outcomes: list[Outcome]
    rss_mb: float
    health_s: list[float] = field(default_factory=list)
    note: str = ""

    def cells(self) -> list[str]:
        got = self.outcomes
        answered = [o for o in got if o.status == 200]
        refused = sum(o.status == 503 and o.retry_after for o in got)
        resets = sum(o.error in ("reset", "closed") for o in got)
        turned_away = sum(o.error == "refused" for o in got)
        errors = len(got) - len(answered) - refused - resets - turned_away
        ms = np.array([o.seconds for o in answered]) * 1e3
        extra = np.array([o.seconds - o.upstream_s for o in answered if o.upstream_s is not None]) * 1e3
        health = np.array(self.health_s) * 1e3
        return [self.scenario, str(self.clients), str(len(got)), str(len(answered)), str(refused), str(errors),
                str(resets), str(turned_away), _ms(ms, 50), _ms(ms, 99), _ms(extra, 50), f"{self.rss_mb:.0f}",
                _ms(health, 99), self.note]


HEADER = ["scenario", "clients", "requests", "answered", "503 + Retry-After", "errors", "resets",
          "refused connections", "p50 ms", "p99 ms", "overhead p50 ms", "peak RSS MB", "/healthz p99 ms", "note"]


def _ms(values: np.ndarray, q: float) -> str:
    if not values.size:
        return "-"
    value = float(np.percentile(values, q))
    return "timeout" if math.isinf(value) else f"{value:.1f}"


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row.cells()) + " |" for row in rows])


# ---------------------------------------------------------------------- one request, raw


async def post(port: int, body: bytes, timeout_s: float) -> Outcome:
    started = time.perf_counter()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout_s)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: moe2\r\nContent-Type: application/json\r\n"
                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        status, headers, content = await asyncio.wait_for(_answer(reader), timeout_s)
    except ConnectionRefusedError:
        return Outcome(None, False, time.perf_counter() - started, error="refused")
    except (ConnectionResetError, BrokenPipeError):
        return Outcome(None, False, time.perf_counter() - started, error="reset")
    except asyncio.IncompleteReadError:
        return Outcome(None, False, time.perf_counter() - started, error="closed")
    except asyncio.TimeoutError:
        return Outcome(None, False, time.perf_counter() - started, error="timeout")
    finally:
        if writer is not None:
            writer.close()
    upstream = json.loads(content).get("moe2", {}).get("upstream_s") if status == 200 else None
    return Outcome(status, "retry-after" in headers, time.perf_counter() - started, upstream)


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
    content = await reader.readexactly(int(headers.get("content-length", 0)))
    return int(head[0].split()[1]), headers, content


def body(i: int) -> bytes:
    return json.dumps(question(i, "local-pair")).encode()


# ---------------------------------------------------------------------- /healthz, sampled apart


def _sample_health(port: int, stop_event, out) -> None:
    """Ask /healthz every 20 ms on one kept-alive connection until told to stop; a failure or a
    timeout counts as infinitely slow."""
    seconds: list[float] = []
    conn: http.client.HTTPConnection | None = None
    while not stop_event.is_set():
        started = time.perf_counter()
        try:
            conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=HEALTH_TIMEOUT_S)
            conn.request("GET", "/healthz")
            reply = conn.getresponse()
            reply.read()
            seconds.append(time.perf_counter() - started if reply.status == 200 else math.inf)
        except (OSError, http.client.HTTPException):
            conn = None
            seconds.append(math.inf)
        stop_event.wait(HEALTH_EVERY_S)
    out.put(seconds)


class HealthSampler:
    """/healthz latencies from a process of its own, so the load generator's busy event loop
    does not inflate them."""

    def __init__(self, port: int):
        self.stop_event, self.out = multiprocessing.Event(), multiprocessing.Queue()
        self.process = multiprocessing.Process(target=_sample_health, args=(port, self.stop_event, self.out))
        self.seconds: list[float] = []

    def __enter__(self) -> HealthSampler:
        self.process.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.seconds = self.out.get(timeout=30)
        self.process.join(timeout=30)


# ---------------------------------------------------------------------- scenarios


def overload(args, directory: Path) -> list[Row]:
    """--clients clients send one request each, all at once; /healthz is asked on the probe
    listener (``--probe-port``) unless ``--probe-at main``."""
    experts = start_experts(directory, args.delay, "B")
    probe_port = free_port()
    proxy, url = start_proxy(directory, experts, *(("--probe-port", str(probe_port)) if args.probe_at == "probe-port"
                                                     else ()))
    port = int(url.rsplit(":", 1)[1])
    try:
        asyncio.run(_burst(port, args.warmup, args.client_timeout))
        cpu = cpu_seconds(proxy.pid)
        started = time.perf_counter()
        with HealthSampler(probe_port if args.probe_at == "probe-port" else port) as health:
            outcomes = asyncio.run(_burst(port, args.clients, args.client_timeout))
        wall = time.perf_counter() - started
        cpu = cpu_seconds(proxy.pid) - cpu
        rss = peak_rss_mb(proxy.pid)
    finally:
        stop([proxy, *experts.processes])
    note = (f"default bounds; {wall:.1f} s; proxy CPU {cpu * 1e3 / args.clients:.2f} ms per request; /healthz asked "
            f"on the {'probe port' if args.probe_at == 'probe-port' else 'main port'}")
    return [Row("overload", args.clients, outcomes, rss, health.seconds, note)]


async def _burst(port: int, clients: int, timeout_s: float) -> list[Outcome]:
    return list(await asyncio.gather(*(post(port, body(i), timeout_s) for i in range(clients))))


def sigterm(args, directory: Path) -> list[Row]:
    """--concurrency clients send requests back to back; SIGTERM after --sigterm-after seconds.
    Each client stops once connections are refused (the server no longer accepts)."""
    experts = start_experts(directory, args.delay, "B")
    proxy, url = start_proxy(directory, experts, "--grace", str(args.grace))
    port = int(url.rsplit(":", 1)[1])
    try:
        with HealthSampler(port) as health:
            outcomes = asyncio.run(_until_refused(port, args.concurrency, args.client_timeout,
                                                  lambda: proxy.send_signal(signal.SIGTERM), args.sigterm_after))
        code = proxy.wait(timeout=args.grace + 30)
    finally:
        stop([proxy, *experts.processes])
    answered_before = [s for s in health.seconds if not math.isinf(s)]  # /healthz stops with the server
    return [Row("sigterm", args.concurrency, outcomes, math.nan, answered_before, f"exit status {code}")]


async def _until_refused(port: int, clients: int, timeout_s: float, signal_it, after_s: float) -> list[Outcome]:
    outcomes: list[Outcome] = []
    asyncio.get_running_loop().call_later(after_s, signal_it)

    async def client(c: int) -> None:
        i = c
        while True:
            outcome = await post(port, body(i), timeout_s)
            if outcome.error == "refused":
                return
            outcomes.append(outcome)
            i += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    return outcomes


def overhead(args, directory: Path) -> list[Row]:
    """--concurrency clients through this tree's proxy and, with --baseline, an earlier one's, in
    alternating blocks. The bounds admit every client, so both do the same work."""
    experts = start_experts(directory, args.delay, "B")
    bounds = ("--max-inflight", str(args.concurrency), "--max-queue", str(args.concurrency))
    proxies = {"this tree": start_proxy(directory, experts, *bounds)}
    if args.baseline:
        proxies["baseline"] = start_proxy(directory, experts, root=Path(args.baseline).resolve(), name="baseline")
    runs: dict[str, list[Outcome]] = {name: [] for name in proxies}
    try:
        for _, url in proxies.values():
            asyncio.run(load(url, args.warmup, args.concurrency))
        for _ in range(4):
            for name, (_, url) in proxies.items():
                results, lost, _ = asyncio.run(load(url, args.requests // 4, args.concurrency))
                runs[name] += [Outcome(200, False, latency, upstream) for latency, upstream in results]
                runs[name] += [Outcome(None, False, math.nan, error="lost") for _ in lost]
        rss = {name: peak_rss_mb(process.pid) for name, (process, _) in proxies.items()}
    finally:
        stop([*(p for p, _ in proxies.values()), *experts.processes])
    return [Row(f"overhead, {name}", args.concurrency, outcomes, rss[name]) for name, outcomes in runs.items()]
