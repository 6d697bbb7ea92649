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
  fitted bandwidth, from streaming kernels with freshly allocated outputs over 16 KiB..128 MiB tensors;
- conv/narrow, conv/1x1/narrow: ungrouped convolutions that underfill oneDNN's 16-channel blocks;
- conv/grouped (oneDNN's 16/8/4-channel-blocked jit kernels) and conv/grouped/gemm (its im2col + GEMM path), one
  sample per pass, FLOPs counted as executed work (model FLOPs x ops.conv.grouped_path's lane factor);
- rnn/gemm/lstm (and rnn/gemm/recurrent/lstm): oneDNN's fused LSTM, a GEMM efficiency and a gate-math rate
  (calibration.lstm).

Every curve is also fitted per thread count ("<key>@t<n>", hardware.traits.for_threads), since caches and memory
bandwidth are shared by the cores. Buffer costs (traits): a buffer of at least FRESH_BYTES is mapped afresh on every
call (page faults, fitted from the fresh streams of that size); a smaller one from COLD_BYTES_MIN up is cold heap
memory (write-allocate from DRAM, fitted from streams writing long-unused vs just-freed outputs, per thread count).

Only microbenchmark samples are fitted (their `ekey` names the class); no validation network is used.
"""

from __future__ import annotations

import re
from typing import Sequence

from ..hardware.traits import THREADS_SEP  # "<key>@t<threads>": fitted at that thread count only

# memory-work roots whose bandwidth curve is the fresh-allocation streaming curve
STREAM_ROOTS = ("elementwise", "norm", "pool")
STREAM_KEY = "elementwise"  # the key the streaming samples carry
THIN = 16  # a GEMM is thin when min(M, N) <= THIN (as the dense cost rule keys it)
from .lstm import LSTM_KEY  # the fused-LSTM samples: fitted apart (calibration.lstm)


def conv_ekey(c_in: int, c_out: int, kernel: int, stride: int, groups: int, stage: str = "forward") -> str:
    """Efficiency key of one pass of a stride-1 calibration convolution, as the conv cost rule keys it
    (ops.conv.conv_key and pass_key: conv/depthwise, conv/grouped, conv/grouped/gemm, conv/1x1, conv/narrow,
    conv/1x1/narrow); "" = the plain conv curve. Strided convs use stage factors: ""."""
    from ..ops.conv import conv_key, pass_key

    if stride != 1:
        return ""
    s = _calibration_shape(c_in, c_out, kernel, groups)
    key = pass_key(conv_key(s), s, stage)
    return "" if key == "conv" else key


def conv_executed(c_in: int, c_out: int, kernel: int, groups: int, stage: str) -> float:
    """Executed work per model FLOP of one pass of a calibration convolution (ops.conv.grouped_path): its samples
    count executed FLOPs, so the grouped curves are efficiencies of the work the kernels execute."""
    from ..ops.conv import grouped_path

    return grouped_path(_calibration_shape(c_in, c_out, kernel, groups), stage)[1]


def _calibration_shape(c_in: int, c_out: int, kernel: int, groups: int):
    from ..ops.base import ConvShape

    return ConvShape(1, c_in, c_out, (1, 1), (1, 1), (kernel, kernel), (1, 1), groups)


def gemm_ekey(m: int, n: int) -> str:
    """matmul/thin for a GEMM with min(M, N) <= THIN, else "" (the matrix curve)."""
    return "matmul/thin" if min(m, n) <= THIN else ""


def fit_keyed_curves(samples: Sequence, res, overhead: float, bins_per_decade: float) -> dict[str, list]:
    """Per efficiency key of the samples: binned (size, efficiency) points, as the family curves are fitted
    (per bin the median per thread count, then their geometric mean). With several thread counts, each key and
    each family curve (matrix, conv, memory) also gets one curve per thread count, "<key>@t<threads>"
    (hardware.traits.for_threads picks them): caches and memory are shared by the cores, so streaming and
    memory-bound kernels do not speed up with threads as compute does. The streaming curves are written under
    every STREAM_ROOTS key."""
    from .fit import FIT_FAMILIES, bin_curve, efficiency_pairs

    out: dict[str, list] = {}
    for ekey in sorted({s.ekey for s in samples if s.ekey and s.ekey != LSTM_KEY}) + [f for f in FIT_FAMILIES]:
        fam = ekey if ekey in FIT_FAMILIES else next(s.family for s in samples if s.ekey == ekey)
        pairs = efficiency_pairs(samples, fam, "fp32" if fam != "memory" else None, res, overhead,
                                 ekey="" if ekey in FIT_FAMILIES else ekey)
        if not pairs:
            continue
        if ekey not in FIT_FAMILIES:
            res.n_samples[ekey] = len(pairs)
            out[ekey] = bin_curve(pairs, bins_per_decade)
        threads = sorted({t for _, _, t in pairs})
        for t in threads if len(threads) > 1 else ():
            out[f"{ekey}{THREADS_SEP}{t}"] = bin_curve([p for p in pairs if p[2] == t], bins_per_decade)
    for name in [k for k in out if k.split(THREADS_SEP)[0] == STREAM_KEY]:
        for root in STREAM_ROOTS:
            out[root + name[len(STREAM_KEY):]] = list(out[name])
    return out


FRESH_BYTES = 32 * 2**20  # glibc's largest dynamic mmap threshold: bigger buffers are mapped (and faulted) per call
# buffers from this size up are cold in a training step (a core's L2 on current x86 server cores is 1-2 MiB: smaller
# buffers are re-used by the allocator while still cached)
COLD_BYTES_MIN = 2**20
_COLD_LABEL = re.compile(r"^cold (relu|add) (\d+) fp32$")


def fit_cold_cost(samples: Sequence) -> dict[int, float] | None:
    """Per thread count: the extra seconds per written byte of a cold output buffer, the median over sizes and ops
    of (time of the cold-output stream - time of the same stream writing a just-freed output) / 4n bytes (the
    cold stream's family is "cold"; its pair is the "fresh <op> <n>" sample). None without such pairs."""
    import statistics

    warm = {(s.label.removeprefix("fresh "), s.threads): s.time_s for s in samples if s.label.startswith("fresh ")}
    per_t: dict[int, list[float]] = {}
    for s in samples:
        m = _COLD_LABEL.match(s.label) if s.family == "cold" else None
        w = warm.get((s.label.removeprefix("cold "), s.threads)) if m else None
        if w is not None:
            per_t.setdefault(s.threads, []).append(max(0.0, s.time_s - w) / (4.0 * int(m.group(2))))
    return {t: statistics.median(v) for t, v in sorted(per_t.items())} or None
_CONV_LABEL = re.compile(r"^conv n(\d+) c(\d+) (\d+)x\d+ k(\d+) (\d+)x\d+(?:/(\d+))?(?: g(\d+))? "
                         r"(fwd|bwd|bwd_data|bwd_weight)$")
_CONV_PASSES = {"fwd": ("fwd",), "bwd": ("bwd_data", "bwd_weight"), "bwd_data": ("bwd_data",),
                "bwd_weight": ("bwd_weight",)}
_FRESH_LABEL = re.compile(r"^fresh (relu|add) (\d+) fp32$")


def written_bytes(s) -> float:
    """Bytes of the buffers of a sample that the allocator maps afresh on every call (each at least FRESH_BYTES),
    read from the grid's own labels: a fresh streaming kernel's 4n-byte output; a convolution's buffers per pass
    as the conv cost rule lists them (ops.conv.conv_buffers: blocked-layout copies and outputs). Else the
    sample's `written` field when it reaches FRESH_BYTES; other samples: 0."""
    from ..ops.base import fresh_allocs
    from ..ops.conv import blocked_pad, conv_buffers

    m = _FRESH_LABEL.match(s.label)
    if m:
        return fresh_allocs((4.0 * int(m.group(2)),), FRESH_BYTES)
    m = _CONV_LABEL.match(s.label)
    if not m:
        return s.written if s.written >= FRESH_BYTES else 0.0
    nb, c, hw, ko, kr = (int(m.group(i)) for i in range(1, 6))
    st, g = int(m.group(6) or 1), int(m.group(7) or 1)
    pads = (blocked_pad(c, g, True), blocked_pad(ko, g, False))  # the label pattern matches no transposed conv
    bufs = conv_buffers(4.0 * nb * c * hw * hw, 4.0 * nb * ko * (hw // st) ** 2, 4.0 * ko * (c // g) * kr * kr, *pads)
    return sum(fresh_allocs(bufs[p], FRESH_BYTES) for p in _CONV_PASSES[m.group(8)])


def _fresh_extras(samples: Sequence, res, families: tuple[str, ...]) -> list[tuple[int, float]]:
    """(threads, extra wall seconds per written byte) of each fp32 sample of `families` whose outputs reach
    FRESH_BYTES: (time - the time its curves predict) / written bytes, at least 0."""
    from .fit import fresh_sample, predicted_sample_time

    return [(s.threads, max(0.0, s.time_s - predicted_sample_time(s, res)) / written_bytes(s)) for s in samples
            if s.family in families and s.dtype == "fp32" and fresh_sample(s)]


def fit_fresh_wall(samples: Sequence, res, families: tuple[str, ...] = ("memory",)) -> dict[int, float] | None:
    """Per thread count: the median extra wall seconds per freshly mapped output byte of the samples of `families`
    (_fresh_extras; None without such samples). Faulting does not speed up with threads as compute does (the
    kernel serialises part of it): measured here 0.35 ns/B at 1 thread and 0.22 at 2, a 1.6x speedup where
    compute gets 1.9x."""
    import statistics

    per_t: dict[int, list[float]] = {}
    for t, v in _fresh_extras(samples, res, families):
        per_t.setdefault(t, []).append(v)
    return {t: statistics.median(v) for t, v in sorted(per_t.items())} or None


def fit_fresh_cost(samples: Sequence, res, families: tuple[str, ...] = ("conv", "memory")) -> float | None:
    """One thread's extra seconds per freshly mapped output byte: the median over the samples of `families` of
    their extra (_fresh_extras) x thread speedup (None without such samples): the cost as if it spread over
    threads as compute does (the profile's fallback where no per-thread-count cost was measured)."""
    import statistics

    vals = [v * res.speedup(t) for t, v in _fresh_extras(samples, res, families)]
    return statistics.median(vals) if vals else None
