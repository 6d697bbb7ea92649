"""Megatron sequence parallelism (Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
Transformer Models"): activation memory of one transformer layer and its tensor-parallel collectives.

Activation bytes one transformer layer saves for backward (16-bit activations, 1-byte dropout masks),
s sequence length, b micro-batch, h hidden size, a heads, t tensor-parallel degree (paper eq. 1-6, Table 2):

- tensor parallel only:                sbh (10 + 24/t + 5as/(ht))
- tensor + sequence parallel:          sbh (34/t + 5as/(ht))
- with selective recomputation (the attention core, 5as/(ht), is recomputed): drop the 5as/(ht) term
- full recomputation: only the layer input is kept, 2sbh (sbh 2/t with sequence parallelism).

Sequence parallelism splits the layer-norm and dropout activations along the sequence; each tensor-parallel
all-reduce (Megatron's g / g-bar) becomes a reduce-scatter plus an all-gather of the same message, the same
ring volume: 2 (t-1)/t n (so predict keeps the all-reduce cost and splits the SP_OPS layers' memory and
work by t). Assumes the 10 sbh of non-split activations are LayerNorm inputs (4) and dropout
outputs and masks (2 x 3).
"""

from __future__ import annotations

from typing import Sequence

from ..errors import InputError
from .collectives import collective_time

RECOMPUTE_MODES = ("none", "selective", "full")


def layer_activation_bytes(s: int, b: int, h: int, a: int, t: int = 1, sequence_parallel: bool = False,
                           recompute: str = "none") -> float:
    """Activation bytes saved by one transformer layer on one tensor-parallel rank (Korthikanti Table 2)."""
    if min(s, b, h, a, t) < 1:
        raise InputError("s, b, h, a and t must be positive integers")
    if recompute not in RECOMPUTE_MODES:
        raise InputError(f"recompute must be one of {', '.join(RECOMPUTE_MODES)}, got {recompute!r}")
    sbh = float(s) * b * h
    if recompute == "full":
        return sbh * 2 / (t if sequence_parallel else 1)
    attention = 0.0 if recompute == "selective" else 5.0 * a * s / (h * t)
    if sequence_parallel:
        return sbh * (34.0 / t + attention)
    return sbh * (10.0 + 24.0 / t + attention)


def sp_collective_s(allreduce_bytes: float, tiers, algorithm: str | None = None) -> float:
    """Seconds of the reduce-scatter + all-gather that replace one tensor-parallel all-reduce of `allreduce_bytes`."""
    return (collective_time("reduce-scatter", allreduce_bytes, tiers, algorithm)
            + collective_time("all-gather", allreduce_bytes, tiers, algorithm))


def sp_split_bytes(replicated_bytes: float, t: int, sequence_parallel: bool) -> float:
    """Bytes one rank keeps of an activation that tensor parallelism replicates (norm, dropout): / t with SP."""
    return replicated_bytes / t if sequence_parallel else replicated_bytes


# ops Megatron runs in the sequence-parallel region (between a row-parallel output and the next column-parallel
# input): layer norms, dropouts and residual adds; with SP each rank keeps and computes 1/t of them.
SP_OPS = frozenset({"layernorm", "dropout", "add"})


def sequence_split(ops: Sequence[str], tp_split: Sequence[bool], t: int, sequence_parallel: bool) -> list[bool]:
    """Per layer: True when sequence parallelism splits it over the t ranks (an SP_OPS layer TP left whole)."""
    if not sequence_parallel or t <= 1:
        return [False] * len(ops)
    return [op in SP_OPS and not s for op, s in zip(ops, tp_split)]
