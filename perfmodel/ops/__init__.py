"""Op cost rules, one small function per op kind, registered in COST_RULES."""

import importlib
import pkgutil

# Importing a module registers its cost rules: every module of this package is imported, so a new op
# kind is one new module here (plus its spec and shape rule in graph/), with no list to extend.
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")

from .base import (
    COST_RULES, DTYPE_BYTES, FAMILIES, OP_KINDS, STAGES, ConvShape, GemmShape, OpCost, OpKind, Work, cost_rule,
    inference_cost, inference_mode, op_cost, tp_role,
)

__all__ = ["COST_RULES", "DTYPE_BYTES", "FAMILIES", "OP_KINDS", "STAGES", "ConvShape", "GemmShape", "OpCost", "OpKind",
           "Work", "cost_rule", "inference_cost", "inference_mode", "op_cost", "tp_role"]
