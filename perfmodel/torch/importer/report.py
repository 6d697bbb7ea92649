"""The import report: what the importer traced, mapped, could not map and approximated."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

class UnmappedOp(BaseModel):
    """An op the importer could not map to a kind: it became a `custom` layer."""

    model_config = ConfigDict(frozen=True)
    layer: str  # the custom layer's name in the graph
    node: str  # the fx node
    target: str  # what was called (module class, function or method name)
    location: str  # module path and source line where it occurs
    flops_per_sample: float  # forward FLOPs per sample measured with FlopCounterMode
    params: int
    reason: str


class ImportReport(BaseModel):
    """What the import did: how it traced, what it could not map, what it approximated."""

    model_config = ConfigDict(frozen=True)
    name: str
    method: str  # "fx", "fx (all torch.nn modules as leaves)" or "export"
    batch: int  # example batch size (dim 0 of the inputs)
    layers: int
    unmapped: tuple[UnmappedOp, ...] = ()
    approximations: tuple[str, ...] = ()
    trace_errors: tuple[str, ...] = ()  # why earlier tracing methods failed
    params_module: int  # distinct trainable parameters of the module
    params_graph: int  # parameters of the graph (sum of its layers' cost records)

    def summary_lines(self) -> list[str]:
        """Short human-readable lines (for the CLI)."""
        out = [f"traced with {self.method}; {self.layers} layers; parameters: module {self.params_module:,}, "
               f"graph {self.params_graph:,}"]
        for u in self.unmapped:
            out.append(f"unmapped: {u.target} (node {u.node}, layer {u.layer}) at {u.location}: {u.reason}; "
                       f"costed as custom ({u.flops_per_sample:,.0f} FLOPs/sample, {u.params:,} params)")
        out.extend(f"approximation: {a}" for a in self.approximations)
        return out


class Unmappable(Exception):
    """Raised by a handler that cannot express the node; the node becomes a custom layer."""
