"""Microbenchmark makers: each returns make(device, dtype) -> (fn, flops, bytes, kernels) for one sample."""

from __future__ import annotations

import itertools
import math
import mmap
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ...calibration.grid import (
    CONV_SHAPES, CONV_STAGE, KERNEL_CONVS, QUICK_CONV, QUICK_KERNEL_CONVS, SMALL_GEMM_SHAPES, cold_sizes, conv_passes,
    gemm_shapes,
    memory_sizes, stream_sizes,
    thin_gemm_shapes,
)
from ...calibration.kernels import FRESH_BYTES, STREAM_KEY, conv_ekey, conv_executed, gemm_ekey
from ...calibration.lstm import LSTM_KEY, lstm_label
from ...calibration.grid import OPT_TENSORS, optimizer_label
from ...calibration.threads import gemm_label
from ...ops.norm import stream_key


@dataclass(frozen=True)
class Bench:
    """One benchmark to run at one thread count: `make(device, dtype)` returns (fn, flops, bytes, kernels)."""

    family: str
    label: str
    dtype: str
    make: Callable[[str, torch.dtype], tuple[Callable[[], Any], float, float, int]]
    threads: int = 1
    key: str = ""  # elementwise benchmarks: the Efficiency.elementwise key
    ekey: str = ""  # efficiency key of a kernel class (calibration.kernels): fits Efficiency.curves[ekey]


_TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


SETTLE_BYTES = FRESH_BYTES - 2 * 4096  # mapped with its header and alignment slack: a chunk just under 32 MiB


def settle_allocator(device: str) -> int:
    """Bring glibc's allocator to the state of a training process in steady state before anything is timed; returns
    the bytes allocated and freed (0 off the CPU).

    A fresh process maps every buffer of at least 128 KiB afresh (mmap threshold) and trims the heap's free top
    beyond 128 KiB, so each call's new tensors fault their pages again. glibc raises the mmap threshold to the size
    of a freed mapped chunk (at most 32 MiB) and the trim threshold to twice that; a training step has freed such a
    chunk after its first step, a calibration run only when some benchmark happens to. One torch buffer of just
    under 32 MiB, allocated and freed (never touched: nothing faults), raises both thresholds to their steady
    values first, so every sample sees the same allocator whatever ran before it. Buffers of 32 MiB and more are
    still mapped afresh on every call (the fresh-buffer samples keep their meaning)."""
    if device != "cpu":
        return 0
    buf = torch.empty(SETTLE_BYTES, dtype=torch.uint8)
    del buf
    return SETTLE_BYTES


def _gemm(m: int, k: int, n: int, layout: str):
    """layout nn: A[m,k] B[k,n]; nt: A[m,k] B[n,k]^T (a Linear forward); tn: A[k,m]^T B[k,n] (a weight gradient)."""

    def make(device: str, dt: torch.dtype):
        a = torch.randn(k, m, device=device, dtype=dt).t() if layout == "tn" else torch.randn(m, k, device=device, dtype=dt)
        b = torch.randn(n, k, device=device, dtype=dt).t() if layout == "nt" else torch.randn(k, n, device=device, dtype=dt)
        out = torch.empty(m, n, device=device, dtype=dt)
        eb = a.element_size()
        return (lambda: torch.mm(a, b, out=out)), 2.0 * m * k * n, float((m * k + k * n + m * n) * eb), 1

    return make


