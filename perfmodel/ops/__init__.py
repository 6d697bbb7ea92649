"""Op cost rules, one small function per op kind, registered in COST_RULES."""

from . import dense  # noqa: F401  (registers rules)
from .base import COST_RULES, DTYPE_BYTES, FAMILIES, STAGES, OpCost, Work, cost_rule, op_cost

__all__ = ["COST_RULES", "DTYPE_BYTES", "FAMILIES", "STAGES", "OpCost", "Work", "cost_rule", "op_cost"]
