"""Joules measured per request in ``moe2 serve``: a replayed tegrastats and a fake NVML give each
request its share of the injected power x time, overlapping requests splitting what they
shared; servers without a measured source stay null; a reader that never answers costs the line
its joules, never the client its answer; memory stays bounded."""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from moe2_cli.measure import power as measure_power
from moe2_cli.measure.power import SampledPower
from moe2_cli.scenario.scenario import load_scenario
from moe2_cli.serve import energy
from moe2_cli.serve.energy import Power, ServerMeter, open_power
from moe2_cli.serve.queries import Query
from moe2_cli.serve.requestlog import RequestLog, RotatingFile
from tests.measure.helpers import ORIN_NANO, fake_pynvml, fake_tegrastats
from tests.serve.conftest import fake_experts, plan_for, running_proxy, write_scenario
from tests.serve.test_requestlog import CHAT, ask, lines

TEGRASTATS_W = 5.704  # the Orin Nano line's VDD_IN
NVML_W = 150.0
DELAY_S = 1.0  # each expert's answer time: the HTTP hops around it take a few ms, well inside 5 %
PAIR = ["orin-1/phi-3.5-mini-instruct", "rtx-1/gemma-2-9b-it"]


def nvml_at(watts: float):
    """A fake pynvml whose energy counter grows as a steady ``watts`` would, in mJ."""
    began = time.time()
    return fake_pynvml(watts * (time.time() - began) * 1000.0 for _ in itertools.repeat(None))


def warm(plan) -> None:
    """Route once per category, as serve does before it listens: the first request's lazy imports
    would otherwise eat into its deadline."""
    plan.route([Query(id=f"warm-{c}", category=c, text="warm up") for c in plan.scenario.instance.categories])


def metric(proxy, name: str) -> dict[tuple, float]:
    """The samples of one family in /metrics' text: sorted labels -> value."""
    samples = {}
    for line in proxy.metrics.render().splitlines():
        found = re.fullmatch(rf'{name}\{{(.*)\}} (\S+)', line)
        if found:
            samples[tuple(sorted(re.findall(r'(\w+)="([^"]*)"', found[1])))] = float(found[2])
    return samples


def own_seconds(mine: tuple[float, float], others: list[tuple[float, float]]) -> float:
    """A window's time, each stretch divided by the windows then open: what is its own."""
    cuts = sorted({t for s, e in [mine, *others] for t in (s, e) if mine[0] <= t <= mine[1]})
    return sum((right - left) / sum(1 for s, e in [mine, *others] if s <= left and e >= right)
               for left, right in zip(cuts, cuts[1:]))


