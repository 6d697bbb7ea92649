"""Overlap as data: which communication runs beside which compute, and what sharing the device costs the compute.

The facts are data, not code branches: the `overlap:` block of the device's software stack
(hardware_profiles/stacks/*.yaml, schema kernels.schema.Overlap) names the communication classes a framework
overlaps by default and the fractional slowdown s (`compute_slowdown`) of compute that runs while communication
is in flight on the same device (NCCL kernels take SMs and memory bandwidth; the stack file names the source of
its figure). A device without a stack (CPUs, generic accelerators) takes NO_STACK: the classes as PyTorch runs
them and s = 0 (on CPUs gloo's progress threads need a core of their own; the measured CPU suites decide per
case whether one is idle, validation/ddp_cpu.py, and turn `overlap` off when none is).

Classes and what they overlap (the setup's `overlap=False` turns every one off):
- dp_buckets: a data-parallel gradient bucket's all-reduce runs beside the rest of backward
  (data_parallel.sync_schedule);
- fsdp_prefetch: FSDP / ZeRO-3 all-gather the next unit's parameters beside the current unit's compute
  (sharding.zero_sync);
- tp_comm: Megatron / Transformer Engine tensor-parallel communication overlap (`tp_overlap=True`, or a stack
  that turns it on): the all-gather / reduce-scatter of a GEMM layer (column, row, attention) is cut into tp
  chunks pipelined with that layer's own GEMM chunks (tp_overlapped); needs sequence parallelism, as Megatron's
  --tp-comm-overlap does;
- pp_p2p: 1F1B's steady-state activation sends and receives run beside the stage's compute (pipeline.py).

The slowdown law, one for every class: compute that runs while communication is in flight takes (1 + s) times
as long; compute alone runs at full speed; communication is not slowed by the compute. So a hidden collective
costs s x (the compute time it overlapped) instead of its own time; with s < 1 overlap is never slower than no
overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InputError
from ..kernels import load_stack
from ..kernels.schema import Overlap
from ..recompute import RecomputeLayout

NO_STACK = Overlap(source="device without a software stack: the classes as PyTorch runs them, no slowdown "
                          "(CPU: gloo's threads need an idle core; the measured suites turn overlap off without one)")
TP_OVERLAP_ROLES = ("column", "row", "heads")  # GEMM layers whose collectives Megatron/TE pipeline with the GEMM


@dataclass(frozen=True)
class OverlapUse:
    """The overlap classes in use for one prediction and the compute slowdown s while communication is in flight."""

    dp_buckets: bool
    fsdp_prefetch: bool
    tp_comm: bool
    pp_p2p: bool
    slowdown: float
    source: str

    def classes(self) -> dict[str, bool]:
        return {"dp_buckets": self.dp_buckets, "fsdp_prefetch": self.fsdp_prefetch, "tp_comm": self.tp_comm,
                "pp_p2p": self.pp_p2p}


def overlap_facts(device) -> Overlap:
    """The overlap facts of `device`: its software stack's `overlap:` block, NO_STACK without a stack."""
    stack = getattr(device, "software_stack", None)
    return load_stack(stack).overlap if stack else NO_STACK


def overlap_use(device, overlap: bool = True, tp_overlap: bool = False) -> OverlapUse:
    """What overlaps on `device` under the setup's switches: nothing when `overlap` is False; else the stack's
    classes, with tensor-parallel overlap also on when `tp_overlap` asks for it."""
    f = overlap_facts(device)
    if not overlap:
        return OverlapUse(False, False, False, False, f.compute_slowdown, f.source)
    return OverlapUse(f.dp_buckets, f.fsdp_prefetch, f.tp_comm or tp_overlap, f.pp_p2p, f.compute_slowdown, f.source)


def check_tp_overlap(tp_overlap: bool, overlap: bool, tp: int, sequence_parallel: bool) -> None:
    """tp_overlap=True needs overlap, tp > 1 and sequence parallelism (Megatron's --tp-comm-overlap does)."""
    if tp_overlap and not (overlap and tp > 1 and sequence_parallel):
        raise InputError(f"tp_overlap=True pipelines the all-gathers / reduce-scatters of sequence parallelism with "
                         f"the GEMMs: it needs overlap=True, tp > 1 and sequence_parallel=True (got overlap={overlap}, "
                         f"tp={tp}, sequence_parallel={sequence_parallel})")


