"""Send every prompt to every expert and log each request as it ends.

Order: the preflight (every endpoint, every model id, every power source) before any prompt;
then, if asked, each server's idle power; then the requests, expert by expert in scenario
order and prompt by prompt, ``concurrency`` at a time. Before an expert's first request,
``warmup`` unlogged requests load the model, so that loading time does not count as latency.
They ask a fixed prompt that is not in the set: a warm-up with the first prompt would leave it
in the server's prompt cache and make its logged time to first token too small.
The core never prints: each logged request is passed to ``on_record``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from moe2_cli.errors import Diagnostic, InputError
from moe2_cli.measure.client import Completion, Retry, complete, preflight
from moe2_cli.measure.power import PowerError, PowerMeter, ServerClock, idle_watts, open_meter
from moe2_cli.measure.prompts import Prompt
from moe2_cli.measure.runlog import LogWriter, RequestRecord
from moe2_cli.measure.scorers import NO_VERDICT, verdict
from moe2_cli.scenario.endpoint import Endpoint

OnRecord = Callable[[RequestRecord], None]
WARMUP_MESSAGES = ({"role": "user", "content": "Say OK."},)
WARMUP_MAX_TOKENS = 8


@dataclass(frozen=True)
class Expert:
    server: str
    llm: str
    endpoint: Endpoint

    @property
    def model(self) -> str:
        return self.endpoint.model_id(self.llm)

    @property
    def id(self) -> str:
        return f"{self.server}/{self.llm}"


@dataclass(frozen=True)
class RunPlan:
    """What to send, and how."""

    experts: tuple[Expert, ...]
    jobs: tuple[tuple[Expert, Prompt], ...]  # the requests still to make, in order
    idle_servers: tuple[str, ...]  # servers whose idle power is still to be measured
    idle_seconds: float = 0.0
    concurrency: int = 1
    retry: Retry = field(default_factory=Retry)
    warmup: int = 1
    max_failures: int | None = None  # past this many failures an expert's other prompts are skipped


def run(plan: RunPlan, source: str, log_path: Path, on_record: OnRecord) -> None:
    """Run the plan, appending to ``log_path``, which is created only once the preflight passed.
    Ctrl-C propagates as KeyboardInterrupt after the log is closed cleanly."""
    asyncio.run(_run(plan, source, log_path, on_record))


async def _run(plan: RunPlan, source: str, log_path: Path, on_record: OnRecord) -> None:
    servers = {e.server: e.endpoint for e in plan.experts}
    async with _client(not all(e.endpoint.url.lower().startswith("http://") for e in plan.experts)) as client:
        problems = await _preflight(client, plan)
        meters = _start_meters(servers, problems)
        if problems:
            raise InputError([Diagnostic(source, None, None, line) for line in problems])
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with LogWriter(log_path) as log:
                for server, meter in meters.items():
                    log.power(server, meter.method)
                if plan.idle_servers:
                    watts = await asyncio.gather(*(idle_watts(meters[s], plan.idle_seconds)
                                                   for s in plan.idle_servers))
                    for server, w in zip(plan.idle_servers, watts):
                        log.idle(server, w, plan.idle_seconds)
                clocks = {s: ServerClock(m) for s, m in meters.items()}
                await _requests(client, plan, clocks, log, on_record)
        finally:
            for meter in meters.values():
                meter.close()


def _client(tls: bool) -> httpx.AsyncClient:
    # Without TCP_NODELAY, a request whose headers and body go out in two writes waits for the
    # server's delayed ACK (~40 ms on Linux): latency the server did not cause.
    nodelay = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
    # Loading the CA bundle takes over 100 ms; endpoints on plain http (a LAN, loopback) never
    # use it, so it is loaded only when one of them speaks TLS.
    return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(socket_options=nodelay, verify=tls))


async def _preflight(client: httpx.AsyncClient, plan: RunPlan) -> list[str]:
    """One line per endpoint problem: unreachable, refused, or a model id it does not serve."""
    by_server: dict[str, list[str]] = {}
    for expert in plan.experts:
        by_server.setdefault(expert.server, []).append(expert.llm)
    endpoints = {e.server: e.endpoint for e in plan.experts}
    found = await asyncio.gather(*(preflight(client, endpoints[s], llms) for s, llms in by_server.items()))
    return [line for problems in found for line in problems]


def _start_meters(servers: dict[str, Endpoint], problems: list[str]) -> dict[str, PowerMeter]:
    """Every power source starts, or (with any problem, here or before) none stays running;
    each failure is added to ``problems``."""
    meters: dict[str, PowerMeter] = {}
    for server, endpoint in servers.items():
        assert endpoint.power is not None
        try:
            meter = open_meter(endpoint.power)
            meter.start()
            meters[server] = meter
        except PowerError as err:
            problems.append(f"server {server!r}: {err}")
    if problems:
        for meter in meters.values():
            meter.close()
    return meters


async def _requests(client, plan: RunPlan, clocks: dict[str, ServerClock], log: LogWriter,
                    on_record: OnRecord) -> None:
    queue: asyncio.Queue[tuple[Expert, Prompt]] = asyncio.Queue()
    for job in plan.jobs:
        queue.put_nowait(job)
    warmed: dict[str, asyncio.Lock] = {}
    done: set[str] = set()
    failures: dict[str, int] = {}

    async def worker() -> None:
        while not queue.empty():
            expert, prompt = queue.get_nowait()
            if plan.max_failures is not None and failures.get(expert.id, 0) > plan.max_failures:
                continue  # it gets no profile entry anyway: do not spend hours on its timeouts
            clock = clocks[expert.server]
            lock = warmed.setdefault(expert.id, asyncio.Lock())
            async with lock:
                if expert.id not in done:
                    for _ in range(plan.warmup):
                        await complete(client, expert.endpoint, expert.model, [dict(m) for m in WARMUP_MESSAGES],
                                       WARMUP_MAX_TOKENS, plan.retry, clock)
                    done.add(expert.id)
            result = await complete(client, expert.endpoint, expert.model, prompt.chat(), prompt.max_tokens,
                                    plan.retry, clock)
            record = await _record(expert, prompt, result, clock)
            failures[expert.id] = failures.get(expert.id, 0) + (not record.ok)
            log.write(record.to_json())
            on_record(record)

    workers = [asyncio.ensure_future(worker()) for _ in range(max(1, plan.concurrency))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)


async def _record(expert: Expert, prompt: Prompt, result: Completion, clock: ServerClock) -> RequestRecord:
    """The log line of one request. A request whose energy no valid power reading covers is a
    failure too: its numbers would be wrong, not missing."""
    ok, error, reason = result.ok, result.error, result.reason
    joules = busy = None
    if ok:
        try:
            joules, busy = await clock.share(result.window)
        except PowerError as err:
            ok, error, reason = False, str(err), "power"
    judged = verdict(prompt.scorer, result.answer, prompt.references, prompt.text) if ok else NO_VERDICT
    return RequestRecord(
        server=expert.server, llm=expert.llm, model=expert.model, prompt_id=prompt.id, category=prompt.category,
        prompt_digest=prompt.digest(), ok=ok,
        score=judged.score, scorer_matched=judged.matched,
        answer=result.answer, error=error, started_at=result.started,
        latency_s=result.ended - result.started, ttft_s=result.ttft_s, energy_j=joules, busy_s=busy,
        prompt_tokens=result.prompt_tokens, completion_tokens=result.completion_tokens, attempts=result.attempts,
        reason=reason,
    )
