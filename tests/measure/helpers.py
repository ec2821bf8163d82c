"""Test fleets: a two-server scenario on loopback fake servers, a small labelled prompt set, a
fake tegrastats that replays real output lines, a fake pynvml and a recorded powercap tree."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

from tests.fakes.openai_server import FakeModel

# Real tegrastats lines, as published: an AGX Orin 64GB (no VDD_IN rail) and an Orin Nano 8GB.
AGX_ORIN = ("11-21-2025 08:49:48 RAM 13983/62780MB (lfb 424x4MB) SWAP 126/31390MB (cached 0MB) "
            "CPU [90%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,100%@2201,"
            "100%@2201,100%@2201,100%@2201] EMC_FREQ 1%@2133 GR3D_FREQ 14%@[407,407] VIC_FREQ 115 "
            "NVDLA0_FREQ @1600 APE 174 CV0@73.625C CPU@77.281C Tboard@62C SOC2@70C Tdiode@62.25C SOC0@69.531C "
            "CV1@72.5C GPU@69.125C tj@77.281C SOC1@68.968C CV2@67.25C VDD_GPU_SOC 3150mW/2971mW "
            "VDD_CPU_CV 14312mW/12415mW VIN_SYS_5V0 4968mW/5048mW VDDQ_VDD2_1V8AO 1091mW/1091mW")
ORIN_NANO = ("11-30-2025 13:26:01 RAM 2461/7620MB (lfb 3x2MB) SWAP 1243/3810MB (cached 5MB) "
             "CPU [19%@729,14%@729,22%@729,8%@729,15%@729,17%@729] EMC_FREQ 4%@2133 GR3D_FREQ 0%@[305] "
             "NVDEC off NVJPG off NVJPG1 off VIC off OFA off APE 200 cpu@46.531C soc2@47.312C soc0@46.593C "
             "gpu@48.218C tj@48.843C soc1@48.843C VDD_IN 5704mW/5704mW VDD_CPU_GPU_CV 831mW/831mW "
             "VDD_SOC 1624mW/1624mW")

# Two categories, four prompts each; the reference is in the prompt, so fake models can be
# told exactly which ones to get right.
PROMPTS = [{"id": f"mcq-{i}", "category": "mcq", "prompt": f"Question {i}: pick one. A) x B) y C) z",
            "reference": "B", "scorer": "mcq"} for i in range(4)] + \
          [{"id": f"math-{i}", "category": "math", "prompt": f"Sum {i} what is {i} + 40?",
            "reference": str(i + 40), "scorer": "numeric"} for i in range(4)]


def right(prompt: str) -> str:
    """Always correct; anything that is not a test prompt (the warm-up) gets "OK"."""
    if not prompt.startswith(("Question", "Sum")):
        return "OK"
    if prompt.startswith("Question"):
        return "The answer is B"
    i = int(prompt.split()[1])
    return f"So the result is {i + 40}"


def half_right(prompt: str) -> str:
    """Correct on even-numbered prompts only: accuracy 0.5 in each category."""
    if not prompt.startswith(("Question", "Sum")):
        return "OK"
    i = int(prompt.split()[1].rstrip(":"))
    return right(prompt) if i % 2 == 0 else ("The answer is C" if prompt.startswith("Question") else "It is 7")


def models(delay_s: float) -> tuple[dict[str, FakeModel], dict[str, FakeModel]]:
    """The models served by server a and by server b."""
    return ({"qwen-a": FakeModel(answer=right, delay_s=delay_s), "llama-a": FakeModel(answer=half_right,
                                                                                        delay_s=delay_s)},
            {"qwen-b": FakeModel(answer=right, delay_s=delay_s)})


def write_prompts(path: Path, prompts=PROMPTS) -> Path:
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return path


def write_scenario(path: Path, url_a: str, url_b: str, power_a: str = "{power: none, watts: 100}",
                   power_b: str = "{power: none, watts: 50}", timeout_s: float = 5.0) -> Path:
    path.write_text(textwrap.dedent(f"""\
        schema_version: 1
        name: fleet
        top_k: 1
        categories:
          mcq: {{share: 0.5}}
          math: {{share: 0.5}}
        budgets: {{energy_j: 1000, latency_s: 30}}
        servers:
          - name: a
            profile: rtx-4090
            llms: [qwen2.5-7b-instruct, llama-3.1-8b-instruct]
            endpoint:
              url: {url_a}
              models: {{qwen2.5-7b-instruct: qwen-a, llama-3.1-8b-instruct: llama-a}}
              timeout_s: {timeout_s}
              {power_a.strip("{}").replace(", ", chr(10) + "              ")}
          - name: b
            profile: rtx-4090
            llms: [qwen2.5-7b-instruct]
            endpoint:
              url: {url_b}
              models: {{qwen2.5-7b-instruct: qwen-b}}
              timeout_s: {timeout_s}
              {power_b.strip("{}").replace(", ", chr(10) + "              ")}
        """))
    return path


def fake_tegrastats(tmp_path, monkeypatch, line: str, then: str | None = None):
    """A tegrastats on PATH that prints ``line`` every --interval ms until stopped (``then``
    in its stead after the first line, when given)."""
    exe = tmp_path / "bin" / "tegrastats"
    exe.parent.mkdir()
    exe.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys, time
        interval = int(sys.argv[sys.argv.index("--interval") + 1]) / 1000
        line = {line!r}
        while True:
            print(line, flush=True)
            line = {then or line!r}
            time.sleep(interval)
        """))
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{exe.parent}:{os.environ['PATH']}")


