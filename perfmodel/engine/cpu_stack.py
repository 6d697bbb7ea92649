"""Rows of a WorkTable as a CPU software stack runs them (Rates.cpu_stack, hardware_profiles/stacks/pytorch-cpu.yaml).

Two rewrites, each only where the stack's data asks for it:
- fused attention (stack.fused_attention with a cpu_attention block): engine.cpu_attention;
- recurrent cells (stack.cpu_rnn_steps): the ops price one fused gate kernel per time step and layer-direction
  (cuDNN's); PyTorch's CPU RNN and GRU run their cell as separate aten kernels (aten/src/ATen/native/RNN.cpp,
  SimpleCell and GRUCell: add_, sigmoid_, mul_, tanh_, ... over [batch, hidden] tensors, autograd's backward of each,
  the chunk backward's cat, the per-step weight and bias gradient accumulation). A cell row (key
  "elementwise/rnn-cell" with an ops.recurrent.CellShape) takes the time of the stack's per-step list for its
  cell and pass, each kernel at the calibrated rate of its op and with its own dispatch; a cell the stack does not
  list (the LSTM: oneDNN's fused primitive) keeps the ops' row. Autograd also computes the recurrent weight
  gradient step by step (dW_hh += dgates^T h: one [gH, batch] x [batch, H] GEMM per step, K = batch), where the ops
  count one GEMM over the whole sequence: for a listed cell, the layer's weight-gradient row ("rnn/gemm" with
  M = gates x hidden) keeps dW_ih as one GEMM and prices dW_hh as those per-step GEMMs.

A kernel over fewer than GRAIN_SIZE elements runs on one thread (ATen's TensorIterator goes parallel only from
at::internal::GRAIN_SIZE = 32768 elements: aten/src/ATen/TensorIterator.cpp, ATen/Parallel.h): its arithmetic takes
one core's share of the elementwise rates (which scale with the threads); its bandwidth stays the per-thread-count
curve's, whose small-size points were measured the same way.
"""

from __future__ import annotations

import numpy as np

from dataclasses import replace

from ..errors import InputError
from ..ops.base import DTYPE_BYTES, GemmShape, Work
from ..ops.recurrent import STEP_OPS, STEP_WIDTHS, CellShape, step_works
from .cpu_attention import Price, cpu_attention_rows

CELL_KEY = "elementwise/rnn-cell"
GRAIN_SIZE = 32768  # at::internal::GRAIN_SIZE: elementwise kernels below this many elements run serially


def one_core(r):
    """`r` with its elementwise arithmetic at one core's share (Rates.thread_factor); bandwidth unchanged."""
    f = r.thread_factor if r.thread_factor > 1 else 1.0
    if f == 1.0:
        return r
    ew = {k: v / f for k, v in r.elementwise.items()} if r.elementwise else r.elementwise
    return replace(r, elementwise=ew, vector_flops=r.vector_flops / f)


def check_steps(steps: dict) -> None:
    """InputError naming the entry when a stack's cpu_rnn_steps names an unknown op or width."""
    for cell, passes in steps.items():
        for name in (k for kernels in passes.values() for k in kernels):
            op, _, width = name.partition("@")
            if op not in STEP_OPS or (width or "h") not in STEP_WIDTHS:
                raise InputError(f"cpu_rnn_steps.{cell}: unknown kernel '{name}'; ops {sorted(STEP_OPS)}, "
                                 f"widths {list(STEP_WIDTHS)}")


def cell_seconds(shape: CellShape, kernels: dict[str, float], steps: int, r, price: Price) -> tuple[float, ...]:
    """(roof, compute, memory, dispatches) of `steps` time steps of the per-step kernel list `kernels`."""
    roof = comp = mem = 0.0
    n = 0
    serial = one_core(r)
    for op, elements, w in step_works(shape, kernels, steps, DTYPE_BYTES.get(r.dtype, 4)):
        x = price((w,), serial if elements < GRAIN_SIZE else r, op)
        roof, comp, mem, n = roof + float(x["roof"][0]), comp + float(x["compute"][0]), mem + float(x["memory"][0]), \
            n + w.kernels
    return roof, comp, mem, float(n)


