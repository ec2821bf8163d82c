"""The RAPL reader at its boundary: a recorded powercap tree in a temp dir, its counters rewritten
between reads, wrapping at their range; and ``moe2 measure`` with ``power: rapl``."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from moe2_cli.measure import MeasureSettings, measure, rapl
from moe2_cli.measure.power import PowerError, idle_watts, open_meter
from moe2_cli.measure.rapl import RaplEnergy
from moe2_cli.scenario.endpoint import PowerSource
from tests.fakes.openai_server import FakeOpenAI
from tests.measure.helpers import (
    POWERCAP_ZONES,
    PROMPTS,
    PackageAt,
    models,
    powercap_tree,
    write_counter,
    write_prompts,
    write_scenario,
)

PACKAGE_UJ, RANGE_UJ = POWERCAP_ZONES["intel-rapl:0"][1:]
DRAM_UJ = POWERCAP_ZONES["intel-rapl:0:2"][1]


def started(root: Path) -> RaplEnergy:
    meter = RaplEnergy(root)
    meter.start()
    return meter


def test_package_and_dram_zones_are_read_once_each(tmp_path):
    meter = started(powercap_tree(tmp_path))
    # Not core or uncore (inside the package), psys (holds the package) or the MMIO copy.
    assert meter.method == "rapl (package-0+dram, CPU energy counters)"
    t0 = meter.mark()
    write_counter(tmp_path / "intel-rapl:0" / "energy_uj", PACKAGE_UJ + 300_000)
    write_counter(tmp_path / "intel-rapl:0:2" / "energy_uj", DRAM_UJ + 50_000)
    write_counter(tmp_path / "intel-rapl-mmio:0" / "energy_uj", 10**9)
    write_counter(tmp_path / "intel-rapl:1" / "energy_uj", 10**9)
    t1 = meter.mark()
    assert asyncio.run(meter.energy_j(t0, t1)) == pytest.approx(0.35)


def test_a_counter_that_wraps_between_reads_counts_across_the_wrap(tmp_path):
    meter = started(powercap_tree(tmp_path))
    package = tmp_path / "intel-rapl:0" / "energy_uj"
    t0 = meter.mark()
    write_counter(package, 1_000_000)  # 1.318427 J to the range, then 1 J past zero
    t1 = meter.mark()
    write_counter(package, 3_000_000)
    t2 = meter.mark()
    wrapped = (RANGE_UJ - PACKAGE_UJ + 1_000_000) / 1e6
    assert asyncio.run(meter.energy_j(t0, t1)) == pytest.approx(wrapped)
    assert asyncio.run(meter.energy_j(t1, t2)) == pytest.approx(2.0)
    assert asyncio.run(meter.energy_j(t0, t2)) == pytest.approx(wrapped + 2.0)


def test_pruned_readings_are_gone_and_said_so(tmp_path):
    meter = started(powercap_tree(tmp_path))
    t0, t1 = meter.mark(), meter.mark()
    meter.prune(t1)
    with pytest.raises(PowerError, match="no counter reading"):
        asyncio.run(meter.energy_j(t0, t1))


def test_missing_zones_or_unreadable_counters_are_one_clear_error(tmp_path, monkeypatch):
    with pytest.raises(PowerError, match=r"no RAPL package zone under .*modprobe intel_rapl_msr"):
        RaplEnergy(tmp_path / "nowhere").start()
    root = powercap_tree(tmp_path / "tree")
    denied = root / "intel-rapl:0" / "energy_uj"
    real = Path.read_text

    def read_text(path: Path, *args, **kwargs) -> str:  # as for a user since Linux 5.10 (tests may run as root)
        if path == denied:
            raise PermissionError(13, "Permission denied")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)
    with pytest.raises(PowerError, match="energy_uj is readable by root only"):
        RaplEnergy(root).start()
    monkeypatch.undo()
    denied.unlink()
    denied.mkdir()
    with pytest.raises(PowerError, match="cannot read .*energy_uj"):
        RaplEnergy(root).start()


def test_a_steady_draw_is_read_as_its_watts(tmp_path):
    root = powercap_tree(tmp_path)
    with PackageAt(root, watts=20.0):
        meter = started(root)
        assert asyncio.run(idle_watts(meter, 0.3)) == pytest.approx(20.0, rel=0.05)


def test_measure_reads_power_rapl(tmp_path, monkeypatch):
    root = powercap_tree(tmp_path / "powercap")
    monkeypatch.setattr(rapl, "POWERCAP", root)
    assert isinstance(open_meter(PowerSource(kind="rapl")), RaplEnergy)
    served_a, served_b = models(0.2)
    with PackageAt(root, watts=5.0), FakeOpenAI(served_a) as a, FakeOpenAI(served_b) as b:
        scenario = write_scenario(tmp_path / "fleet.yaml", a.url, b.url, power_a="{power: rapl}")
        settings = MeasureSettings(prompts=write_prompts(tmp_path / "p.jsonl", PROMPTS[:1] + PROMPTS[4:5]), warmup=0)
        measure(scenario, tmp_path / "out", settings)
    records = [r for r in _records(tmp_path / "out") if r["server"] == "a"]
    assert len(records) == 4
    for record in records:
        assert record["energy_j"] == pytest.approx(5.0 * record["latency_s"], rel=0.1)
    profile = (tmp_path / "out" / "profiles" / "a.yaml").read_text()
    assert "rapl (package-0+dram, CPU energy counters)" in profile


def _records(out: Path) -> list[dict]:
    lines = (out / "requests.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "request"]
