"""The tracers in turn: fx, torch.export, the dispatch trace and the eager trace, each on a model that needs
it; standard modules stay whole (perfmodel::leaf) under export and the dispatch trace."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from perfmodel.torch import from_module  # noqa: E402
from perfmodel.torch.importer.api import _convert  # noqa: E402
from perfmodel.torch.importer.leaf import CALLS, leaves_replaced  # noqa: E402
from perfmodel.torch.importer.registry import export_leaf  # noqa: E402
from perfmodel.torch.importer.trace import trace_dispatch  # noqa: E402

pytestmark = pytest.mark.torch


class ValueBranch(nn.Module):
    """A branch on a tensor's value: fx, export and the dispatch trace all fail; the eager trace follows it."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.gru = nn.GRU(8, 6, 2, bidirectional=True)

    def forward(self, x):
        h = self.fc(x)
        if h.sum() > -1e9:
            h = h * 2
        a, _ = self.att(h, h, h, need_weights=False)
        out, _ = self.gru(a.transpose(0, 1))  # sequence-first from here
        return out


def test_eager_trace_follows_value_branches():
    m = ValueBranch()
    g, rep = from_module(m, torch.randn(3, 5, 8))
    assert rep.method == "eager trace" and [e.split(":")[0] for e in rep.trace_errors] == ["fx", "export",
                                                                                          "dispatch trace"]
    assert [(l.name, l.op) for l in g.layers if l.op in ("dense", "attention", "gru")] == [
        ("fc", "dense"), ("att", "attention"), ("gru", "gru")]
    assert g["gru"].output_shape == (5, 12) and g["gru"].spec.bidirectional and g["gru"].spec.layers == 2
    assert rep.params_graph == rep.params_module and rep.opaque_standard == ()


class ShapeBranchCross(nn.Module):
    """A branch on a shape (fx fails, export works) around cross-attention with kdim/vdim and an LSTM."""

    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(8, 2, kdim=6, vdim=4)
        self.lstm = nn.LSTM(8, 5, batch_first=True)

    def forward(self, x, mem, mask=None):
        if x.shape[1] > 2:
            x = x + 1
        a, _ = self.att(x, mem, mem[..., :4], attn_mask=mask)
        _, (h, _) = self.lstm(a.transpose(0, 1))
        return h[-1]


def test_export_keeps_attention_and_lstm_whole():
    m = ShapeBranchCross()
    g, rep = from_module(m, (torch.randn(5, 3, 8), torch.randn(7, 3, 6)), batch=3)
    assert rep.method == "export" and rep.unmapped == ()
    assert g["att.k_proj"].input_shapes == ((7, 6),) and g["att.v_proj"].input_shapes == ((7, 4),)
    assert g["att.scores"].output_shape == (2, 5, 7)  # heads x queries x keys
    lstm = g["lstm"]
    assert lstm.op == "lstm" and not lstm.spec.return_sequences and lstm.output_shape == (5,)
    assert rep.params_graph == rep.params_module == sum(p.numel() for p in m.parameters())
    assert CALLS == {}  # the leaf calls are forgotten after the import


def test_dispatch_trace_maps_standard_modules_through_the_leaf_op():
    m = nn.Sequential(nn.Linear(8, 8), nn.LSTM(8, 4, batch_first=True))
    x = torch.randn(3, 6, 8)
    try:
        with leaves_replaced(m, export_leaf, lambda: m(x)):
            traced = trace_dispatch(m, (x,), {})
            conv = _convert(traced, m, 3)
    finally:
        CALLS.clear()
    assert traced.method == "dispatch trace"
    assert [(s["name"], s["op"]) for s in conv.specs] == [("input", "input"), ("0", "dense"), ("1", "lstm")]


class OptionalMask(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x, mask=None, scale: float = 2.0):
        y = self.fc(x)
        if mask is not None:
            y = y * mask
        return y * scale


def test_optional_none_arguments_take_their_branch():
    m = OptionalMask()
    g, rep = from_module(m, torch.randn(3, 4))
    assert rep.method == "fx" and [l.op for l in g.layers] == ["input", "dense", "elementwise"]
    g2, rep2 = from_module(m, (torch.randn(3, 4),), kwargs={"mask": torch.ones(3, 4)})
    assert rep2.method == "fx" and [l.op for l in g2.layers].count("elementwise") == 1
    assert [l.op for l in g2.layers].count("mul") == 1 and {l.name for l in g2.inputs} == {"x", "mask"}


def test_group_and_instance_norm_map_to_batchnorm():
    m = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.SiLU(), nn.InstanceNorm2d(8, affine=True))
    g, rep = from_module(m, torch.randn(3, 3, 10, 10))
    assert [(l.name, l.op) for l in g.layers][1:] == [("0", "conv2d"), ("1", "batchnorm"), ("2", "elementwise"),
                                                      ("3", "batchnorm")]
    assert rep.params_graph == rep.params_module == 224 + 16 + 16


def test_moe_block_returning_router_logits():
    import import_corpus as C

    class TupleMoE(C.MoEFFN):
        def forward(self, x):
            return super().forward(x), self.gate(x)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.moe, self.head = TupleMoE(), nn.Linear(32, 4)

        def forward(self, x):
            h, logits = self.moe(x)
            return self.head(h), logits

    g, rep = from_module(M(), torch.randn(3, 10, 32))
    assert [l.op for l in g.layers] == ["input", "moe", "dense"] and rep.params_graph == rep.params_module
