"""Op cost rules, one small function per op kind, registered in COST_RULES."""

from . import (  # noqa: F401  (importing a module registers its rules)
    attention,
    conv,
    custom,
    dense,
    elementwise,
    embedding,
    layout,
    loss,
    matmul,
    moe,
    norm,
    pool,
    recurrent,
    shape_ops,
)
from .base import (
    COST_RULES, DTYPE_BYTES, FAMILIES, OP_KINDS, STAGES, ConvShape, GemmShape, OpCost, OpKind, Work, cost_rule,
    inference_cost, inference_mode, op_cost, tp_role,
)

__all__ = ["COST_RULES", "DTYPE_BYTES", "FAMILIES", "OP_KINDS", "STAGES", "ConvShape", "GemmShape", "OpCost", "OpKind",
           "Work", "cost_rule", "inference_cost", "inference_mode", "op_cost", "tp_role"]
