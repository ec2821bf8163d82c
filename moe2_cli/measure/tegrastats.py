"""Jetson power from ``tegrastats --interval MS``, run as a subprocess on this machine.

tegrastats prints one line per interval; power rails appear as ``NAME cur/avg`` in milliwatts,
with a unit on newer releases (``VDD_IN 5704mW/5704mW`` on an Orin Nano) and without on older
ones (``POM_5V_IN 5336/4970``). The board input rail (``VDD_IN``, ``POM_5V_IN``) is used when
the board reports one; the AGX Orin has none (``VDD_GPU_SOC``, ``VDD_CPU_CV``, ``VIN_SYS_5V0``,
...), and then the sum of the rails stands in for it. The current value, not tegrastats' running
average, is read, and each line is timed when it arrives.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time

from moe2_cli.measure.power import PowerError, SampledPower

INPUT_RAILS = ("VDD_IN", "POM_5V_IN")
_RAIL = re.compile(r"\b((?:VDD|VIN|POM)\w*) (\d+(?:\.\d+)?)(?:mW)?/(\d+(?:\.\d+)?)(?:mW)?(?=\s|$)")
FIRST_LINE_WAIT_S = 5.0
LINES_WITHOUT_RAILS = 3  # this many lines and still no rail: the rails are not readable


def rails_mw(line: str) -> dict[str, float]:
    """Rail name -> current milliwatts, for every rail on one tegrastats line."""
    return {name: float(cur) for name, cur, _avg in _RAIL.findall(line)}


def line_watts(line: str) -> tuple[float, str] | None:
    """Board power in watts from one line, and which rails it came from; None without rails."""
    rails = rails_mw(line)
    if not rails:
        return None
    for name in INPUT_RAILS:
        if name in rails:
            return rails[name] / 1000.0, name
    return sum(rails.values()) / 1000.0, "sum of " + "+".join(rails)


class Tegrastats(SampledPower):
    """Runs tegrastats for the whole measurement; a reader thread times each line."""

    def __init__(self, interval_ms: int):
        super().__init__()
        self.interval_ms = interval_ms
        self.method = "tegrastats"
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()
        self._arrived: list[tuple[float, str]] = []
        self._lines = 0

    def start(self) -> None:
        exe = shutil.which("tegrastats")
        if exe is None:
            raise PowerError("power tegrastats: no tegrastats on PATH (it ships with Jetson Linux; "
                             "run moe2 measure on the Jetson itself)")
        self._process = subprocess.Popen([exe, "--interval", str(self.interval_ms)], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._first_rails()

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            with self._lock:
                self._arrived.append((time.time(), line))

    def _first_rails(self) -> None:
        """Fail early, with the reason, when tegrastats prints no power rails."""
        deadline = time.monotonic() + max(FIRST_LINE_WAIT_S, 3 * self.interval_ms / 1000)
        while time.monotonic() < deadline:
            self.poll()
            if self.trace.times:
                return
            exited = self._process is not None and self._process.poll() is not None and not self._arrived
            if exited or self._lines >= LINES_WITHOUT_RAILS:
                break
            time.sleep(0.01)
        self.close()
        if self.trace.dropped:
            raise PowerError("power tegrastats: no valid power reading" + self.trace.dropped_note())
        raise PowerError("power tegrastats: no power rails in its output (on some Jetson images tegrastats "
                         "needs root to read them: run moe2 measure with sudo)")

    def poll(self) -> None:
        with self._lock:
            arrived, self._arrived = self._arrived, []
        self._lines += len(arrived)
        for t, line in arrived:
            reading = line_watts(line)
            if reading is not None:
                self.trace.add(t, reading[0])
                self.method = f"tegrastats --interval {self.interval_ms} ({reading[1]})"

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._reader is not None:
            self._reader.join(timeout=2)  # the pipe ends with the process
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None