def test_measured_joules_are_the_injected_power_times_each_requests_share(base_plan, tmp_path, monkeypatch):
    fake_tegrastats(tmp_path, monkeypatch, ORIN_NANO)
    monkeypatch.setitem(sys.modules, "pynvml", nvml_at(NVML_W))
    power_keys = {"orin-1": {"power": "tegrastats", "tegrastats_interval_ms": 20}, "rtx-1": {"power": "nvml:0"}}
    slow = {"orin-1": {"phi-3.5-mini-instruct": {"delay_s": DELAY_S}}, "rtx-1": {"gemma-2-9b-it": {"delay_s": DELAY_S}}}
    (tmp_path / "log").mkdir()
    with fake_experts(slow) as (fakes, urls):
        plan = plan_for(base_plan, tmp_path, urls, PAIR, power=power_keys, timeout_s=30)
        warm(plan)
        power, problems = open_power(plan.scenario, plan.selection)
        assert problems == [] and set(power.meters) == {"orin-1", "rtx-1"}
        log = RequestLog(RotatingFile(tmp_path / "log", 1 << 20))
        with running_proxy(plan, request_log=log, power=power) as (url, proxy), ThreadPoolExecutor(1) as pool:
            # The first request also opens the connections to the experts: it is left out below.
            assert httpx.post(url + CHAT, json=ask("history empire warm"), timeout=30).status_code == 200
            first = pool.submit(httpx.post, url + CHAT, json=ask("history empire first"), timeout=30)
            assert all(fake.wait_for_calls(2) for fake in fakes.values())
            time.sleep(DELAY_S / 4)  # the second request starts while the first's calls run
            second = httpx.post(url + CHAT, json=ask("history empire second"), timeout=30)
            assert first.result().status_code == second.status_code == 200, second.text
        assert power.meters == {}, "shutdown closed the meters"
    logged = sorted(lines(tmp_path / "log"), key=lambda line: line["unix"])
    assert len(logged) == 3
    by_id = {line["id"]: line for line in logged[1:]}
    # Each call's window on its server: from its arrival at the fake for DELAY_S (wall clock).
    to_wall = time.time() - time.monotonic()
    windows = {name: [(c.started + to_wall, c.started + to_wall + DELAY_S) for c in fake.calls[1:]]
               for name, fake in fakes.items()}
    watts = {"orin-1": TEGRASTATS_W, "rtx-1": NVML_W}
    for rank, line in enumerate(logged[1:]):
        assert sorted(line["experts"]) == PAIR
        for expert in PAIR:
            server = expert.split("/")[0]
            mine = windows[server][rank]
            others = [w for w in windows[server] if w != mine]
            expected = watts[server] * own_seconds(mine, others)
            assert line["measured_j_by_expert"][expert] == pytest.approx(expected, rel=0.05), (expert, line)
        assert line["measured_j"] == pytest.approx(sum(line["measured_j_by_expert"].values()), abs=1e-5)
    # The overlap was shared: neither request got its whole window's energy.
    for line in by_id.values():
        assert line["measured_j_by_expert"][PAIR[1]] < 0.9 * NVML_W * DELAY_S
    measured = metric(proxy, "moe2_energy_joules_total")
    for expert in PAIR:
        in_log = sum(line["measured_j_by_expert"][expert] for line in logged)
        estimated = sum(line["estimated_j_by_expert"][expert] for line in logged)
        assert measured[(("expert", expert), ("source", "measured"))] == pytest.approx(in_log, abs=1e-4)
        assert measured[(("expert", expert), ("source", "estimated"))] == pytest.approx(estimated)
    assert metric(proxy, "moe2_energy_unmeasured_total") == {}


def test_servers_without_a_measured_source_log_null_and_count_estimates(base_plan, tmp_path):
    (tmp_path / "log").mkdir()
    with fake_experts() as (_, urls):
        # power: none is watts x time, derived: serve keeps to the profile's estimate there.
        plan = plan_for(base_plan, tmp_path, urls, PAIR, power={"orin-1": {"power": "none", "watts": 30}})
        power, problems = open_power(plan.scenario, plan.selection)
        assert problems == [] and power.meters == {}
        with running_proxy(plan, request_log=RequestLog(RotatingFile(tmp_path / "log", 1 << 20)),
                           power=power) as (url, proxy):
            assert httpx.post(url + CHAT, json=ask("poetry sonnet")).status_code == 200
    (line,) = lines(tmp_path / "log")
    assert line["measured_j"] is None and line["measured_j_by_expert"] == dict.fromkeys(line["experts"])
    counted = metric(proxy, "moe2_energy_joules_total")
    assert {dict(k)["source"] for k in counted} == {"estimated"}
    assert sum(counted.values()) == pytest.approx(line["estimated_j"])


def test_readings_that_never_come_cost_the_line_its_joules_not_the_answer(base_plan, tmp_path, monkeypatch):
    monkeypatch.setattr(measure_power, "COVERAGE_WAIT_S", 1.0)
    (tmp_path / "meter.csv").write_text("time,watts\n")  # the meter's logger never writes a reading
    (tmp_path / "log").mkdir()
    with fake_experts() as (_, urls):
        plan = plan_for(base_plan, tmp_path, urls, PAIR, power={"rtx-1": {"power": "file:meter.csv"}})
        power, problems = open_power(plan.scenario, plan.selection)
        assert problems == [] and list(power.meters) == ["rtx-1"]
        with running_proxy(plan, request_log=RequestLog(RotatingFile(tmp_path / "log", 1 << 20)),
                           power=power) as (url, proxy):
            began = time.monotonic()
            assert httpx.post(url + CHAT, json=ask("poetry sonnet")).status_code == 200
            assert time.monotonic() - began < measure_power.COVERAGE_WAIT_S, "the answer did not wait"
    (line,) = lines(tmp_path / "log")
    assert line["measured_j"] is None and line["measured_j_by_expert"] == dict.fromkeys(PAIR)
    assert metric(proxy, "moe2_energy_unmeasured_total") == {(("expert", "rtx-1/gemma-2-9b-it"),): 1.0}


