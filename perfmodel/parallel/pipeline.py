"""Pipeline parallelism: contiguous layer partition balanced by predicted time; GPipe and 1F1B schedules.

Partition: layers (in topological order) are cut into `pp` contiguous, non-empty stages minimising
the largest stage time (forward + backward per micro-batch, tensor-parallel collectives included);
solved by bisection on the bottleneck value with a greedy feasibility check, then rebalanced.

Schedules, with per-micro-batch stage times c_s = f_s + b_s, m micro-batches and x_s the transfer
time of the activations (or their gradients) across boundary s:

- 1F1B (PipeDream-Flush, Narayanan et al. 2021): T = (m - 1) max_s cycle_s + sum_s c_s + 2 sum_s x_s,
  with cycle_s = max(c_s, x_{s-1}, x_s) (transfers overlap compute in the steady state; the
  fill and the drain each cross every boundary once);
- GPipe (Huang et al. 2019): all forwards, then all backwards:
  T = (m - 1) (max_s f_s + max_s b_s) + sum_s c_s + 2 sum_s x_s.

For equal stages without transfers both give T = (m + pp - 1) c, a bubble fraction (pp - 1)/(m + pp - 1).
The bubble reported is T minus the busiest stage's work (m c_max) minus the exposed transfers.
1F1B keeps at most pp - s micro-batches of activations on stage s; GPipe keeps all m.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError


def partition(weights: Sequence[float], stages: int) -> tuple[tuple[int, int], ...]:
    """Cut `weights` into `stages` contiguous non-empty ranges [start, end) minimising the largest sum."""
    n = len(weights)
    if stages < 1:
        raise InputError(f"pipeline stages must be >= 1, got {stages}")
    if stages > n:
        raise InputError(f"cannot cut {n} layers into {stages} pipeline stages (at most one stage per layer)")
    if stages == 1:
        return ((0, n),)
    w = [max(0.0, float(x)) for x in weights]

    def cuts_for(limit: float) -> list[int] | None:
        """Greedy: fill each stage up to `limit`, keeping enough layers for the remaining stages."""
        bounds = []
        start = 0
        for s in range(stages - 1):
            acc = 0.0
            end = start
            max_end = n - (stages - 1 - s)  # leave at least one layer per remaining stage
            while end < max_end and (end == start or acc + w[end] <= limit):
                acc += w[end]
                end += 1
            bounds.append(end)
            start = end
        if sum(w[start:]) > limit * (1 + 1e-12) + 1e-300:
            return None
        return bounds

    lo = max(w) if w else 0.0
    hi = sum(w)
    best = cuts_for(hi)
    for _ in range(100):
        if hi - lo <= 1e-12 * max(hi, 1e-300):
            break
        mid = (lo + hi) / 2
        c = cuts_for(mid)
        if c is None:
            lo = mid
        else:
            hi, best = mid, c
    assert best is not None
    edges = [0] + best + [n]
    return tuple((edges[i], edges[i + 1]) for i in range(stages))


@dataclass(frozen=True)
class PipelineTiming:
    schedule: str
    microbatches: int
    stage_forward_s: tuple[float, ...]
    stage_backward_s: tuple[float, ...]
    transfer_s: tuple[float, ...]  # per boundary, one micro-batch, one direction
    total_s: float  # fill + steady state + drain, for m micro-batches
    critical_stage: int  # the stage with the most work per micro-batch
    exposed_transfer_s: float
    bubble_s: float
    last_backward_end_s: tuple[float, ...]  # per stage: when its last backward finishes

    @property
    def bubble_fraction(self) -> float:
        return self.bubble_s / self.total_s if self.total_s > 0 else 0.0


def schedule_time(fwd: Sequence[float], bwd: Sequence[float], transfer: Sequence[float], m: int,
                  schedule: str = "1f1b") -> PipelineTiming:
    """Time of m micro-batches through the stages (see the module docstring)."""
    pp = len(fwd)
    if len(bwd) != pp or len(transfer) != max(0, pp - 1):
        raise InputError("need forward and backward times per stage and one transfer time per boundary")
    if m < 1:
        raise InputError(f"micro-batches must be >= 1, got {m}")
    if schedule not in ("1f1b", "gpipe"):
        raise InputError(f"schedule must be '1f1b' or 'gpipe', got {schedule!r}")
    c = [f + b for f, b in zip(fwd, bwd)]
    crit = max(range(pp), key=lambda s: c[s])
    fill = 2 * sum(transfer)
    if schedule == "1f1b":
        cycles = [max(c[s], transfer[s - 1] if s > 0 else 0.0, transfer[s] if s < pp - 1 else 0.0) for s in range(pp)]
        steady = (m - 1) * max(cycles)
        steady_compute = (m - 1) * max(c)
    else:
        fx = [max(fwd[s], transfer[s - 1] if s > 0 else 0.0, transfer[s] if s < pp - 1 else 0.0) for s in range(pp)]
        bx = [max(bwd[s], transfer[s - 1] if s > 0 else 0.0, transfer[s] if s < pp - 1 else 0.0) for s in range(pp)]
        steady = (m - 1) * (max(fx) + max(bx))
        steady_compute = (m - 1) * (max(fwd) + max(bwd))
    total = steady + sum(c) + fill
    exposed = fill + (steady - steady_compute)
    bubble = max(0.0, total - m * c[crit] - exposed)
    # the last micro-batch's backward runs from the last stage down to stage 0
    ends = []
    t = total
    for s in range(pp):
        ends.append(t)
        if s < pp - 1:
            t -= bwd[s] + transfer[s]
    return PipelineTiming(schedule, m, tuple(fwd), tuple(bwd), tuple(transfer), total, crit, exposed, bubble,
                          tuple(ends))


def inflight_microbatches(schedule: str, pp: int, m: int, stage: int) -> int:
    """Micro-batches whose activations a stage holds at once."""
    if schedule == "gpipe":
        return m
    return max(1, min(m, pp - stage))
