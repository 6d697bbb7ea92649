"""Kernel classes of CPU work and their calibrated efficiency curves (no torch).

A training step's kernels are not all alike at the same FLOPs: oneDNN runs a depthwise or grouped
convolution, a narrow 1x1 convolution or a thin GEMM far below a dense GEMM's rate, and an elementwise
kernel whose output is freshly allocated (as every activation in a training step is) streams slower than
an in-place copy once its tensors leave the caches. Each class gets its own curve in the profile,
`efficiency.curves[<efficiency key>]`, with the key names of the cost rules' work items
(perfmodel.hardware.traits key chain: a key falls back to its prefixes, then to the family curve):

- conv/depthwise, conv/grouped, conv/1x1 and matmul/thin: size = FLOPs per kernel, efficiency = achieved
  FLOP rate over the thread-scaled fitted peak (as the conv and matrix curves);
- elementwise, norm, pool: size = bytes per kernel, efficiency = achieved bytes/s over the thread-scaled
  fitted bandwidth, from streaming kernels with freshly allocated outputs over 16 KiB..128 MiB tensors.

Only microbenchmark samples are fitted (their `ekey` names the class); no validation network is used.
"""

from __future__ import annotations

import re
from typing import Sequence

# memory-work roots whose bandwidth curve is the fresh-allocation streaming curve
STREAM_ROOTS = ("elementwise", "norm", "pool")
STREAM_KEY = "elementwise"  # the key the streaming samples carry
THIN = 16  # a GEMM is thin when min(M, N) <= THIN (as the dense cost rule keys it)


def conv_ekey(c_in: int, c_out: int, kernel: int, stride: int, groups: int) -> str:
    """Efficiency key of a stride-1 calibration convolution ("" = the plain conv curve; strided convs use
    stage factors): conv/depthwise (groups = input channels), conv/grouped, conv/1x1."""
    if stride != 1:
        return ""
    if groups > 1 and groups == c_in:
        return "conv/depthwise"
    if groups > 1:
        return "conv/grouped"
    return "conv/1x1" if kernel == 1 else ""


def gemm_ekey(m: int, n: int) -> str:
    """matmul/thin for a GEMM with min(M, N) <= THIN, else "" (the matrix curve)."""
    return "matmul/thin" if min(m, n) <= THIN else ""


def fit_keyed_curves(samples: Sequence, res, overhead: float, bins_per_decade: float) -> dict[str, list]:
    """Per efficiency key of the samples: binned (size, efficiency) points, as the family curves are fitted
    (per bin the median per thread count, then their geometric mean). The streaming curve is written under
    every STREAM_ROOTS key."""
    from .fit import bin_curve, efficiency_pairs

    out: dict[str, list] = {}
    for ekey in sorted({s.ekey for s in samples if s.ekey}):
        fam = next(s.family for s in samples if s.ekey == ekey)
        pairs = efficiency_pairs(samples, fam, "fp32" if fam != "memory" else None, res, overhead, ekey=ekey)
        if pairs:
            res.n_samples[ekey] = len(pairs)
            out[ekey] = bin_curve(pairs, bins_per_decade)
    if STREAM_KEY in out:
        for root in STREAM_ROOTS:
            out[root] = list(out[STREAM_KEY])
    return out


FRESH_BYTES = 32 * 2**20  # glibc's largest dynamic mmap threshold: bigger buffers are mapped (and faulted) per call
_CONV_LABEL = re.compile(r"^conv n(\d+) c(\d+) (\d+)x\d+ k(\d+) (\d+)x\d+(?:/(\d+))?(?: g(\d+))? (fwd|bwd)$")
_FRESH_LABEL = re.compile(r"^fresh (relu|add) (\d+) fp32$")


def written_bytes(s) -> float:
    """Freshly allocated output bytes of a sample: its `written` field, else (samples stored before it existed)
    read from the grid's own labels: a fresh streaming kernel writes 4n bytes; a stride-1 or strided conv's
    forward its output, its combined backward the input and weight gradients. Other samples: 0."""
    if s.written:
        return s.written
    m = _FRESH_LABEL.match(s.label)
    if m:
        return 4.0 * int(m.group(2))
    m = _CONV_LABEL.match(s.label)
    if not m:
        return 0.0
    nb, c, hw, ko, kr = (int(m.group(i)) for i in range(1, 6))
    st, g = int(m.group(6) or 1), int(m.group(7) or 1)
    if m.group(8) == "fwd":
        return 4.0 * nb * ko * (hw // st) ** 2
    return 4.0 * (nb * c * hw * hw + ko * (c // g) * kr * kr)


def fit_fresh_cost(samples: Sequence, res, families: tuple[str, ...] = ("conv", "memory")) -> float | None:
    """One thread's extra seconds per freshly mapped output byte: per sample of `families` whose outputs
    reach FRESH_BYTES, (time - the time its curves predict) x thread speedup / written bytes; the median of those
    (None without such samples). Page faults and zeroing are done by the thread that touches the page, so the
    cost spreads over threads as compute does."""
    import statistics

    from .fit import fresh_sample, predicted_sample_time

    vals = []
    for s in samples:
        if s.family not in families or s.dtype != "fp32" or not fresh_sample(s):
            continue
        extra = s.time_s - predicted_sample_time(s, res)
        vals.append(max(0.0, extra) * res.speedup(s.threads) / written_bytes(s))
    return statistics.median(vals) if vals else None
