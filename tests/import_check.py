"""Shared checks of the import corpus: parameters, GEMM/conv/attention FLOPs against FlopCounterMode, opaque
standard modules (used by tests/test_import_corpus.py and tests/test_import_hf.py)."""

from __future__ import annotations

import math

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from perfmodel.ops import op_cost

RECURRENT = ("rnn", "lstm", "gru")


def flop_counter(model, args, kwargs) -> float:
    """Forward FLOPs of the module as FlopCounterMode counts them (attention on the math kernel)."""
    torch.manual_seed(0)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:
        model(*args, **kwargs)
    return float(fc.get_total_flops())


def our_flops(graph, batch: int, skip=()) -> tuple[float, float]:
    """(matrix+conv forward FLOPs of the graph, the bias additions among them) at `batch`."""
    total = bias = 0.0
    for l in graph.layers:
        if l.op in skip:
            continue
        total += sum(w.flops for w in op_cost(l, batch, 4).forward if w.family in ("matrix", "conv"))
        if getattr(l.spec, "bias", False) or getattr(l.spec, "router_bias", False):
            per = {"attention": 4, "moe": 3}.get(l.op, 1)
            bias += per * batch * math.prod(l.output_shape)
    return total, bias


def check_flops(graph, batch: int, counted: float, skip=()) -> float:
    """Ours within [FlopCounterMode, FlopCounterMode + bias additions] (it does not count biases); the ratio."""
    ours, bias = our_flops(graph, batch, skip)
    assert counted <= ours * (1 + 1e-9) and ours <= (counted + bias) * (1 + 1e-9), (ours, counted, bias)
    return ours / counted if counted else 1.0


def check_import(graph, report, model) -> None:
    """Parameters exact, no torch.nn module left opaque, nothing free that should cost."""
    own = sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())
    assert report.params_module == report.params_graph == own, report.summary_lines()
    assert report.opaque_standard == (), report.opaque_standard
    assert not [w for w in report.warnings if "no FLOPs and no bytes" in w]
