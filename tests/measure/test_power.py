"""Power readers at their edges: a fake tegrastats on PATH, a fake pynvml, a growing power log."""

from __future__ import annotations

import asyncio
import random
import sys

import pytest

from moe2_cli.measure.nvml import NvmlEnergy
from moe2_cli.measure.power import ConstantPower, PowerError, ServerClock, Trace, attributed, idle_watts
from moe2_cli.measure.powerlog import PowerLog, parse_reading
from moe2_cli.measure.tegrastats import Tegrastats, line_watts
from tests.measure.helpers import AGX_ORIN, ORIN_NANO, fake_pynvml, fake_tegrastats


def test_tegrastats_lines_give_input_rail_or_sum_of_rails():
    assert line_watts(ORIN_NANO) == (5.704, "VDD_IN")
    watts, rails = line_watts(AGX_ORIN)
    assert watts == pytest.approx(3.150 + 14.312 + 4.968 + 1.091)
    assert rails == "sum of VDD_GPU_SOC+VDD_CPU_CV+VIN_SYS_5V0+VDDQ_VDD2_1V8AO"
    assert line_watts("RAM 2461/7620MB SWAP 0/3810MB CPU [1%@729]") is None
    assert line_watts("RAM 1/2MB POM_5V_IN 5336/4970 POM_5V_GPU 1040/936") == (5.336, "POM_5V_IN")


@pytest.mark.parametrize("line, watts", [(ORIN_NANO, 5.704), (AGX_ORIN, 23.521)])
def test_tegrastats_meter_integrates_the_replayed_rails(tmp_path, monkeypatch, line, watts):
    fake_tegrastats(tmp_path, monkeypatch, line)
    meter = Tegrastats(interval_ms=20)
    meter.start()
    try:
        assert asyncio.run(idle_watts(meter, 0.2)) == pytest.approx(watts)
        assert "VDD_IN" in meter.method if watts == 5.704 else "sum of" in meter.method
    finally:
        meter.close()


def test_tegrastats_without_rails_or_missing_is_a_clear_error(tmp_path, monkeypatch):
    fake_tegrastats(tmp_path, monkeypatch, "RAM 2461/7620MB SWAP 0/3810MB CPU [1%@729]")
    with pytest.raises(PowerError, match="needs root"):
        Tegrastats(interval_ms=10).start()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(PowerError, match="no tegrastats on PATH"):
        Tegrastats(interval_ms=10).start()


def test_nvml_energy_is_the_counter_difference_between_marks(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0.0, 1_000.0, 251_000.0]))
    meter = NvmlEnergy(0)
    meter.start()  # reads the counter once to check it is supported
    t0, t1 = meter.mark(), meter.mark()
    assert asyncio.run(meter.energy_j(t0, t1)) == pytest.approx(250.0)
    assert "RTX 4090" in meter.method
    meter.close()


def test_nvml_missing_package_or_gpu_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import fails, as without the extra
    with pytest.raises(PowerError, match=r"moe2\[nvidia\]"):
        NvmlEnergy(0).start()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([0.0]))
    with pytest.raises(PowerError, match="nvml:3: Invalid Argument"):
        NvmlEnergy(3).start()


def test_trace_integrates_a_step_function():
    trace = Trace()
    for t, w in [(1.0, 10.0), (2.0, 20.0), (3.0, 30.0)]:
        trace.add(t, w)
    # each reading stands for the interval that ends at it
    assert trace.energy_j(1.5, 2.5) == pytest.approx(0.5 * 20 + 0.5 * 30)
    assert trace.energy_j(0.0, 1.0) == pytest.approx(10.0)
    assert trace.energy_j(1.0, 3.0) == pytest.approx(20.0 + 30.0)


def test_power_log_follows_a_growing_file(tmp_path):
    assert parse_reading("1796159272.5,42.0") == (1796159272.5, 42.0)
    assert parse_reading("timestamp,watts") is None
    assert parse_reading("2026-12-01T21:00:00+00:00 12.5")[1] == 12.5
    log = tmp_path / "meter.csv"
    log.write_text("timestamp,watts\n100.0,10\n101.0,20\n")
    meter = PowerLog(log)
    meter.start()
    assert asyncio.run(meter.energy_j(100.0, 101.0)) == pytest.approx(20.0)
    with open(log, "a") as fh:
        fh.write("102.0,30\n103.0,4")  # the last line is still being written
    assert asyncio.run(meter.energy_j(101.0, 102.0)) == pytest.approx(30.0)
    assert meter.trace.times == [100.0, 101.0, 102.0]


