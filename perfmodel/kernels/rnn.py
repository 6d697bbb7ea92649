"""Recurrent layers as the kernels a library runs per time step (the input projection W.x is excluded).

Per step, forward runs the recurrent GEMM [gates*H, H] x [H, B] and a pointwise kernel; backward-data runs
[H, gates*H] x [gates*H, B] and its pointwise kernel; backward-weights is one GEMM over all steps,
[gates*H, B*T] x [B*T, H]. Each step also pays the stack's per-step overhead (launches, dependency). With
a persistent kernel (stack.rnn_persistent) whose weights fit in the register files, the weights are read
from DRAM once instead of once per step.
"""

from __future__ import annotations

import numpy as np

from .gemm import dtype_parts, gemm_compute_s, gemm_time_s
from .schema import GpuArch, SoftwareStack

GATES = {"vanilla": 1, "lstm": 4, "gru": 3}
PHASES = ("fwd", "bwd_data", "bwd_weights")


def rnn_model_flops(cell: str, hidden, batch, timesteps):
    """Recurrent-GEMM FLOPs of one phase (what DeepBench counts)."""
    return 2.0 * GATES[cell] * np.asarray(hidden, float) ** 2 * batch * timesteps


def _pointwise_s(cell: str, H, B, dtype, arch: GpuArch, stack: SoftwareStack):
    _, eb = dtype_parts(dtype)
    g = GATES[cell]
    nbytes = eb * B * H * (2 * g + 3)  # gate pre-activations in/out, state in/out, output
    return nbytes / (arch.dram_Bps(stack.achievable.memory_bandwidth))


def step_s(M, N, K, dtype, arch: GpuArch, stack: SoftwareStack):
    """One recurrent step's GEMM [M, K] x [K, N], weights [M, K]: max(compute, weights streamed at the RNN
    bandwidth fraction) + overhead.

    A persistent kernel whose weights fit in the register files (stack.rnn_persistent) does not re-read them.
    """
    _, eb = dtype_parts(dtype)
    a = stack.achievable
    comp = gemm_compute_s(M, N, K, dtype, arch, stack, cls="rnn")
    bw = arch.memory_bandwidth_Bps * a.rnn_bandwidth(dtype)
    mem = eb * (M * K + K * N + M * N) / bw
    if stack.rnn_persistent:
        fits = M * K * eb <= arch.sm_count * arch.registers_per_sm * 4 * 0.5
        mem = np.where(fits, eb * (K * N + M * N) / bw, mem)
    return a.kernel_overhead_s + np.maximum(comp, mem)


def rnn_time_s(cell: str, phase: str, hidden, batch, timesteps, dtype: str, arch: GpuArch,
               stack: SoftwareStack):
    """Time of one phase of a `cell` layer (vanilla, lstm, gru) over `timesteps` steps."""
    if cell not in GATES:
        raise ValueError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
    H, B, T = (np.asarray(x, float) for x in (hidden, batch, timesteps))
    g = GATES[cell]
    step_over = stack.achievable.rnn_step_overhead_s
    if phase == "fwd":
        per = step_s(g * H, B, H, dtype, arch, stack) + _pointwise_s(cell, H, B, dtype, arch, stack)
        return T * (per + step_over)
    if phase == "bwd_data":
        per = step_s(H, B, g * H, dtype, arch, stack) + _pointwise_s(cell, H, B, dtype, arch, stack)
        return T * (per + step_over)
    if phase == "bwd_weights":
        return gemm_time_s(g * H, H, B * T, dtype, arch, stack, cls="gemm")
    if phase == "bwd":
        return sum(rnn_time_s(cell, p, H, B, T, dtype, arch, stack) for p in ("bwd_data", "bwd_weights"))
    raise ValueError(f"phase must be one of {PHASES + ('bwd',)}, got {phase!r}")