def _conv(nb: int, c: int, hw: int, k_out: int, kernel: int, stride: int, pad: int, transposed: bool, which: str,
          groups: int = 1, executed: float = 1.0):
    """Forward (`fwd`) or backward (`bwd`: data and weight gradients in one call, as autograd asks for them;
    `bwd_data`, `bwd_weight`: one of them) of a bias-free convolution. The backward sample counts two kernels of
    the forward's FLOPs each, as the conv cost rule does; FLOPs x `executed` (ops.conv.grouped_path)."""

    def make(device: str, dt: torch.dtype):
        x = torch.randn(nb, c, hw, hw, device=device, dtype=dt)
        if transposed:
            w = torch.randn(c, k_out, kernel, kernel, device=device, dtype=dt)
            y = F.conv_transpose2d(x, w, stride=stride, padding=pad)
        else:
            w = torch.randn(k_out, c // groups, kernel, kernel, device=device, dtype=dt)
            y = F.conv2d(x, w, stride=stride, padding=pad, groups=groups)
        dy = torch.randn_like(y)
        macs = (x.numel() if transposed else y.numel()) * (k_out if transposed else c // groups) * kernel * kernel
        macs *= executed
        eb = x.element_size()
        n_in, n_out, n_w = x.numel(), y.numel(), w.numel()
        args = ([stride] * 2, [pad] * 2, [1, 1], transposed, [0, 0], groups)
        if which == "fwd":
            if transposed:
                fn = lambda: F.conv_transpose2d(x, w, stride=stride, padding=pad)  # noqa: E731
            else:
                fn = lambda: F.conv2d(x, w, stride=stride, padding=pad, groups=groups)  # noqa: E731
            return fn, 2.0 * macs, float((n_in + n_w + n_out) * eb), 1
        if which == "bwd_data":
            fn = lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, [True, False, False])  # noqa: E731
            return fn, 2.0 * macs, float((n_out + n_w + n_in) * eb), 1
        if which == "bwd_weight":
            fn = lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, [False, True, False])  # noqa: E731
            return fn, 2.0 * macs, float((n_out + n_in + n_w) * eb), 1
        fn = lambda: torch.ops.aten.convolution_backward(dy, x, w, None, *args, [True, True, False])  # noqa: E731
        return fn, 4.0 * macs, float((2 * n_out + n_w + n_in + n_in + n_w) * eb), 2

    return make


def _mem(n: int, op: str):
    def make(device: str, dt: torch.dtype):
        a = torch.randn(n, device=device, dtype=torch.float32)
        out = torch.empty_like(a)
        if op == "copy":
            return (lambda: out.copy_(a)), 0.0, 8.0 * n, 1
        b = torch.randn(n, device=device, dtype=torch.float32)
        return (lambda: torch.add(a, b, out=out)), float(n), 12.0 * n, 1

    return make


COLD_BYTES = 96 * 2**20  # three times the last-level cache of a typical server slice


def _mapped_output(n: int) -> tuple[mmap.mmap, torch.Tensor]:
    """n fp32 elements on private anonymous pages mapped now (faulted on first write), as glibc maps a buffer of
    FRESH_BYTES or more when no free heap chunk fits it; close the map after dropping the tensor."""
    m = mmap.mmap(-1, 4 * n, flags=mmap.MAP_PRIVATE)
    return m, torch.frombuffer(m, dtype=torch.float32)


def _stream(n: int, op: str):
    """A streaming kernel with a freshly allocated output, as every activation of a training step is: relu
    (read n, write n) or add (read 2n, write n) of fp32 tensors; relu counts its n FLOPs, add its n. An output of
    FRESH_BYTES or more is mapped afresh for every call (_mapped_output): what the fresh-buffer cost means. Left to
    the allocator it would come from whatever free heap chunk earlier samples left (faulted in one run, not in the
    next: the fitted cost moved 1.9e-10 .. 3.7e-10 s/B between runs)."""

    def make(device: str, dt: torch.dtype):
        # inputs rotate over copies filling COLD_BYTES, so each call reads them from DRAM as a training step
        # does (an activation was written layers ago), not from the caches
        copies = max(1, math.ceil(COLD_BYTES / (4.0 * n)))
        xs = [torch.randn(n, device=device, dtype=torch.float32) for _ in range(copies)]
        turn = itertools.cycle(range(copies))
        b = torch.randn(n, device=device, dtype=torch.float32) if op == "add" else None
        if device == "cpu" and 4 * n >= FRESH_BYTES:
            def mapped():
                m, out = _mapped_output(n)
                x = xs[next(turn)]
                torch.clamp_min(x, 0.0, out=out) if b is None else torch.add(x, b, out=out)
                del out
                m.close()

            return mapped, float(n), (8.0 if b is None else 12.0) * n, 1
        if b is None:
            return (lambda: torch.relu(xs[next(turn)])), float(n), 8.0 * n, 1
        return (lambda: torch.add(xs[next(turn)], b)), float(n), 12.0 * n, 1

    return make


