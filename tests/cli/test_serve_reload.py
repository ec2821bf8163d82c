"""`moe2 serve` as a real process reloads a new selection under continuous load (clients sending
25 requests a second, at least 20 in every second), with no failed request: a change of the --selection file,
or SIGHUP with --no-watch. Requests sent after the reload go to the new selection's experts.
Shadow traffic's usage errors come before any training."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from moe2_cli.serve.plan import make_plan
from tests.cli.test_serve import _free_port, _wait_ready
from tests.conftest import CLI_ENV, ROOT
from tests.fakes.openai_server import FakeModel, FakeOpenAI
from tests.serve.conftest import SERVERS, echo_model, write_scenario, write_selection

ORIN = [f"orin-1/{llm}" for llm in SERVERS["orin-1"][1]]
RTX = [f"rtx-1/{llm}" for llm in SERVERS["rtx-1"][1]]
RATE = 25  # requests sent a second, whatever the replies' pace
MIN_RATE = 20  # requests per second, in every second of the run
SETTLE = 30  # requests answered before the change, and sent after the reload


@dataclass
class Load:
    """Clients sending ``RATE`` requests a second to ``url``, each request on a task of its own
    (so a slow reply never slows the sending), until stopped; ``done`` holds (sent, answered,
    status, experts) per request, an error's text standing in for the status."""

    url: str
    done: list[tuple[float, float, int | str, str]] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    answered: threading.Condition = field(default_factory=threading.Condition)

    def run(self) -> None:
        """Send until stopped, then wait for every reply."""
        asyncio.run(self._send())

    async def _send(self) -> None:
        loop = asyncio.get_running_loop()
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        async with httpx.AsyncClient(base_url=self.url, timeout=60, limits=limits) as client:
            began, running = loop.time(), set()
            for n in itertools.count():
                # Each request has its time: a late turn of the loop sends the ones due at once.
                await asyncio.sleep(max(0.0, began + n / RATE - loop.time()))
                if self.stopping.is_set():
                    break
                task = asyncio.create_task(self._ask(client, n))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.gather(*running)

    async def _ask(self, client: httpx.AsyncClient, n: int) -> None:
        sent = time.monotonic()
        try:
            reply = await client.post("/v1/chat/completions", json={
                "messages": [{"role": "user", "content": f"history empire {n}"}], "metadata": {"category": "mcq"}})
            outcome: tuple[int | str, str] = (reply.status_code, reply.headers.get("x-moe2-experts", ""))
        except httpx.HTTPError as err:
            outcome = (repr(err), "")
        with self.answered:
            self.done.append((sent, time.monotonic(), *outcome))
            self.answered.notify_all()

    def wait_for(self, condition, limit_s: float = 60) -> None:
        with self.answered:
            assert self.answered.wait_for(lambda: condition(self.done), timeout=limit_s), "the load stalled"


def plan_line(client: httpx.Client) -> str:
    return next(line for line in client.get("/metrics").text.splitlines() if line.startswith("moe2_plan_info{"))


def replace_selection(directory: Path, experts: list[str]) -> None:
    staging = directory / "staging"
    staging.mkdir()
    os.replace(write_selection(staging, experts, top_k=1), directory / "select.json")


