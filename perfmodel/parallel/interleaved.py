"""Interleaved 1F1B (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
using Megatron-LM", section 2.2.2): each of p pipeline ranks holds v model chunks (virtual stages).

With m micro-batches and per-micro-batch stage compute c (forward + backward of all v chunks):

- bubble time (p - 1) c / v, a bubble fraction of the ideal time (p - 1) / (v m) (vs (p - 1) / m);
- every micro-batch crosses v p - 1 chunk boundaries instead of p - 1 in each direction: v times the
  point-to-point messages per rank (each the same activation size x);
- iteration time (full-duplex links: v sends per direction per micro-batch), per rank s with c_s = f_s + b_s and
  cycle_s = max(c_s, v x_{s-1}, v x_s), the 1F1B formula of parallel/pipeline.py with the fill/drain work / v:
      T = (m - 1) max(max_s cycle_s, R) + max_s c_s + (sum_s c_s - max_s c_s) / v + 2 sum_s x_s
  with the round-trip bound R = (sum_s c_s + 2 v sum_s x_s) / first_stage_inflight(p, m, v)
  (pipeline.round_trip_cycle); balanced: T = (m - 1) max(c, v x, R) + c + (p - 1) (c / v + 2 x);
  v = 1 gives pipeline.schedule_time's 1F1B.
  Assumes each rank's layers split into v equal chunks and ignores the wrap-around send from the last rank to
  the first (it overlaps the steady state).
- the first rank holds activations of p (1 + (p - 1) / (p v)) micro-batches' worth of its layers
  (Korthikanti et al. 2022, section 4.2.3).
Megatron requires m to be a multiple of p when v > 1.
"""

from __future__ import annotations

from typing import Sequence

from ..errors import InputError
from .pipeline import PipelineTiming, round_trip_cycle


def _check(p: int, m: int, v: int) -> None:
    if min(p, m, v) < 1:
        raise InputError(f"pipeline ranks, micro-batches and virtual stages must be >= 1, got p={p}, m={m}, v={v}")
    if v > 1 and m % p:
        raise InputError(f"interleaved 1F1B needs micro-batches ({m}) to be a multiple of pipeline stages ({p})")


def bubble_fraction(p: int, m: int, v: int = 1) -> float:
    """Bubble time over ideal compute time: (p - 1) / (v m)."""
    _check(p, m, v)
    return (p - 1) / (v * m)


def iteration_s(stage_compute_s: float, transfer_s: float, p: int, m: int, v: int = 1) -> float:
    """Time of m micro-batches through p ranks of v balanced chunks each (module docstring)."""
    _check(p, m, v)
    if p == 1:
        return m * stage_compute_s
    rt = round_trip_cycle([stage_compute_s] * p, [transfer_s] * (p - 1), first_stage_inflight(p, m, v), v)
    steady = (m - 1) * max(stage_compute_s, v * transfer_s, rt)
    return steady + stage_compute_s + (p - 1) * (stage_compute_s / v + 2 * transfer_s)


def p2p_messages_per_rank(p: int, m: int, v: int = 1) -> int:
    """Point-to-point activation sends per rank per iteration, forward and backward (interior rank)."""
    _check(p, m, v)
    if p == 1:
        return 0
    return 2 * v * m


def first_stage_inflight(p: int, m: int, v: int = 1) -> float:
    """Micro-batches' worth of a rank's activations held by the first rank: min(m, p) (1 + (p - 1) / (p v))
    when interleaved (v > 1), min(m, p) for plain 1F1B."""
    _check(p, m, v)
    base = float(min(m, p))
    return base * (1 + (p - 1) / (p * v)) if v > 1 else base


def interleaved_timing(fwd: Sequence[float], bwd: Sequence[float], transfer: Sequence[float], m: int, v: int
                       ) -> PipelineTiming:
    """pipeline.schedule_time's PipelineTiming for interleaved 1F1B with v chunks per rank (module docstring)."""
    p = len(fwd)
    _check(p, m, v)
    if len(bwd) != p or len(transfer) != max(0, p - 1):
        raise InputError("need forward and backward times per stage and one transfer time per boundary")
    c = [f + b for f, b in zip(fwd, bwd)]
    crit = max(range(p), key=lambda s: c[s])
    cycles = [max(c[s], v * transfer[s - 1] if s > 0 else 0.0, v * transfer[s] if s < p - 1 else 0.0)
              for s in range(p)]
    fill = 2 * sum(transfer)
    rt = round_trip_cycle(c, transfer, first_stage_inflight(p, m, v), v)
    steady, steady_compute = (m - 1) * max(max(cycles), rt), (m - 1) * c[crit]
    total = steady + c[crit] + (sum(c) - c[crit]) / v + fill
    exposed = fill + (steady - steady_compute)
    bubble = max(0.0, total - m * c[crit] - exposed)
    ends, t = [], total
    for s in range(p):  # the last micro-batch's last backward chunk runs from the last rank down to rank 0
        ends.append(t)
        if s < p - 1:
            t -= bwd[s] / v + transfer[s]
    return PipelineTiming(f"interleaved-{v}", m, tuple(fwd), tuple(bwd), tuple(transfer), total, crit, exposed,
                          bubble, tuple(ends))
