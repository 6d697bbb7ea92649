"""Time of one Work item on one device: a one-row call of the vectorised work_time (perfmodel.engine.worktime).

Rates (peaks, bandwidth, efficiency curves, CPU thread scaling) live in perfmodel.engine.rates and are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine.rates import GPU_OVERHEAD_OVERLAPS, Rates, cpu_bandwidth, device_rates, stage_factor, thread_speedup
from .engine.worktime import one_row_table, work_times
from .ops.base import Work

__all__ = ["GPU_OVERHEAD_OVERLAPS", "Rates", "WorkTime", "cpu_bandwidth", "device_rates", "stage_factor",
           "thread_speedup", "work_time", "work_times"]


@dataclass(frozen=True, slots=True)
class WorkTime:
    """Time of one Work item, split into the roofline part and the exposed overhead."""

    time_s: float
    compute_s: float  # FLOPs / (peak x efficiency)
    memory_s: float  # bytes / (bandwidth x efficiency)
    overhead_s: float  # exposed per-kernel overhead

    @property
    def bound(self) -> str:
        roof = max(self.compute_s, self.memory_s)
        if self.overhead_s > roof:
            return "overhead"
        return "compute" if self.compute_s >= self.memory_s else "memory"


def work_time(w: Work, r: Rates, key: str | None = None, factor_key: str | None = None) -> WorkTime:
    """Roofline time of `w`: max(FLOPs/(peak*eff), bytes/(bw*eff)) plus per-kernel overhead (see engine.worktime).

    `key` names the op (and stage) for a calibrated per-op elementwise rate ("<op>" or "<op>.backward",
    else the profile's "default"); `factor_key` the stage for a stage factor (Efficiency.stage_factors).
    """
    t = work_times((w,), r, key, factor_key)
    return WorkTime(float(t["time"][0]), float(t["compute"][0]), float(t["memory"][0]), float(t["overhead"][0]))
