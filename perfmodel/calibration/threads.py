"""How a CPU GEMM splits between threads, fitted from the calibration's GEMM samples (no torch).

oneDNN/MKL split a GEMM's output rows between the threads; each thread also pays a share that does not split
(it packs or streams the other operand whole), so a GEMM with few rows scales poorly: time ~ rows / threads +
r0 (hardware.traits.gemm_split_speedup). Measured here (2-core EPYC, calibration samples): 32 rows speed up
1.5x at 2 threads, 600 rows 1.95x. r0 (the trait gemm_split_rows) is fitted from the GEMM samples timed at one
and at n threads: per sample, speedup S = t1 / tn solves to r0 = rows (1 - S/n) / (S - 1); the profile takes
the median over samples. The efficiency curves are then fitted on samples with the split divided out, so a
GEMM's rate at n threads is its curve's rate x the split's speedup (engine.worktime.split_factors).
"""

from __future__ import annotations

import re
import statistics
from typing import Sequence

from ..hardware.traits import gemm_split_speedup

_GEMM_LABEL = re.compile(r"^gemm (\d+)x(\d+)x(\d+) (nn|nt|tn)$")
MIN_ROWS = 2  # GEMM samples with fewer output rows (vector-matrix products) do not split rows: not fitted


def gemm_label(m: int, k: int, n: int, layout: str) -> str:
    """The label of a GEMM calibration sample: [m, k] x [k, n] with `layout` (nn, nt, tn); output m x n."""
    return f"gemm {m}x{k}x{n} {layout}"


def gemm_rows(label: str) -> int:
    """The output rows m of a GEMM sample's label (gemm_label), 0 for any other label."""
    hit = _GEMM_LABEL.match(label)
    return int(hit.group(1)) if hit else 0


def split_estimates(samples: Sequence, overhead: float, min_time_s: float) -> list[float]:
    """Per fp32 GEMM sample at n > 1 threads with a one-thread pair of at least `min_time_s` and >= MIN_ROWS rows:
    the r0 its speedup S = (t1 - overhead) / (tn - overhead) solves to, rows (1 - S/n) / (S - 1) (0 when S >= n;
    none when S <= 1, where no finite r0 explains it)."""
    one = {s.label: s.time_s for s in samples if s.family == "matrix" and s.dtype == "fp32" and s.threads == 1}
    out = []
    for s in samples:
        rows = gemm_rows(s.label) if s.family == "matrix" and s.dtype == "fp32" and s.threads > 1 else 0
        t1 = one.get(s.label)
        if rows < MIN_ROWS or t1 is None or t1 < min_time_s:
            continue
        speed = (t1 - overhead) / max(s.time_s - overhead, 1e-12)
        if speed >= s.threads:
            out.append(0.0)
        elif speed > 1.0:
            out.append(rows * (1.0 - speed / s.threads) / (speed - 1.0))
    return out


def fit_gemm_split(samples: Sequence, overhead: float, min_time_s: float) -> float | None:
    """gemm_split_rows: the median of split_estimates, None without any."""
    est = split_estimates(samples, overhead, min_time_s)
    return statistics.median(est) if est else None


def split_factor(s, res) -> float:
    """A sample's rate multiplier under the fitted split (FitResult `res`): gemm_split_speedup(rows, n, r0) over the
    thread model's speedup at n (n = threads up to the cores) for a GEMM sample at more than one thread, else 1
    (the same rule as engine.worktime.split_factors)."""
    rows = gemm_rows(s.label) if s.family == "matrix" else 0
    if rows <= 0 or s.threads <= 1 or not res.is_cpu or res.gemm_split_rows is None:
        return 1.0
    n = min(s.threads, res.cores)
    return float(gemm_split_speedup(rows, n, res.gemm_split_rows)) / res.speedup(n)
