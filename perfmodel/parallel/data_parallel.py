"""Data parallelism: gradient buckets, their all-reduces overlapped with backward (the DDP way) or not.

PyTorch DDP groups parameters into buckets in reverse order of registration (roughly the order in
which backward produces their gradients), the first bucket capped at 1 MiB and the others at
`bucket_cap_mb` = 25 MiB; a bucket's all-reduce starts as soon as its last gradient exists, and the
all-reduces run one after another on one communication stream. The optimizer step waits for all of
them. Here a layer's parameters are placed whole (DDP does not split a tensor across buckets) and a
layer's gradient exists when its backward finishes, using the per-layer backward times of the step
profile in reverse order.

DDP also moves every gradient through memory itself (gradient_as_bucket_view=False, the default):
copy the gradient into its bucket, scale the bucket by 1/world, copy the reduced bucket back into the
gradient: DDP_BUCKET_COPY_PASSES read+write passes over the gradient bytes on the device, added to
the step as memory-bound work (small on GPUs, tens of ms for a 40 MB model on one CPU core).

Scaling: weak scaling keeps the batch per device (global batch grows with the replicas); strong
scaling keeps the global batch and divides it among replicas. Gradient accumulation over k
micro-steps all-reduces once, overlapped with the last micro-step's backward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from ..compute import Rates
from ..errors import InputError
from ..ops.base import Work
from ..optimizers import MASTER_BYTES
from ..step import StageTime, stage_time
from .overlap import slowed_lag

DDP_BUCKET_BYTES = 25 * 1024 * 1024  # torch DDP bucket_cap_mb default (25 MiB)
DDP_FIRST_BUCKET_BYTES = 1024 * 1024  # torch.distributed._DEFAULT_FIRST_BUCKET_BYTES
GRAD_BYTES = MASTER_BYTES  # gradients all-reduced in fp32 (DDP reduces the fp32 .grad of fp32 parameters)
SCALING_MODES = ("weak", "strong")
DDP_BUCKET_COPY_PASSES = 3  # copy into bucket, scale by 1/world, copy back (each reads and writes the gradient)


@dataclass(frozen=True, slots=True)
class Bucket:
    layers: tuple[int, ...]  # layer indices in the stage's list (reverse order of production)
    bytes: float
    ready_s: float  # when its last gradient is produced, from the start of the backward pass


@dataclass(frozen=True, slots=True)
class SyncSchedule:
    """All-reduces of the buckets relative to the start of backward (`backward_s`: its work alone; `slowdown_s`: how
    much longer it ran because all-reduces were in flight beside it, parallel/overlap.py)."""

    buckets: tuple[Bucket, ...]
    starts_s: tuple[float, ...]
    ends_s: tuple[float, ...]
    backward_s: float
    comm_s: float  # sum of all bucket all-reduce times
    slowdown_s: float = 0.0

    @property
    def backward_end_s(self) -> float:
        return self.backward_s + self.slowdown_s

    @property
    def end_s(self) -> float:
        """When the last all-reduce finishes (backward's end if there is nothing to reduce)."""
        return max(self.ends_s[-1], self.backward_end_s) if self.ends_s else self.backward_end_s

    @property
    def exposed_s(self) -> float:
        """Communication left after backward ends."""
        return max(0.0, self.end_s - self.backward_end_s)

    @property
    def hidden_s(self) -> float:
        return max(0.0, self.comm_s - self.exposed_s)


def make_buckets(backward_s: Sequence[float], grad_bytes: Sequence[float], bucket_bytes: float | None = None,
                 first_bucket_bytes: float | None = None) -> tuple[Bucket, ...]:
    """Buckets over layers given in forward order: per-layer backward time and gradient bytes.

    Gradients are produced in reverse layer order; layer i's gradient is ready when its backward ends.
    """
    if len(backward_s) != len(grad_bytes):
        raise InputError("backward times and gradient sizes must have one entry per layer")
    cap = DDP_BUCKET_BYTES if bucket_bytes is None else bucket_bytes
    if cap <= 0:
        raise InputError(f"bucket_bytes must be > 0, got {cap}")
    first = min(cap, DDP_FIRST_BUCKET_BYTES) if first_bucket_bytes is None else first_bucket_bytes
    buckets: list[Bucket] = []
    cur: list[int] = []
    cur_bytes = 0.0
    t = 0.0
    ready = 0.0
    limit = first
    for i in reversed(range(len(backward_s))):
        t += backward_s[i]
        g = grad_bytes[i]
        if g <= 0:
            continue
        if cur and cur_bytes + g > limit:
            buckets.append(Bucket(tuple(cur), cur_bytes, ready))
            cur, cur_bytes, limit = [], 0.0, cap
        cur.append(i)
        cur_bytes += g
        ready = t
    if cur:
        buckets.append(Bucket(tuple(cur), cur_bytes, ready))
    return tuple(buckets)


def sync_schedule(buckets: Sequence[Bucket], backward_s: float, allreduce: Callable[[float], float],
                  overlap: bool = True, slowdown: float = 0.0) -> SyncSchedule:
    """Run the bucket all-reduces one after another on one stream, each starting when ready (overlap: its last
    gradient exists, buckets ready in order) or after backward. While one is in flight the rest of backward runs
    `slowdown` slower (overlap.slowed_lag: 1 + slowdown times as long); slowdown 0 is the plain schedule."""
    starts, ends = [], []
    lag = done = free = 0.0  # wall time behind the work done (the slowdown so far), work done, end of the stream
    total = 0.0
    for b in buckets:
        d = allreduce(b.bytes)
        total += d
        ready = b.ready_s if overlap else backward_s
        lag = slowed_lag(lag, done, ready, free, slowdown)
        done = max(done, ready)
        s = max(done + lag, free)
        free = s + d
        starts.append(s)
        ends.append(free)
    lag = slowed_lag(lag, done, backward_s, free, slowdown)
    return SyncSchedule(tuple(buckets), tuple(starts), tuple(ends), backward_s, total, lag)


def replica_batch(batch: int, dp: int, grad_accumulation: int, scaling: str) -> int:
    """Samples per replica per micro-step: the given batch (weak) or the global batch split evenly (strong)."""
    if scaling not in SCALING_MODES:
        raise InputError(f"scaling must be 'weak' or 'strong', got {scaling!r}")
    if isinstance(grad_accumulation, bool) or not isinstance(grad_accumulation, int) or grad_accumulation < 1:
        raise InputError(f"grad_accumulation must be a positive integer, got {grad_accumulation!r}")
    if scaling == "weak":
        return batch
    share = dp * grad_accumulation
    if batch % share:
        raise InputError(f"strong scaling: global batch {batch} is not divisible by dp x grad_accumulation = {share}")
    return batch // share


def ddp_copy_time(params: int, param_tensors: int, rates: Rates) -> StageTime:
    """Device time of DDP's passes over `params` gradients (copy in, scale, copy out), memory-bound."""
    if params <= 0:
        return StageTime()
    b = params * GRAD_BYTES * DDP_BUCKET_COPY_PASSES
    w = Work("memory", flops=float(params), bytes_read=float(b), bytes_written=float(b),
             kernels=DDP_BUCKET_COPY_PASSES * max(1, param_tensors))
    return stage_time((w,), rates)
