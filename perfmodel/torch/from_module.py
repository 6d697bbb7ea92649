"""Compatibility name: the importer lives in perfmodel.torch.importer (a package of handler modules)."""

from __future__ import annotations

from .importer import ImportReport, UnmappedOp, from_module, import_module, parse_input_shape

__all__ = ["ImportReport", "UnmappedOp", "from_module", "import_module", "parse_input_shape"]
