"""Interleaved 1F1B (Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters
using Megatron-LM", section 2.2.2): each of p pipeline ranks holds v model chunks (virtual stages).

With m micro-batches and per-micro-batch stage compute c (forward + backward of all v chunks):

- bubble time (p - 1) c / v, a bubble fraction of the ideal time (p - 1) / (v m) (vs (p - 1) / m);
- every micro-batch crosses v p - 1 chunk boundaries instead of p - 1 in each direction: v times the
  point-to-point messages per rank (each the same activation size x);
- iteration time, balanced chunks, transfers overlapped in the steady state when v x <= c (full-duplex links: v sends per
  direction per micro-batch):
      T = m max(c, v x) + (p - 1) (c / v + 2 x)   (the fill and drain each cross p - 1 rank boundaries
      per chunk round, each crossing waiting for one transfer)
- the first rank holds activations of p (1 + (p - 1) / (p v)) micro-batches' worth of its layers
  (Korthikanti et al. 2022, section 4.2.3).
Megatron requires m to be a multiple of p when v > 1.
"""

from __future__ import annotations

from ..errors import InputError


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
    steady = m * max(stage_compute_s, v * transfer_s)
    return steady + (p - 1) * (stage_compute_s / v + 2 * transfer_s)


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
