"""Optimizer step cost and state size: one registered rule per optimizer, memory-bound over the parameters.

Parameters, gradients and optimizer state are kept in fp32 (PyTorch's default, and AMP's master
weights). An update is the sequence of elementwise passes of PyTorch's default implementation: the
for-loop over tensors on CPUs (`_single_tensor_*`) and the foreach kernels on GPUs (`_multi_tensor_*`)
run the same passes (e.g. Adam: lerp_, mul_, addcmul_, sqrt, div, add_, addcdiv_), each reading and
writing whole tensors; traffic is the sum over the passes (not one fused read-modify-write, which only
`fused=True` does). Found by calibration's optimizer-step check: Adam on 2.2M parameters took 3.8x the
single-pass prediction on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from .ops.base import Work

MASTER_BYTES = 4  # fp32 parameters, gradients and optimizer state
# multi_tensor_apply processes this many tensors per launch in PyTorch's foreach kernels (GPU)
FOREACH_TENSORS_PER_KERNEL = 110


@dataclass(frozen=True, slots=True)
class OptimizerRule:
    """The elementwise passes of one update and the state it keeps."""

    name: str
    state_per_param: int  # fp32 values of state per parameter (momentum buffer, Adam moments)
    passes: tuple[tuple[int, int], ...]  # (fp32 values read, written) per parameter, one entry per pass
    flops_per_param: int

    @property
    def reads_per_param(self) -> int:
        return sum(r for r, _ in self.passes)

    @property
    def writes_per_param(self) -> int:
        return sum(w for _, w in self.passes)

    @property
    def ops_per_tensor(self) -> int:
        """Kernels per parameter tensor (CPU loop) or per foreach chunk (GPU): one per pass."""
        return len(self.passes)


OPTIMIZERS: dict[str, OptimizerRule] = {}


def _register(rule: OptimizerRule) -> None:
    OPTIMIZERS[rule.name] = rule


# p.add_(g, alpha=-lr)
_register(OptimizerRule("sgd", state_per_param=0, passes=((2, 1),), flops_per_param=2))
# b.mul_(mu); b.add_(g); p.add_(b, alpha=-lr)
_register(OptimizerRule("momentum", state_per_param=1, passes=((1, 1), (2, 1), (2, 1)), flops_per_param=4))
# m.lerp_(g, 1-b1); v.mul_(b2); v.addcmul_(g, g, 1-b2); d = v.sqrt(); d.div_(bc2); d.add_(eps); p.addcdiv_(m, d)
_ADAM = ((2, 1), (1, 1), (2, 1), (1, 1), (1, 1), (1, 1), (3, 1))
_register(OptimizerRule("adam", state_per_param=2, passes=_ADAM, flops_per_param=12))
# AdamW: p.mul_(1 - lr*wd) first, then Adam's passes
_register(OptimizerRule("adamw", state_per_param=2, passes=((1, 1),) + _ADAM, flops_per_param=13))
OPTIMIZER_NAMES = tuple(OPTIMIZERS)


OPTIMIZER_STYLES = ("per-tensor", "foreach", "fused")


def optimizer_work(name: str, params: int, param_tensors: int, gpu: bool | None = None,
                   style: str | None = None) -> Work:
    """The update of `params` parameters in `param_tensors` tensors as one memory-bound Work item.

    `style` (a device trait, hardware.traits.optimizer_kernels): "per-tensor" (PyTorch's for-loop, one
    kernel per pass and tensor), "foreach" (one kernel per pass and chunk of 110 tensors) or "fused" (one
    pass reading parameter, gradient and state and writing parameter and state once, one kernel per
    chunk). `gpu` is the older switch: True = "foreach", False = "per-tensor".
    """
    if style is None:
        style = "foreach" if gpu else "per-tensor"
    if style not in OPTIMIZER_STYLES:
        raise ValueError(f"optimizer style must be one of {', '.join(OPTIMIZER_STYLES)}, got {style!r}")
    r = OPTIMIZERS[name]
    if params <= 0:
        return Work("memory", 0.0, 0.0, 0.0, kernels=0)
    chunks = max(1, math.ceil(param_tensors / FOREACH_TENSORS_PER_KERNEL))
    if style == "fused":  # read parameter, gradient and state once; write parameter and state once
        reads, writes, kernels = 2 + r.state_per_param, 1 + r.state_per_param, chunks
    else:
        reads, writes = r.reads_per_param, r.writes_per_param
        kernels = r.ops_per_tensor * (chunks if style == "foreach" else max(1, param_tensors))
    return Work("memory", flops=float(r.flops_per_param * params), bytes_read=float(reads * params * MASTER_BYTES),
                bytes_written=float(writes * params * MASTER_BYTES), kernels=kernels)


def optimizer_state_bytes(name: str, params: int) -> float:
    """Bytes of optimizer state (fp32) for `params` parameters."""
    return float(OPTIMIZERS[name].state_per_param * params * MASTER_BYTES)


OptimizerFn = Callable[[int], float]


def check_step_time(name: str, sizes, device, threads: int | None) -> float:
    """Seconds the model prices one `name` step over parameter tensors of `sizes` elements on `device` at
    `threads`, as a training step prices it (step.py: optimizer_work in the device's optimizer_kernels style,
    stage key "optimizer"): what calibration's optimizer-step check compares with its measurement."""
    from .engine.layers import stage_time
    from .engine.rates import device_rates
    from .hardware.traits import device_traits

    w = optimizer_work(name, int(sum(sizes)), len(sizes), style=device_traits(device).optimizer_kernels)
    return stage_time((w,), device_rates(device, "fp32", threads), "optimizer").time_s


def calibration_check_time(name: str, threads: int, profile: dict) -> float:
    """check_step_time of calibration's optimizer-step check (calibration.grid.OPT_TENSORS) on the device of a
    fitted profile mapping (calibration.profile.optimizer_checks)."""
    from .calibration.grid import OPT_TENSORS
    from .hardware.loader import hardware_from_dict

    return check_step_time(name, OPT_TENSORS, hardware_from_dict(profile), threads)