def test_a_source_that_cannot_start_is_named_and_left_out(base_plan, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    plan = plan_for(base_plan, tmp_path, {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"}, PAIR,
                    power={"orin-1": {"power": "tegrastats"}, "rtx-1": {"power": "file:missing.csv"}})
    power, problems = open_power(plan.scenario, plan.selection)
    assert power.meters == {} and power.experts == {}
    assert problems[0].startswith("server 'orin-1': power tegrastats: no tegrastats on PATH")
    assert problems[1].startswith("server 'rtx-1': power file:") and "no such file" in problems[1]


class Steady(SampledPower):
    """A sampled meter fed by the test: one reading at every whole step of ``now``."""

    method = "steady 10 W"

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def mark(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.trace.add(self.now, 10.0)


def test_memory_stays_bounded_and_pruning_keeps_what_a_window_in_flight_needs():
    meter = Steady()
    server = ServerMeter(meter)

    def short_calls(count: int, share_j: float) -> None:
        for _ in range(count):
            window = server.open()
            meter.advance(1.0)
            server.close(window)
            assert asyncio.run(server.share(window)) == pytest.approx(share_j)
            server.prune(meter.now, keep_s=10_000)

    short_calls(200, share_j=10.0)  # alone: 10 W x 1 s each
    assert server.windows == [] and len(meter.trace.times) == 1
    long_call = server.open()
    short_calls(200, share_j=5.0)  # sharing with the long call
    # The long call's share needs every call that overlapped it, and the readings since it began.
    assert len(server.windows) == 201 and len(meter.trace.times) == 201
    server.close(long_call)
    assert asyncio.run(server.share(long_call)) == pytest.approx(200 * 5.0)
    server.prune(meter.now, keep_s=10_000)
    assert server.windows == [] and len(meter.trace.times) == 1
    forgotten = server.open()  # a call whose request was never counted (its client left)
    meter.advance(1.0)
    server.prune(meter.now, keep_s=0.5)
    assert forgotten not in server.windows and len(meter.trace.times) == 1


def test_too_many_requests_waiting_for_their_joules_go_out_with_null(monkeypatch):
    monkeypatch.setattr(energy, "MAX_SETTLING", 0)
    meter = Steady()
    power = Power({"s": ServerMeter(meter)}, {"s/m": "s"})
    written: list[dict] = []

    async def one_request() -> None:
        power.begin()
        power.called("s/m")
        meter.advance(1.0)
        power.ended("s/m")
        power.settle(["s/m"], {"id": "r"}, written.append)

    asyncio.run(one_request())
    assert written == [{"id": "r", "measured_j_by_expert": {"s/m": None}, "measured_j": None}]
    assert power.metrics.unmeasured.values == {(("expert", "s/m"),): 1.0}


def test_a_started_meter_is_closed_at_exit_too(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", nvml_at(NVML_W))
    registered: list = []
    monkeypatch.setattr(energy.atexit, "register", registered.append)
    urls = {"orin-1": "http://127.0.0.1:9", "rtx-1": "http://127.0.0.1:9"}
    scenario = load_scenario(write_scenario(tmp_path, urls, power={"rtx-1": {"power": "nvml:0"}}))
    power, _ = open_power(scenario, ["rtx-1/gemma-2-9b-it", "orin-1/phi-3.5-mini-instruct"])
    assert registered == [power.close] and list(power.meters) == ["rtx-1"]
    assert power.experts == {"rtx-1/gemma-2-9b-it": "rtx-1"}
    power.close()
    power.close()
    assert power.meters == {}
