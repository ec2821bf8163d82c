"""NVIDIA GPU energy from NVML's total-energy counter (``nvidia-ml-py``, the ``moe2[nvidia]`` extra).

The counter (millijoules since the driver loaded; Volta and newer) is read at every window
boundary, so a request's energy is the difference of two readings: no sampling, no gaps. It
counts the GPU board only, not the CPU, memory or power supply of the host.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from moe2_cli.measure.power import PowerError, PowerMeter


def load_pynvml() -> ModuleType:
    """The one place NVML is imported: tests put a module with pynvml's functions in its stead."""
    try:
        return importlib.import_module("pynvml")
    except ImportError:
        raise PowerError("power nvml needs nvidia-ml-py: pip install 'moe2[nvidia]'") from None


class NvmlEnergy(PowerMeter):
    def __init__(self, gpu_index: int):
        self.gpu_index = gpu_index
        self.method = f"nvml:{gpu_index} (GPU total-energy counter)"
        self._nvml: ModuleType | None = None
        self._handle = None
        self._readings: dict[float, float] = {}  # mark time -> counter, mJ

    def start(self) -> None:
        nvml = load_pynvml()
        try:
            nvml.nvmlInit()
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.gpu_index)
            name = nvml.nvmlDeviceGetName(self._handle)
            nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)
        except nvml.NVMLError as err:
            raise PowerError(f"power nvml:{self.gpu_index}: {err} (the energy counter needs a Volta or newer "
                             f"GPU and its driver)") from None
        self._nvml = nvml
        name = name.decode() if isinstance(name, bytes) else str(name)
        self.method = f"nvml:{self.gpu_index} ({name}, GPU total-energy counter)"

    def mark(self) -> float:
        t = super().mark()
        assert self._nvml is not None, "start() first"
        try:
            self._readings[t] = float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError as err:
            raise PowerError(f"power nvml:{self.gpu_index}: reading the energy counter failed: {err}") from None
        return t

    async def energy_j(self, t0: float, t1: float) -> float:
        if t0 not in self._readings or t1 not in self._readings:
            raise PowerError(f"{self.method}: no counter reading at a window boundary")
        return (self._readings[t1] - self._readings[t0]) / 1000.0

    def prune(self, before: float) -> None:
        self._readings = {t: mj for t, mj in self._readings.items() if t >= before}

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None