@pytest.mark.parametrize("trigger", ["file", "sighup"])
def test_serve_reloads_a_new_selection_with_no_failed_request_under_load(tmp_path, trigger):
    models = {name: {llm: FakeModel(answer=echo_model(llm), delay_s=0.01) for llm in llms}
              for name, (_, llms) in SERVERS.items()}
    with FakeOpenAI(models["orin-1"]) as orin, FakeOpenAI(models["rtx-1"]) as rtx:
        scenario = write_scenario(tmp_path, {"orin-1": orin.url, "rtx-1": rtx.url}, timeout_s=30)
        selection = write_selection(tmp_path, ORIN, top_k=1)  # one expert a request: the load costs less CPU
        make_plan(scenario, selection=selection)  # the gate is cached: the process loads it
        port, url = _free_port(), ""
        # Neither admission nor deadlines are under test: on a machine busy with other work, requests
        # wait longer for a slot and for the fake experts (which run in this process) than they would.
        options = ["--max-inflight", "64", "--max-queue", "512", "--queue-timeout", "30"]
        options += ["--no-watch"] if trigger == "sighup" else []
        proc = subprocess.Popen([sys.executable, "-m", "moe2_cli", "serve", str(scenario), "--selection",
                                 str(selection), "--port", str(port), *options], cwd=ROOT,
                                env={**os.environ, **CLI_ENV}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, proc)
            load = Load(url)
            sender = threading.Thread(target=load.run, daemon=True)
            sender.start()
            load.wait_for(lambda done: len(done) >= SETTLE)
            # One client for every look at /metrics: a new one each time costs the fake experts, which run
            # in this process, a TLS set-up's CPU.
            metrics = httpx.Client(base_url=url)
            old = plan_line(metrics)
            replace_selection(tmp_path, RTX)
            changed = asked = time.monotonic()  # when the reload was asked for
            if trigger == "sighup":  # not watched: the old plan serves until the signal
                load.wait_for(lambda done: sum(sent > changed for sent, *_ in done) >= SETTLE)
                asked = time.monotonic()
                proc.send_signal(signal.SIGHUP)
            reloaded = _wait_for_reload(metrics, proc, old)
            load.wait_for(lambda done: sum(sent > reloaded for sent, *_ in done) >= SETTLE)
            load.stopping.set()
            sender.join(timeout=60)
            proc.send_signal(signal.SIGTERM)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, stderr
    assert f'"trigger": "{trigger}"' in stderr and '"event": "plan_reloaded"' in stderr
    assert [d for d in load.done if d[2] != 200] == []
    served = [set(experts.split(",")) for *_, experts in load.done]
    assert all(s <= set(ORIN) or s <= set(RTX) for s in served)  # each request on one plan, never a mix
    # A request sent once /metrics showed the new plan is routed by it; one answered before the
    # reload was asked for, by the old plan. (One sent before may wait in a queue past the swap.)
    for sent, answered, _, experts in load.done:
        if sent > reloaded:
            assert set(experts.split(",")) <= set(RTX), experts
        elif answered < asked:
            assert set(experts.split(",")) <= set(ORIN), experts
    assert sum(answered < asked for _, answered, *_ in load.done) >= SETTLE
    _assert_rate_throughout(load.done)


def _wait_for_reload(metrics: httpx.Client, proc: subprocess.Popen, old: str, limit_s: float = 60) -> float:
    """When /metrics first showed another plan."""
    deadline = time.monotonic() + limit_s
    while plan_line(metrics) == old:
        assert proc.poll() is None and time.monotonic() < deadline, "the plan was not reloaded"
        time.sleep(0.05)
    return time.monotonic()


def _assert_rate_throughout(done: list[tuple[float, float, int | str, str]]) -> None:
    """At least MIN_RATE requests sent in every whole second from the first to the last."""
    first = min(sent for sent, *_ in done)
    seconds = int(max(sent for sent, *_ in done) - first)
    counts = [0] * seconds
    for sent, *_ in done:
        if int(sent - first) < seconds:
            counts[int(sent - first)] += 1
    assert seconds >= 2 and min(counts) >= MIN_RATE, counts


def test_shadow_traffic_needs_a_log_with_text(run_cli, tmp_path):
    scenario = write_scenario(tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"})
    selection = write_selection(tmp_path, ORIN)
    needs = "moe2: --shadow-rate needs --log DIR and --log-text: shadow answers are logged for scoring, which needs " \
            "their text\n"
    for options in ([], ["--log", str(tmp_path / "log")]):
        bad = run_cli("serve", scenario, "--selection", selection, "--shadow-rate", "0.1", *options)
        assert (bad.exit_code, bad.stderr) == (2, needs)
    for value in ("1.5", "-0.1", "nan"):
        bad = run_cli("serve", scenario, "--selection", selection, "--shadow-rate", value)
        assert bad.exit_code == 2 and bad.stderr.startswith("moe2: invalid value for '--shadow-rate'"), bad.stderr