def test_overlapping_requests_share_energy_and_add_up():
    meter = ConstantPower(100.0)
    # request 0 runs 0-4 s, request 1 runs 2-6 s: 2 s alone, 2 s shared, for each
    joules, seconds = asyncio.run(attributed(meter.energy_j, (0.0, 4.0), [(2.0, 6.0)]))
    assert (joules, seconds) == (pytest.approx(300.0), pytest.approx(3.0))
    other, _ = asyncio.run(attributed(meter.energy_j, (2.0, 6.0), [(0.0, 4.0)]))
    assert joules + other == pytest.approx(100.0 * 6)


def test_server_clock_windows():
    clock = ServerClock(ConstantPower(10.0))
    token, start = clock.open()
    end = clock.close(token)
    joules, seconds = asyncio.run(clock.share(token))
    assert seconds == pytest.approx(end - start) and joules == pytest.approx(10.0 * (end - start))


def test_readings_out_of_range_are_dropped_counted_and_leave_their_window_unmeasured(tmp_path):
    trace = Trace()
    for t, w in [(1.0, 10.0), (2.0, float("inf")), (3.0, -1.0), (4.0, float("nan")), (5.0, 5001.0), (6.0, 20.0),
                 (7.0, 1e400), (8.0, 5000.0)]:
        trace.add(t, w)
    assert trace.times == [1.0, 6.0, 8.0] and trace.dropped == 5 and trace.seen == 8.0
    assert trace.energy_j(1.0, 6.0) == pytest.approx(5 * 20.0)  # the dropped stretch takes the next valid reading
    log = tmp_path / "meter.csv"
    log.write_text("100.0,10\n101.0,nan\n102.0,1e999\n")
    meter = PowerLog(log)
    meter.start()
    assert asyncio.run(meter.energy_j(99.5, 100.0)) == pytest.approx(5.0)
    # Readings came after the window's end, but none was valid: an error at once, not a wait.
    with pytest.raises(PowerError, match=r"no valid power reading.*2 readings out of range dropped \(the last: inf W"):
        asyncio.run(meter.energy_j(100.0, 101.5))


@pytest.mark.parametrize("counter_mj, match", [
    ([0.0, 5_000.0, 1_000.0], "-4 J"),  # the counter went back: a driver reload
    ([0.0, 0.0, float("inf")], "inf J"),
    ([0.0, 0.0, 1e12], "1e\\+09 J"),  # a gigajoule in a few microseconds
])
def test_a_counter_meter_window_out_of_range_is_a_power_error(monkeypatch, counter_mj, match):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(counter_mj))
    meter = NvmlEnergy(0)
    meter.start()
    clock = ServerClock(meter)
    token, _ = clock.open()
    clock.close(token)
    with pytest.raises(PowerError, match=f"energy reading out of range was dropped \\({match}"):
        asyncio.run(clock.share(token))


def _shared_by_scan(mine, others, watts):
    """Each stretch's joules split among the windows covering it, counted by a plain scan."""
    start, end = mine
    cuts = sorted({start, end, *(t for s, e in others for t in (s, e) if t is not None and start < t < end)})
    return sum(watts * (r - q) / (1 + sum(1 for s, e in others if s <= q and (e is None or e >= r)))
               for q, r in zip(cuts, cuts[1:]))


def test_the_sweep_shares_every_stretch_as_a_scan_of_the_windows_would():
    rng = random.Random(7)

    async def energy(t0, t1):
        return 10.0 * (t1 - t0)

    for _ in range(300):
        others = []
        for _ in range(rng.randint(0, 30)):
            s = rng.choice([rng.uniform(0, 10), float(rng.randint(0, 10))])  # whole numbers: shared boundaries
            others.append((s, None if rng.random() < 0.2 else s + rng.choice([rng.uniform(0, 5), rng.randint(0, 5)])))
        start = float(rng.randint(0, 8)) if rng.random() < 0.3 else rng.uniform(0, 8)
        mine = (start, start + rng.choice([rng.uniform(0.01, 4), rng.randint(1, 3)]))
        joules, _ = asyncio.run(attributed(energy, mine, others))
        assert joules == pytest.approx(_shared_by_scan(mine, others, 10.0), abs=1e-9)
