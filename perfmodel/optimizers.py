"""Optimizer step cost and state size: one registered rule per optimizer, memory-bound over the parameters.

Parameters, gradients and optimizer state are kept in fp32 (PyTorch's default, and AMP's master
weights); an update reads and writes every element once, per PyTorch's foreach/fused kernels on GPUs
and per-tensor loops on CPUs.
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
    """Per-parameter traffic and math of one update, and the state it keeps."""

    name: str
    state_per_param: int  # fp32 values of state per parameter (momentum buffer, Adam moments)
    reads_per_param: int  # fp32 values read per parameter per step (param, grad, state)
    writes_per_param: int  # fp32 values written per parameter per step
    flops_per_param: int
    ops_per_tensor: int  # elementwise ops per parameter tensor in the unfused implementation


OPTIMIZERS: dict[str, OptimizerRule] = {}


def _register(rule: OptimizerRule) -> None:
    OPTIMIZERS[rule.name] = rule


# p -= lr*g
_register(OptimizerRule("sgd", state_per_param=0, reads_per_param=2, writes_per_param=1, flops_per_param=2, ops_per_tensor=1))
# b = mu*b + g; p -= lr*b
_register(OptimizerRule("momentum", state_per_param=1, reads_per_param=3, writes_per_param=2, flops_per_param=4, ops_per_tensor=2))
# m, v moments, bias correction, sqrt, divide (Adam / AdamW)
_register(OptimizerRule("adam", state_per_param=2, reads_per_param=4, writes_per_param=3, flops_per_param=12, ops_per_tensor=5))
_register(OptimizerRule("adamw", state_per_param=2, reads_per_param=4, writes_per_param=3, flops_per_param=13, ops_per_tensor=6))
OPTIMIZER_NAMES = tuple(OPTIMIZERS)


def optimizer_work(name: str, params: int, param_tensors: int, gpu: bool) -> Work:
    """The update of `params` parameters in `param_tensors` tensors as one memory-bound Work item."""
    r = OPTIMIZERS[name]
    if params <= 0:
        return Work("memory", 0.0, 0.0, 0.0, kernels=0)
    if gpu:
        kernels = r.ops_per_tensor * max(1, math.ceil(param_tensors / FOREACH_TENSORS_PER_KERNEL))
    else:
        kernels = r.ops_per_tensor * max(1, param_tensors)
    return Work(
        "memory", flops=float(r.flops_per_param * params),
        bytes_read=float(r.reads_per_param * params * MASTER_BYTES),
        bytes_written=float(r.writes_per_param * params * MASTER_BYTES), kernels=kernels,
    )


def optimizer_state_bytes(name: str, params: int) -> float:
    """Bytes of optimizer state (fp32) for `params` parameters."""
    return float(OPTIMIZERS[name].state_per_param * params * MASTER_BYTES)


OptimizerFn = Callable[[int], float]
