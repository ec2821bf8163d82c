"""x86 CPU energy from RAPL's counters in the Linux powercap tree (``/sys/class/powercap``).

Each zone directory holds ``name``, ``energy_uj`` (microjoules, counting up) and
``max_energy_range_uj``, past which the counter starts again from zero. The meter reads the
package zones (``package-0``, ``package-1``, ...; Intel, and AMD Zen with the same driver) and the
``dram`` zones where the CPU reports them (servers count DRAM apart from the package). The
``psys`` zone is left out, as it already holds the packages, and so are the ``intel-rapl-mmio``
zones, which read the same packages a second way. Like NVML's counter, the counters are read at
every window boundary; each read adds what each counter moved since the last one, so a wrap
between two reads is counted once. Since Linux 5.10 the counters are readable by root only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from moe2_cli.measure.power import PowerError, PowerMeter

POWERCAP = Path("/sys/class/powercap")
_ZONE_DIR = re.compile(r"intel-rapl(:\d+)+")  # intel-rapl:0, intel-rapl:0:2; not intel-rapl-mmio:0
_ZONE_NAME = re.compile(r"package-\d+|dram")


@dataclass
class Zone:
    """One counter and the energy it has counted since the meter started, wraps undone."""

    path: Path
    name: str
    range_uj: int
    last_uj: int = 0
    total_uj: int = 0

    def read(self) -> int:
        """The counter now, added to the total; a counter below its last value wrapped once."""
        now = _integer(self.path / "energy_uj")
        moved = now - self.last_uj
        self.total_uj += moved if moved >= 0 else moved + self.range_uj
        self.last_uj = now
        return self.total_uj


def find_zones(root: Path) -> list[Zone]:
    """The package and DRAM zones under ``root``, each read once; a PowerError says why not."""
    dirs = sorted(p for p in root.glob("intel-rapl:*") if _ZONE_DIR.fullmatch(p.name)) if root.is_dir() else []
    zones = []
    for path in dirs:
        name = (path / "name").read_text().strip() if (path / "name").is_file() else ""
        if _ZONE_NAME.fullmatch(name) and (path / "energy_uj").exists():
            zone = Zone(path, name, _integer(path / "max_energy_range_uj"))
            zone.last_uj = _integer(path / "energy_uj")
            zones.append(zone)
    if not zones:
        raise PowerError(f"power rapl: no RAPL package zone under {root} (an x86 CPU with the intel_rapl "
                         f"driver loaded: modprobe intel_rapl_msr)")
    return zones


def _integer(path: Path) -> int:
    try:
        return int(path.read_text())
    except PermissionError:
        raise PowerError(f"power rapl: {path} is readable by root only (Linux 5.10 and newer): run as root, "
                         f"or let this user read it (chmod o+r)") from None
    except (OSError, ValueError) as err:
        raise PowerError(f"power rapl: cannot read {path} ({getattr(err, 'strerror', None) or err})") from None


class RaplEnergy(PowerMeter):
    def __init__(self, root: Path | None = None):
        self.root = root or POWERCAP  # read when made, so a test can point it at a recorded tree
        self.method = "rapl (CPU package energy counters)"
        self._zones: list[Zone] = []
        self._readings: dict[float, int] = {}  # mark time -> energy of every zone since start, uJ

    def start(self) -> None:
        self._zones = find_zones(self.root)
        self.method = f"rapl ({'+'.join(z.name for z in self._zones)}, CPU energy counters)"

    def mark(self) -> float:
        t = super().mark()
        assert self._zones, "start() first"
        self._readings[t] = sum(zone.read() for zone in self._zones)
        return t

    async def energy_j(self, t0: float, t1: float) -> float:
        if t0 not in self._readings or t1 not in self._readings:
            raise PowerError(f"{self.method}: no counter reading at a window boundary")
        return (self._readings[t1] - self._readings[t0]) / 1e6

    def prune(self, before: float) -> None:
        self._readings = {t: uj for t, uj in self._readings.items() if t >= before}