def slowed_lag(lag: float, done: float, target: float, busy_until: float, slowdown: float) -> float:
    """How far wall time runs behind the compute's own work (wall = work + lag) once compute that has done `done`
    seconds of work, `lag` behind, has done `target`, with communication in flight until wall time `busy_until`:
    meanwhile compute runs at 1 / (1 + slowdown) of its speed, so each second of work overlapped adds `slowdown`."""
    t = done + lag
    if target <= done or t >= busy_until or slowdown <= 0:
        return lag
    return lag + slowdown * min(target - done, (busy_until - t) / (1.0 + slowdown))


def tp_overlapped(comm: np.ndarray, compute: np.ndarray, roles, tp: int, slowdown: float):
    """Per layer (exposed communication, compute slowdown, hidden communication) seconds of tensor-parallel
    collectives `comm` pipelined with the layer's own `compute` in tp chunks (GEMM roles TP_OVERLAP_ROLES only):
    hidden h = min(comm, compute) (1 - 1/tp) (the first chunk of either cannot overlap), exposed = comm - h,
    slowdown = s h. Other layers keep their collectives exposed."""
    c = np.asarray(comm, dtype=float)
    mask = np.array([r in TP_OVERLAP_ROLES for r in roles], dtype=bool)
    hidden = np.where(mask, np.minimum(c, np.asarray(compute, dtype=float)) * (1.0 - 1.0 / max(1, tp)), 0.0)
    return c - hidden, slowdown * hidden, hidden


@dataclass(frozen=True)
class TPOverlap:
    """Per layer, forward and backward: what a stage's time grows by (`cost`: exposed + slowdown), the compute
    slowdown and the communication hidden, of the rank's tensor-parallel collectives under tp_comm overlap."""

    cost_f: np.ndarray
    cost_b: np.ndarray
    slow_f: np.ndarray
    slow_b: np.ndarray
    hidden_f: np.ndarray
    hidden_b: np.ndarray


def tp_overlap_arrays(ranks, tpf: np.ndarray, tpb: np.ndarray, slowdown: float) -> TPOverlap:
    """tp_overlapped for forward (with each layer's forward) and backward (with its backward) of a rank
    (parallel.rank.RankLayers: layout roles, per-layer times, tp)."""
    roles = [t.role for t in ranks.layout]
    ef, sf, hf = tp_overlapped(tpf, ranks.fwd, roles, ranks.tp, slowdown)
    eb, sb, hb = tp_overlapped(tpb, ranks.bwd, roles, ranks.tp, slowdown)
    return TPOverlap(ef + sf, eb + sb, sf, sb, hf, hb)


def mark_tp_overlap(stg, tov: TPOverlap):
    """The staged rank (parallel.stages.Staged, built with tov's costs) with its per-layer tensor-parallel
    slowdown and hidden seconds recorded (the iteration moves the slowdown from tensor_comm to compute)."""
    return replace(stg, tp_slow_l=tp_slow_per_layer(tov.slow_f, tov.slow_b, stg.recompute),
                   tp_hidden_l=tp_slow_per_layer(tov.hidden_f, tov.hidden_b, stg.recompute))


def tp_slow_per_layer(slow_f: np.ndarray, slow_b: np.ndarray, recompute) -> np.ndarray:
    """Per layer: the slowdown inside a stage's forward + backward tensor-parallel seconds (full recomputation
    runs the forward collectives, and their overlap, again in backward)."""
    out = slow_f + slow_b
    if isinstance(recompute, RecomputeLayout):
        out = out + np.where(recompute.layers, slow_f, 0.0)
    return out


def p2p_overlapped(fwd, bwd, transfer, m: int, v: int = 1) -> list[float]:
    """Per stage, seconds per micro-batch of a 1F1B stage's steady-state sends and receives that run beside its
    compute: min(f + b, v (x_in + x_out)) (full-duplex links: one activation and one gradient per boundary per
    micro-batch, v of each with v interleaved chunks); 0 with one micro-batch (no steady state)."""
    pp = len(fwd)
    if m <= 1 or pp < 2:
        return [0.0] * pp
    return [min(fwd[s] + bwd[s], v * ((transfer[s - 1] if s > 0 else 0.0) + (transfer[s] if s < pp - 1 else 0.0)))
            for s in range(pp)]


def p2p_slowdown(fwd, bwd, transfer, m: int, slowdown: float, v: int = 1) -> list[float]:
    """Per stage, seconds per micro-batch that a 1F1B stage's compute grows by while its steady-state sends and
    receives are in flight: slowdown x p2p_overlapped."""
    return [slowdown * o for o in p2p_overlapped(fwd, bwd, transfer, m, v)]
