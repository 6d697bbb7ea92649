"""Accuracy metrics of predicted against measured times (pure functions, no torch, no numpy needed).

signed error = 100 * (predicted - measured) / measured  (positive: the model is too slow/pessimistic)
absolute error = |signed error|
A suite summary gives the median, mean and 90th percentile of the absolute errors and the worst
cases by name.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Iterable, Mapping, Sequence


def signed_error_pct(predicted: float, measured: float) -> float:
    """100 * (predicted - measured) / measured."""
    if not measured > 0:
        raise ValueError(f"measured time must be > 0, got {measured}")
    return 100.0 * (predicted - measured) / measured


def abs_error_pct(predicted: float, measured: float) -> float:
    """|signed_error_pct|."""
    return abs(signed_error_pct(predicted, measured))


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def nearest_rank_percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by the nearest-rank method: the smallest value with at least q% at or below."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    xs = sorted(values)
    return xs[min(len(xs) - 1, max(0, math.ceil(q / 100.0 * len(xs)) - 1))]


@dataclass(frozen=True)
class ErrorSummary:
    """Summary of the absolute percentage errors of a set of cases."""

    n: int
    median_abs_pct: float
    mean_abs_pct: float
    p90_abs_pct: float
    max_abs_pct: float
    mean_signed_pct: float  # bias: > 0 means the model predicts too slow on average
    worst: tuple[tuple[str, float], ...]  # (case name, signed error %), largest |error| first
    within_10pct: int
    within_25pct: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["worst"] = [{"case": n, "error_pct": e} for n, e in self.worst]
        return d


def summarize(errors: Mapping[str, float] | Iterable[tuple[str, float]], worst_n: int = 3) -> ErrorSummary:
    """Summary of signed percentage errors given per case name."""
    items = list(errors.items()) if isinstance(errors, Mapping) else list(errors)
    if not items:
        raise ValueError("no cases to summarize")
    absd = [abs(e) for _, e in items]
    worst = tuple(sorted(items, key=lambda kv: abs(kv[1]), reverse=True)[:worst_n])
    return ErrorSummary(
        n=len(items), median_abs_pct=statistics.median(absd), mean_abs_pct=statistics.fmean(absd),
        p90_abs_pct=percentile(absd, 90), max_abs_pct=max(absd),
        mean_signed_pct=statistics.fmean(e for _, e in items), worst=worst,
        within_10pct=sum(a <= 10 for a in absd), within_25pct=sum(a <= 25 for a in absd),
    )


def case_summary(errors_pct: Sequence[tuple[str, float]], target_pct: float) -> dict:
    """Summary of a measured suite's signed errors (case name, %): count, median / mean / p90 of |error|, the
    worst case and how many are within `target_pct` (the ddp-cpu and fsdp-cpu reports); {"cases": 0} if none."""
    if not errors_pct:
        return {"cases": 0}
    errs = [abs(e) for _, e in errors_pct]
    worst = max(errors_pct, key=lambda kv: abs(kv[1]))
    return {"cases": len(errs), "median_abs_error_pct": statistics.median(errs),
            "mean_abs_error_pct": statistics.fmean(errs), "p90_abs_error_pct": nearest_rank_percentile(errs, 90),
            "worst_case": worst[0], "worst_abs_error_pct": abs(worst[1]),
            "within_target": sum(e <= target_pct for e in errs), "target_pct": target_pct}


def meets_target(summary: ErrorSummary, median_max: float = 10.0, worst_max: float = 25.0) -> bool:
    """The accuracy target: median absolute error <= median_max % and no case worse than worst_max %."""
    return summary.median_abs_pct <= median_max and summary.max_abs_pct <= worst_max
