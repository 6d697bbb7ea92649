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
    standard: bool = False  # a torch.nn module left whole (opaque)
    bytes_per_sample: float | None = None  # forward traffic per sample (None: inputs read, output written)


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
    kinds: dict[str, int] = {}  # layers per op kind
    import_time_s: float = 0.0
    warnings: tuple[str, ...] = ()  # custom layers with no FLOPs and no bytes, opaque standard modules

    @property
    def params_match(self) -> bool:
        return self.params_module == self.params_graph

    @property
    def opaque_standard(self) -> tuple[UnmappedOp, ...]:
        """Standard torch.nn modules that stayed whole as custom layers."""
        return tuple(u for u in self.unmapped if u.standard)

    def summary_lines(self) -> list[str]:
        """Short human-readable lines (for the CLI)."""
        same = "equal" if self.params_match else "DIFFERENT"
        out = [f"traced with {self.method}; {self.layers} layers, "
               f"{len(self.unmapped)} custom; parameters: module {self.params_module:,}, graph {self.params_graph:,} "
               f"({same})"]
        out.extend(f"warning: {w}" for w in self.warnings)
        for u in self.unmapped:
            out.append(f"unmapped: {u.target} (node {u.node}, layer {u.layer}) at {u.location}: {u.reason}; "
                       f"costed as custom ({u.flops_per_sample:,.0f} FLOPs/sample, {u.params:,} params)")
        out.extend(f"approximation: {a}" for a in self.approximations)
        return out