def _weight_grad_row(t, i: int, sh: CellShape) -> int | None:
    """The weight-gradient row of cell row i's layer: backward "rnn/gemm" with M = gates x hidden, K = batch x T."""
    gh = sh.gates * sh.hidden
    for j in np.flatnonzero(t.layer == t.layer[i]):
        w = t.shapes[j]
        if t.keys[j] == "rnn/gemm" and t.stage[j] > 0 and isinstance(w, GemmShape) and w.m == gh \
                and w.k % sh.batch == 0 and w.k > sh.batch:
            return int(j)
    return None


def weight_grad_parts(t, j: int, sh: CellShape, steps: int, r, price: Price) -> tuple[float, ...]:
    """(roof, compute, memory, dispatches) of weight-gradient row j with dW_hh as `steps` per-step GEMMs."""
    gh, b = sh.gates * sh.hidden, DTYPE_BYTES.get(r.dtype, 4)
    hh = 2.0 * gh * sh.hidden * sh.batch * steps
    whole = float(t.flops[j])
    if hh >= whole:
        return float("nan"), 0.0, 0.0, 0.0
    w = t.shapes[j]
    n_ih = max(int(round(t.kernels[j])) // 2, 1)
    ih = Work("matrix", flops=whole - hh, bytes_read=float(t.bytes[j]) * (1 - hh / whole), kernels=n_ih,
              efficiency_key="rnn/gemm", shape=w)
    per = Work("matrix", flops=hh, bytes_read=steps * (gh + sh.hidden) * sh.batch * b,
               bytes_written=steps * gh * sh.hidden * b, kernels=steps, efficiency_key="rnn/gemm",
               shape=GemmShape(gh, sh.hidden, sh.batch), allocs=(gh * sh.hidden * b,))
    x = price((ih, per), r, None)
    return float(x["roof"].sum()), float(x["compute"].sum()), float(x["memory"].sum()), float(n_ih + steps)


def cpu_rnn_rows(t, r, roof, compute, memory, kern, scale, price: Price):
    """(roof, compute, memory, kernels) with every listed cell row priced as the stack's per-step kernels and its
    layer's weight-gradient row with per-step dW_hh GEMMs."""
    steps = r.cpu_stack.cpu_rnn_steps if r.cpu_stack is not None else {}
    rows = [i for i, (k, sh) in enumerate(zip(t.keys, t.shapes))
            if k == CELL_KEY and isinstance(sh, CellShape) and sh.cell in steps] if steps and t.keys else []
    if not rows:
        return roof, compute, memory, kern
    roof, compute, memory, kern = (np.array(a, dtype=float, copy=True) for a in (roof, compute, memory, kern))
    for i in rows:
        sh = t.shapes[i]
        kernels = steps[sh.cell].get("forward" if t.stage[i] == 0 else "backward", {})
        s = 1.0 if scale is None else float(scale[t.layer[i]])
        ro, co, me, n = cell_seconds(sh, kernels, int(t.kernels[i]), r, price)
        roof[i], compute[i], memory[i], kern[i] = ro * s, co * s, me * s, n
        j = _weight_grad_row(t, i, sh) if t.stage[i] > 0 else None
        if j is not None:
            ro, co, me, n = weight_grad_parts(t, j, sh, int(t.kernels[i]), r, price)
            if not np.isnan(ro):
                roof[j], compute[j], memory[j], kern[j] = ro * s, co * s, me * s, n
    return roof, compute, memory, kern


def cpu_stack_rows(t, r, roof, compute, memory, kern, scale, price: Price):
    """Both rewrites of the module docstring over table `t` under rates `r` (unchanged rows elsewhere)."""
    if t.keys is None or t.shapes is None:
        return roof, compute, memory, kern
    roof, compute, memory, kern = cpu_attention_rows(t, r, roof, compute, memory, kern, scale, price)
    return cpu_rnn_rows(t, r, roof, compute, memory, kern, scale, price)