def _stream_cold(n: int, op: str):
    """The streaming kernel of _stream writing into outputs that rotate over COLD_BYTES too (preallocated, so not
    faulted): each output line was last touched long ago, as a training step's heap buffers were, so the write
    first reads it from DRAM. Paired with the _stream sample of the same size it gives the cold-buffer cost."""

    def make(device: str, dt: torch.dtype):
        copies = max(1, math.ceil(COLD_BYTES / (4.0 * n)))
        xs = [torch.randn(n, device=device, dtype=torch.float32) for _ in range(copies)]
        outs = [torch.empty(n, device=device, dtype=torch.float32) for _ in range(copies)]
        turn = itertools.cycle(range(copies))
        if op == "relu":
            def relu():
                i = next(turn)
                return torch.clamp_min(xs[i], 0.0, out=outs[(i + copies // 2) % copies])

            return relu, float(n), 8.0 * n, 1
        b = torch.randn(n, device=device, dtype=torch.float32)

        def add():
            i = next(turn)
            return torch.add(xs[i], b, out=outs[(i + copies // 2) % copies])

        return add, float(n), 12.0 * n, 1

    return make


# (batch, steps, input width, hidden): single-layer LSTMs with hidden sizes from 64 to 512, so that the gate math
# (per hidden unit) and the GEMMs (per hidden unit x (width + hidden)) separate (calibration.lstm); every buffer
# below FRESH_BYTES and the heap the call uses below the settled trim threshold, so nothing is faulted (0 minor
# faults counted per call): batch x steps x hidden x 4 bytes of at most 1.6 MB (oneDNN's workspace is 15.6 times
# that: 24.5 MB). Twice that faulted 19-29 MB per call here and ran up to 3x slower, which a flat efficiency took
# for slow GEMMs
LSTM_SHAPES = ((384, 16, 32, 64), (256, 16, 64, 96), (32, 48, 64, 128), (192, 16, 128, 128), (128, 16, 64, 192),
               (64, 24, 256, 256), (64, 16, 128, 384), (48, 16, 512, 512))


def _lstm(nb: int, steps: int, width: int, hidden: int):
    """Forward and backward of one nn.LSTM layer (inputs needing gradients): on CPU PyTorch runs oneDNN's fused
    RNN primitive. Counted as the LSTM cost rule's GEMM FLOPs (ekey rnn/gemm/lstm); calibration.lstm fits a GEMM
    efficiency and a gate-math rate over all these samples."""

    def make(device: str, dt: torch.dtype):
        from ...graph.io import NetworkBuilder
        from ...ops.base import COST_RULES

        b = NetworkBuilder("calibrate-lstm")
        b.input("x", shape=[steps, width])
        b.layer("lstm", "rnn", hidden=hidden)
        cost = COST_RULES["lstm"](b.build()["rnn"], nb, 4)
        flops = sum(w.flops for st in ("forward", "backward_data", "backward_weight") for w in cost.stage(st)
                    if w.family == "matrix")
        mod = torch.nn.LSTM(width, hidden, batch_first=True).to(device)
        x = torch.randn(nb, steps, width, device=device, requires_grad=True)
        gy = torch.randn(nb, steps, hidden, device=device)
        def fn():
            with torch.enable_grad():  # the runner disables autograd for matrix samples
                torch.autograd.backward(mod(x)[0], gy)

        return fn, float(flops), 0.0, 1

    return make


DISPATCH_CHAIN = 64


def _dispatch(kind: str):
    """Chains of tiny ops with autograd, forward + backward: per-op dispatch cost as in a training step.

    kernels counted as the cost rules count them: relu 1 forward + 1 backward; dense with bias
    1 forward + 1 backward-data + 2 backward-weight (GEMM and bias reduction); plus sum and its backward.
    """

    def make(device: str, dt: torch.dtype):
        if kind == "relu":
            x = torch.randn(4, device=device, requires_grad=True)

            def fn():
                y = x
                for _ in range(DISPATCH_CHAIN):
                    y = torch.relu(y)
                y.sum().backward()

            return fn, 0.0, 0.0, 2 * DISPATCH_CHAIN + 2
        ws = [torch.randn(4, 4, device=device, requires_grad=True) for _ in range(DISPATCH_CHAIN // 2)]
        bs = [torch.randn(4, device=device, requires_grad=True) for _ in range(DISPATCH_CHAIN // 2)]
        x = torch.randn(2, 4, device=device, requires_grad=True)

        def fn():
            y = x
            for w, b in zip(ws, bs):
                y = F.linear(y, w, b)
            y.sum().backward()

        return fn, 0.0, 0.0, 4 * (DISPATCH_CHAIN // 2) + 2

    return make


def _plain_dispatch():
    def make(device: str, dt: torch.dtype):
        x = torch.randn(4, device=device)
        return (lambda: torch.relu(x)), 0.0, 32.0, 1

    return make


# Elementwise, normalisation and pooling ops, each timed forward and backward (as autograd runs them) on a
# generic shape at two sizes: (op, extra fields, per-sample shape, batches). FLOPs come from the op's own
# cost rule, so the fitted per-op rate (Efficiency.elementwise) is consistent with how predictions count.
ELEMENTWISE_OPS: tuple[tuple[str, dict, tuple[int, ...], tuple[int, ...]], ...] = (
    ("relu", {}, (40, 28, 28), (12, 48)),
    ("leaky_relu", {"slope": 0.2}, (40, 28, 28), (12, 48)),
    ("sigmoid", {}, (40, 28, 28), (12, 48)),
    ("tanh", {}, (40, 28, 28), (12, 48)),
    ("gelu", {}, (72, 640), (8, 32)),
    ("softmax", {}, (72, 640), (8, 32)),
    ("layernorm", {}, (72, 640), (8, 32)),
    ("batchnorm", {}, (40, 28, 28), (12, 48)),
    ("dropout", {"p": 0.2}, (72, 640), (8, 32)),
    ("maxpool2d", {"kernel": 2}, (40, 28, 28), (12, 48)),
    ("avgpool2d", {"kernel": 2}, (40, 28, 28), (12, 48)),
    ("global_avgpool", {}, (40, 28, 28), (12, 48)),
    ("add", {}, (40, 28, 28), (12, 48)),
    ("mul", {}, (40, 28, 28), (12, 48)),
)


# Normalisations' forward and backward as memory streams with their own bandwidth curves (ops.norm.stream_key): from
# in-cache tensors to tensors far beyond the caches (about 1.5, 6, 24 MB per tensor; the last below glibc's 32 MiB mmap
# threshold, so no sample pays page faults a training step's heap tensors do not): (op, per-sample shape, batches)
NORM_STREAMS = (("batchnorm", (40, 28, 28), (12, 48, 192)), ("layernorm", (72, 640), (8, 32, 128)))

QUICK_ELEMENTWISE_BATCH = 0  # quick grid: the smaller size only


def _elementwise(op: str, fields: dict, shape: tuple[int, ...], batch: int, backward: bool):
    """Forward (with autograd recording) or backward (torch.autograd.grad, no accumulation) of one op layer."""

    def make(device: str, dt: torch.dtype):
        from ...graph.io import NetworkBuilder
        from ...ops.base import COST_RULES
        from ..to_module import to_module

        b = NetworkBuilder(f"calibrate-{op}")
        b.input("x", shape=list(shape))
        ins = ["x"]
        if op in ("add", "mul"):
            b.input("x2", shape=list(shape))
            ins = ["x", "x2"]
        b.layer(op, "op", inputs=ins, **fields)
        g = b.build()
        layer = g["op"]
        cost = COST_RULES[op](layer, batch, 4)  # the full rule: backward-data included
        mod = to_module(g).to(device)
        mod.train()
        xs = {n: torch.randn(batch, *shape, device=device, requires_grad=True) for n in ins}
        params = [p for p in mod.parameters() if p.requires_grad]
        if not backward:
            works = cost.forward
            fn = lambda: mod(xs)["op"]  # noqa: E731
        else:
            works = cost.backward_data + cost.backward_weight
            y = mod(xs)["op"]
            gy = torch.randn_like(y)
            wrt = list(xs.values()) + params
            fn = lambda: torch.autograd.grad(y, wrt, gy, retain_graph=True)  # noqa: E731
        flops = sum(w.flops for w in works if w.family == "memory")
        nbytes = sum(w.bytes for w in works if w.family == "memory")
        kernels = sum(w.kernels for w in works if w.family == "memory")
        return fn, float(flops), float(nbytes), max(1, kernels)

    return make




def _optimizer(name: str):
    """One optimizer step over OPT_TENSORS (a check of the optimizer model, not fitted)."""

    def make(device: str, dt: torch.dtype):
        ps = [torch.nn.Parameter(torch.randn(n, device=device)) for n in OPT_TENSORS]
        for p in ps:
            p.grad = torch.randn_like(p)
        opt = (torch.optim.SGD(ps, lr=1e-3, momentum=0.9) if name == "momentum"
               else torch.optim.Adam(ps, lr=1e-3))
        opt.step()
        from ...optimizers import optimizer_work

        w = optimizer_work(name, sum(OPT_TENSORS), len(OPT_TENSORS), gpu=device != "cpu")
        return opt.step, w.flops, w.bytes, w.kernels

    return make


def build_benches(device: str, thread_counts: list[int], quick: bool, lowp: list[str]) -> list[Bench]:
    """Every benchmark to run, in order: each benchmark at every thread count back to back (so a busy spell on
    a shared machine hits the thread counts of a benchmark alike and the fitted speedups stay sound)."""
    out: list[Bench] = []
    shapes = gemm_shapes(14 if quick else 30)
    convs = [CONV_SHAPES[i] for i in QUICK_CONV] if quick else list(CONV_SHAPES)
    kernel_convs = [KERNEL_CONVS[i] for i in QUICK_KERNEL_CONVS] if quick else list(KERNEL_CONVS)
    thin = thin_gemm_shapes(6 if quick else 14)
    lowp_shapes = [sh for sh in shapes[len(shapes) // 3::3 if quick else 2] if 2.0 * sh[0] * sh[1] * sh[2] <= 5e8]
    for t in thread_counts:
        for op in ("relu", "linear"):
            out.append(Bench("dispatch", f"autograd {op} chain x{DISPATCH_CHAIN}", "fp32", _dispatch(op), t))
        out.append(Bench("dispatch_raw", "plain relu, 4 elements", "fp32", _plain_dispatch(), t))
        for (m, k, n) in SMALL_GEMM_SHAPES + tuple(shapes):
            for layout in ("nn", "nt", "tn"):
                out.append(Bench("matrix", gemm_label(m, k, n, layout), "fp32", _gemm(m, k, n, layout), t, "",
                                 gemm_ekey(m, n)))
        for shp in convs:
            nb, c, hw, ko, kr, st, pd, tr = shp
            ek = "" if tr else conv_ekey(c, ko, kr, st, 1)
            for which, fkey in conv_passes(shp):
                lab = f"{'convT' if tr else 'conv'} n{nb} c{c} {hw}x{hw} k{ko} {kr}x{kr}/{st} {which}"
                out.append(Bench("conv", lab, "fp32", _conv(*shp, which), t, fkey, ek))
        for nb, c, hw, ko, kr, g in kernel_convs:
            grouped = 1 < g < c  # grouped (not depthwise): oneDNN's kernel differs per pass, one sample each
            for which in ("fwd", "bwd_data", "bwd_weight") if grouped else ("fwd", "bwd"):
                stage = CONV_STAGE.get(which, "forward")
                lab = f"conv n{nb} c{c} {hw}x{hw} k{ko} {kr}x{kr} g{g} {which}"
                make = _conv(nb, c, hw, ko, kr, 1, kr // 2, False, which, g, conv_executed(c, ko, kr, g, stage))
                out.append(Bench("conv", lab, "fp32", make, t, "", conv_ekey(c, ko, kr, 1, g, stage)))
        for shp in LSTM_SHAPES[::2] if quick else LSTM_SHAPES:
            out.append(Bench("matrix", lstm_label(*shp), "fp32", _lstm(*shp), t, "", LSTM_KEY))
        for (m, k, n) in thin:
            for layout in ("nn", "nt", "tn"):
                out.append(Bench("matrix", gemm_label(m, k, n, layout), "fp32", _gemm(m, k, n, layout), t, "",
                                 gemm_ekey(m, n)))
        for n in stream_sizes(quick):
            for op in ("relu", "add"):
                out.append(Bench("memory", f"fresh {op} {n} fp32", "fp32", _stream(n, op), t, "", STREAM_KEY))
        for n in cold_sizes(quick):
            for op in ("relu", "add"):
                out.append(Bench("cold", f"cold {op} {n} fp32", "fp32", _stream_cold(n, op), t))
        for n in memory_sizes(quick):
            for op in ("copy", "add"):
                out.append(Bench("memory", f"{op} {n} fp32", "fp32", _mem(n, op), t))
        for dt in lowp:
            for (m, k, n) in lowp_shapes:
                out.append(Bench("matrix", gemm_label(m, k, n, "nt"), dt, _gemm(m, k, n, "nt"), t))
            for shp in convs[2::3]:
                out.append(Bench("conv", f"conv {shp} fwd", dt, _conv(*shp, "fwd"), t))
        if device == "cpu":  # GPU elementwise kernels are bandwidth bound: the memory curve covers them
            for op, fields, shape, batches in ELEMENTWISE_OPS:
                for nb in (batches[:1] if quick else batches):
                    n = nb * math.prod(shape)
                    for bwd in (False, True):
                        key = f"{op}.backward" if bwd else op
                        out.append(Bench("elementwise", f"{key} {n} elements", "fp32",
                                         _elementwise(op, fields, shape, nb, bwd), t, key))
            for op, shape, batches in NORM_STREAMS:
                for nb in (batches[1:2] if quick else batches):
                    n = nb * math.prod(shape)
                    for bwd in (False, True):
                        out.append(Bench("memory", f"{op}{'.backward' if bwd else ''} stream {n} elements", "fp32",
                                         _elementwise(op, {}, shape, nb, bwd), t, "", stream_key(op, bwd)))
        for name in ("momentum", "adam"):
            out.append(Bench("check", optimizer_label(name), "fp32", _optimizer(name), t))
    order = {t: i for i, t in enumerate(thread_counts)}
    per_t: dict[int, list[Bench]] = {}
    for b in out:
        per_t.setdefault(b.threads, []).append(b)
    n = max(len(v) for v in per_t.values())
    return [per_t[t][i] for i in range(n) for t in sorted(per_t, key=order.get) if i < len(per_t[t])]
