"""How busy the rest of the machine is: CPU time used by other processes while we measure (Linux /proc/stat).

Timings on a shared machine are only as good as the machine is quiet. Calibration, the measured suites
and the distributed workers use this (the one implementation) to wait for a quiet moment before measuring and to detect (and repeat) a
measurement during which other processes took CPU time. Elsewhere (no /proc/stat) it reports
nothing and never waits.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from typing import Callable

_TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _stat() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot, or None without /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    total = sum(v[:8])
    return (total - idle) / _TICK, total / _TICK


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


@dataclass
class Interference:
    """Context manager: `others_cores` = average number of cores other processes kept busy meanwhile."""

    others_cores: float = 0.0
    wall_s: float = 0.0
    available: bool = False

    def __enter__(self) -> "Interference":
        self._s0 = _stat()
        self._c0 = _self_cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall_s = time.perf_counter() - self._t0
        s1 = _stat()
        if self._s0 is None or s1 is None or self.wall_s <= 0:
            return
        self.available = True
        busy = s1[0] - self._s0[0]
        mine = _self_cpu() - self._c0
        # /proc/stat counts in ticks (10 ms): tiny negative values are rounding
        self.others_cores = max(0.0, (busy - mine) / self.wall_s)


def idle_fraction(interval_s: float = 1.0) -> float | None:
    """Fraction of all CPUs idle over the next `interval_s` seconds (None without /proc/stat)."""
    a = _stat()
    if a is None:
        return None
    time.sleep(interval_s)
    b = _stat()
    if b is None or b[1] <= a[1]:
        return None
    return 1.0 - (b[0] - a[0]) / (b[1] - a[1])


def wait_for_quiet(min_idle: float = 0.85, max_wait_s: float = 120.0, interval_s: float = 1.0, sustained: int = 1,
                   on_wait: Callable[[float, float], None] | None = None) -> tuple[float | None, float]:
    """Wait until the machine has been at least `min_idle` idle for `sustained` consecutive `interval_s`
    intervals (at most `max_wait_s`).

    `on_wait(idle_fraction, waited_s)` is called after every interval that is not yet enough (progress).
    Returns (the last idle fraction seen, seconds waited). Never waits where /proc/stat is missing.
    """
    t0 = time.perf_counter()
    ok = 0
    while True:
        f = idle_fraction(interval_s)
        waited = time.perf_counter() - t0
        if f is None:
            return f, waited
        ok = ok + 1 if f >= min_idle else 0
        if ok >= sustained or waited >= max_wait_s:
            return f, waited
        if on_wait is not None:
            on_wait(f, waited)


def progress_every(say: Callable[[str], None], min_idle: float, max_wait_s: float, sustained: int = 1,
                   every_s: float = 10.0) -> Callable[[float, float], None]:
    """An `on_wait` for wait_for_quiet that says what it waits for at once, then every `every_s` seconds."""
    last = [-float("inf")]
    need = f"needs {min_idle:.0%}" + (f" for {sustained} s" if sustained > 1 else "")

    def on_wait(idle: float, waited_s: float) -> None:
        if waited_s - last[0] >= every_s:
            last[0] = waited_s
            say(f"waiting for an idle machine: {idle:.0%} idle, {need} ({waited_s:.0f} s of at most {max_wait_s:.0f} s)")

    return on_wait
