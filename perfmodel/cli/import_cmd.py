"""`perfmodel import MODULE:FACTORY` (or FILE.py:FACTORY): trace a PyTorch model into a network file.

torch (and the user's code) load only when the command runs; see perfmodel/torch/importer/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import InputError
from .app import app


def _report_dict(spec: str, out: Optional[Path], graph: Any, report: Any) -> dict:
    from ..ops import op_cost

    layers = [{"name": l.name, "op": l.op, "output_shape": list(l.output_shape),
               "params": op_cost(l, 1, 4).params} for l in graph.layers]
    custom = [{"layer": u.layer, "target": u.target, "location": u.location, "reason": u.reason,
               "flops_per_sample": u.flops_per_sample, "params": u.params, "standard_module": u.standard}
              for u in report.unmapped]
    return {"model": spec, "out": str(out) if out else None, "name": report.name, "tracer": report.method,
            "batch": report.batch, "layers": report.layers, "kinds": report.kinds,
            "params_module": report.params_module, "params_graph": report.params_graph,
            "params_match": report.params_match, "custom": custom, "approximations": list(report.approximations),
            "warnings": list(report.warnings), "trace_errors": list(report.trace_errors),
            "import_time_s": report.import_time_s, "layer_table": layers}


def _text(spec: str, out: Optional[Path], report: Any) -> list[str]:
    lines = [f"imported {spec}" + (f" -> {out}" if out else " (no --out: nothing written)")]
    lines += report.summary_lines()
    kinds = sorted(report.kinds.items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append("layers by kind: " + ", ".join(f"{k} {n}" for k, n in kinds))
    lines.append(f"import took {report.import_time_s:.1f} s")
    return lines


@app.command("import")
def import_cmd(
    model: str = typer.Argument(..., metavar="MODULE:FACTORY", help="the model: package.module:factory or "
                                "path/to/file.py:factory (a callable returning an nn.Module, or (module, inputs)); "
                                "its code runs, so name only code you trust"),
    input_shape: Optional[list[str]] = typer.Option(None, "--input-shape", help="per-sample shape of one positional "
                                                    "input of forward, in order (repeatable): 3x224x224; 128:int64 "
                                                    "for token ids; B marks the batch dim when not first: 35xB:int64"),
    input_: Optional[list[str]] = typer.Option(None, "--input", help="a keyword input of forward: "
                                               "NAME=SHAPE[:dtype] (repeatable), e.g. attention_mask=128:int64"),
    batch: int = typer.Option(3, "--batch", help="example batch for tracing (pick one no other dim equals)"),
    name: Optional[str] = typer.Option(None, "--name", help="network name (default: the factory's)"),
    out: Optional[Path] = typer.Option(None, "--out", help="network file to write (.yaml or .json)"),
    json_out: bool = typer.Option(False, "--json", help="print the import report as JSON"),
) -> None:
    """Import a PyTorch model: trace it (fx, torch.export, dispatch trace) and write its layer graph."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError("perfmodel import needs PyTorch: pip install 'perfmodel[torch]'") from None
    from ..torch.importer import import_module

    def progress(line: str) -> None:
        typer.echo(f"{model}: {line}", err=True)

    try:
        graph, report = import_module(model, list(input_shape or []), out, batch=batch, name=name,
                                      inputs=list(input_ or []), progress=progress)
    except RuntimeError as e:
        raise InputError(f"cannot import {model}: {e}. Check the inputs (--input-shape per positional input, "
                         f"--input NAME=SHAPE for keyword inputs) match what forward expects") from None
    if json_out:
        typer.echo(json.dumps(_report_dict(model, out, graph, report), indent=1))
        return
    for line in _text(model, out, report):
        typer.echo(line)
