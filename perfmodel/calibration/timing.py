"""Timing of one microbenchmark call (no torch): the median of repeats of back-to-back calls."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

MIN_TIME_S = 0.01  # each repeat runs the op back to back for at least this long
REPEATS = 7  # repeats per sample; the sample's time is the median repeat (see time_call)
QUICK_MIN_TIME_S = 0.006
QUICK_REPEATS = 4


def time_call(fn: Callable[[], Any], sync: Callable[[], None], min_time: float = MIN_TIME_S,
              repeats: int = REPEATS) -> tuple[float, tuple[float, ...]]:
    """Seconds per call of `fn`: the median of `repeats` repeats of back-to-back calls lasting >= min_time each.

    The median, the statistic the validation suites report for training steps: a profile fitted to the
    fastest repeats describes the machine at its best moment and predicts every step too fast on a shared
    machine (on the 2-core KVM guest the median repeat was 4-7% slower than the fastest, 10-20% at p90).
    Every repeat is kept in the sample for the record, so `refit` can use another statistic.
    """
    fn()
    sync()
    t0 = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(min_time / one))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        sync()
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times), tuple(times)