def fake_pynvml(counter_mj: list[float]) -> types.ModuleType:
    """A module with pynvml's functions; the energy counter steps through ``counter_mj``."""
    module = types.ModuleType("pynvml")
    readings = iter(counter_mj)

    class NVMLError(Exception):
        pass

    module.NVMLError = NVMLError
    module.nvmlInit = lambda: None
    module.nvmlShutdown = lambda: None

    def handle(index):
        if index != 0:
            raise NVMLError("Invalid Argument")
        return ("gpu", index)

    module.nvmlDeviceGetHandleByIndex = handle
    module.nvmlDeviceGetName = lambda handle: b"NVIDIA GeForce RTX 4090"
    module.nvmlDeviceGetTotalEnergyConsumption = lambda handle: next(readings)
    return module


# The powercap zones of a real one-socket Intel machine with DRAM and platform (psys) zones, and
# the MMIO copy of its package zone: directory -> (name, energy_uj, max_energy_range_uj).
POWERCAP_ZONES = {
    "intel-rapl:0": ("package-0", 262142010423, 262143328850),
    "intel-rapl:0:0": ("core", 104857600000, 262143328850),
    "intel-rapl:0:1": ("uncore", 1234567, 262143328850),
    "intel-rapl:0:2": ("dram", 65712000000, 65712999613),
    "intel-rapl:1": ("psys", 99999999, 262143328850),
    "intel-rapl-mmio:0": ("package-0", 42, 262143328850),
}


def write_counter(path: Path, value: int) -> None:
    """Replace a counter file at once, as sysfs shows a whole value to every read."""
    part = path.with_suffix(".part")
    part.write_text(f"{value}\n")
    os.replace(part, path)


def powercap_tree(root: Path, zones=POWERCAP_ZONES) -> Path:
    """A powercap tree in ``root``: the control-type directory and every zone's three files."""
    (root / "intel-rapl").mkdir(parents=True)
    (root / "intel-rapl" / "enabled").write_text("1\n")
    for directory, (name, energy_uj, range_uj) in zones.items():
        (root / directory).mkdir()
        (root / directory / "name").write_text(name + "\n")
        write_counter(root / directory / "energy_uj", energy_uj)
        (root / directory / "max_energy_range_uj").write_text(f"{range_uj}\n")
    return root


class PackageAt:
    """Moves package-0's counter as a steady ``watts`` would, wrapping at its range, from a thread
    (every millisecond) until stopped; the DRAM counter stays still."""

    def __init__(self, root: Path, watts: float):
        self.path, self.watts = root / "intel-rapl:0" / "energy_uj", watts
        _, self.start_uj, self.range_uj = POWERCAP_ZONES["intel-rapl:0"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        began = time.time()
        while not self._stop.wait(0.001):
            moved = int(self.watts * (time.time() - began) * 1e6)
            write_counter(self.path, (self.start_uj + moved) % self.range_uj)

    def __enter__(self) -> PackageAt:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
