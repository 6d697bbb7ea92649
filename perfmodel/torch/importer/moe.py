"""Mixture-of-experts blocks, recognised by structure and mapped to the `moe` kind as a whole.

A block is a module with `experts` (an nn.ModuleList of feed-forward experts, or one module of stacked
expert weights `gate_up_proj`/`down_proj` as in Hugging Face Mixtral) and a router (`gate` or `router`:
a Linear or a module with a [experts, D] `weight`), and a top-k (`top_k`, `num_experts_per_tok`). Its
data-dependent routing loop cannot be traced by fx or exported; kept whole, it is costed with the
expected tokens per expert (perfmodel/ops/moe.py). The kind's parameter formula must give the block's own
count, otherwise the block stays a custom layer.
"""

from __future__ import annotations

from torch import nn

from ...ops.moe import moe_params
from .registry import _act, _rowwise_in, _rowwise_out, on_module_kind
from .values import Const, Seq, Unmappable


def _router(m: nn.Module):
    return getattr(m, "gate", None) if isinstance(getattr(m, "gate", None), nn.Module) else getattr(m, "router", None)


def _top_k(m: nn.Module) -> int | None:
    for owner in (m, _router(m)):
        for attr in ("top_k", "num_experts_per_tok", "k"):
            v = getattr(owner, attr, None)
            if isinstance(v, int) and v > 0:
                return v
    return None


def is_moe(m: nn.Module) -> bool:
    experts, router = getattr(m, "experts", None), _router(m)
    if not isinstance(experts, nn.Module) or not isinstance(router, nn.Module) or _top_k(m) is None:
        return False
    return isinstance(experts, nn.ModuleList) or hasattr(experts, "gate_up_proj") or hasattr(experts, "down_proj")


def moe_fields(m: nn.Module) -> dict:
    """experts, top_k, hidden, gated, bias, router_bias of a block (Unmappable when it does not fit the kind)."""
    router, experts = _router(m), m.experts
    w = getattr(router, "weight", None)
    if w is None or w.dim() != 2:
        raise Unmappable("a router without a [experts, D] weight")
    n_exp, d = int(w.shape[0]), int(w.shape[1])
    router_bias = getattr(router, "bias", None) is not None
    if isinstance(experts, nn.ModuleList):
        lins = [x for x in experts[0].modules() if isinstance(x, nn.Linear)]
        if len(lins) not in (2, 3) or len(experts) != n_exp:
            raise Unmappable("experts that are not 2 or 3 linear maps")
        hidden, bias, gated = lins[0].out_features, lins[0].bias is not None, len(lins) == 3
    else:
        gu, down = getattr(experts, "gate_up_proj", None), getattr(experts, "down_proj", None)
        if gu is None or down is None or gu.dim() != 3:
            raise Unmappable("stacked expert weights other than gate_up_proj/down_proj")
        hidden, gated = int(gu.shape[1]) // 2, True
        bias = any("bias" in name for name, _ in experts.named_parameters())
    fields = {"experts": n_exp, "top_k": _top_k(m), "hidden": hidden, "gated": gated, "bias": bias,
              "router_bias": router_bias}
    cf = getattr(m, "capacity_factor", None)  # a capacity factor the block states (perfmodel's own stand-in)
    if isinstance(cf, (int, float)) and not isinstance(cf, bool) and cf > 0:
        fields["capacity_factor"] = float(cf)
    own = sum(p.numel() for p in m.parameters())
    if moe_params(d, n_exp, hidden, gated, bias, router_bias) != own:
        raise Unmappable(f"the block's {own:,} parameters do not fit the moe kind ({fields})")
    return fields


@on_module_kind(is_moe)
def _h_moe(c, n, result, args, kwargs, ia, ik):
    m = c.module_of(n)
    fields = moe_fields(m)
    a = _act(ia[0] if ia else next(iter(ik.values())))
    name = c.layer_name(n)
    shared = c.claim(name, list(m.parameters()))
    if shared:
        fields["share_params_with"] = shared
    name = c.add("moe", name, [_rowwise_in(c, a, args[0] if args else next(iter(kwargs.values())))], **fields)
    c.note("mixture of experts costed with the expected tokens per expert (uniform routing)")
    if isinstance(result, (tuple, list)):  # (hidden states, router logits): the logits' cost is in the layer
        return Seq((_rowwise_out(c, name, a, result[0]),) + tuple(Const(r) for r in result[1:]))
    return _rowwise_out(c, name, a, result)
