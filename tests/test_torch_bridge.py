"""The PyTorch bridge: graph -> nn.Module, nn.Module -> graph, training-step measurements, JSONL storage.

Skipped as a whole when torch is not installed. No test asserts a wall-clock time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from perfmodel.graph import NetworkBuilder, builtin_networks, load_network  # noqa: E402
from conftest import small_mlp  # noqa: E402
from perfmodel.graph.spec import OP_KINDS  # noqa: E402
from perfmodel.ops import STAGES, op_cost  # noqa: E402
from perfmodel.torch import (  # noqa: E402
    Measurement, append_jsonl, from_module, machine_info, make_batch, measure_training, read_jsonl, to_module,
)
from perfmodel.torch.measure import JsonlError, load_measurements  # noqa: E402

pytestmark = pytest.mark.torch

REPO = Path(__file__).resolve().parents[1]
META_PARAM_LIMIT = 2e9  # above this, even the round trip on the meta device takes seconds
TRAIN_PARAM_LIMIT = 2e8  # a real training step only for networks up to 200M parameters ...
TRAIN_FLOP_LIMIT = 60e9  # ... and up to 60 GFLOPs per step at batch 2 (BERT, GPT-2, VGG-16 take too long)


def graph_params(g) -> int:
    return sum(op_cost(l, 1, 4).params for l in g.layers)


def module_params(m) -> int:
    return sum(p.numel() for p in {id(p): p for p in m.parameters()}.values())


def totals(g, batch: int = 2) -> dict:
    t = {s: sum(op_cost(l, batch, 4).flops(s) for l in g.layers) for s in STAGES}
    t["params"] = graph_params(g)
    return t


def train_flops(g, batch: int = 2) -> float:
    return sum(op_cost(l, batch, 4).flops(s) for l in g.layers for s in STAGES)


ZOO = sorted(builtin_networks())


# ---------------------------------------------------------------------------------------------------------
# to_module


@pytest.mark.parametrize("name", ZOO)
def test_zoo_parameter_count_equals_graph(name):
    """Every built-in network: the module's parameters == the graph's (built on 'meta': no memory)."""
    g = load_network(name)
    with torch.device("meta"):
        m = to_module(g)
    assert module_params(m) == graph_params(g)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_round_trip_through_torch(name):
    """graph -> to_module -> from_module (fx) -> the same FLOPs per stage and parameters, every network."""
    g = load_network(name)
    if graph_params(g) > META_PARAM_LIMIT:
        pytest.skip("over 2e9 parameters: tracing all layers on 'meta' takes several seconds")
    with torch.device("meta"):
        m = to_module(g)
        x, y = make_batch(g, 3, device="meta")
    g2, rep = from_module(m, (x, y))
    assert rep.method == "fx"
    assert rep.unmapped == ()
    assert len(g2) == len(g)
    assert totals(g2) == totals(g)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_training_step_on_cpu(name):
    g = load_network(name)
    if graph_params(g) > TRAIN_PARAM_LIMIT:
        pytest.skip("over 200M parameters")
    if train_flops(g) > TRAIN_FLOP_LIMIT:
        pytest.skip("over 60 GFLOPs per step at batch 2: too slow for the unit tests")
    torch.manual_seed(0)
    m = to_module(g)
    x, y = make_batch(g, 2)
    opt = torch.optim.SGD(m.parameters(), lr=1e-3)
    out = m(x, y)
    loss = out if torch.is_tensor(out) else sum(v.float().mean() for v in out.values())
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    opt.step()
    grads = [p.grad for p in m.parameters()]
    assert grads and all(gr is not None for gr in grads)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_gemm_and_conv_flops_agree_with_flop_counter(name):
    """The cost rules' matrix and conv FLOPs == FlopCounterMode's count of the module (forward and backward).

    On 'meta' tensors. The rules put bias additions into their GEMM work items and FlopCounterMode does
    not count them (1/(2K) of a K-deep GEMM: 0.12% for the VAE), hence 0.5% in forward.
    Networks with recurrent layers are left out (FlopCounterMode counts aten.lstm as 0 on real devices).
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    g = load_network(name)
    if graph_params(g) > TRAIN_PARAM_LIMIT:
        pytest.skip("over 200M parameters")
    if any(l.op in ("rnn", "lstm", "gru") for l in g.layers):
        pytest.skip("recurrent kernels are not counted by FlopCounterMode")
    with torch.device("meta"):
        m = to_module(g)
        x, y = make_batch(g, 2, device="meta")
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fwd:
        loss = m(x, y)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as bwd:
        loss.backward()

    def ours(stages):
        return sum(w.flops for l in g.layers for s in stages for w in op_cost(l, 2, 4).stage(s)
                   if w.family in ("matrix", "conv"))

    assert fwd.get_total_flops() <= ours(("forward",)) == pytest.approx(fwd.get_total_flops(), rel=5e-3)
    if any(getattr(l.spec, "groups", 1) > 1 for l in g.layers):
        return  # FlopCounterMode's convolution_backward drops the group division (pytorch/pytorch PR #183405)
    assert ours(("backward_data", "backward_weight")) == pytest.approx(bwd.get_total_flops(), rel=1e-3)


def every_op_graph():
    """One graph that uses every op kind of spec.OP_KINDS (and sharing of three kinds)."""
    b = NetworkBuilder("every_op")
    b.input("img", shape=[3, 12, 12])
    b.input("sig", shape=[4, 16])
    b.input("ids", shape=[6], dtype="int64")
    b.conv2d("c1", inputs="img", out_channels=8, kernel=3, padding="same")
    b.batchnorm("bn1")
    b.leaky_relu("lr1", slope=0.1)
    b.conv2d("c2", out_channels=8, kernel=3, padding=1, groups=2, dilation=1, bias=False)
    b.add("res", inputs=["c2", "lr1"])
    b.maxpool2d("mp", kernel=3, stride=2, ceil_mode=True)
    b.avgpool2d("ap", kernel=2, stride=1, padding=1)
    b.conv_transpose2d("ct", out_channels=4, kernel=2, stride=2, output_padding=0)
    b.upsample("up", scale=2, mode="bilinear")
    b.global_avgpool("gap")
    b.batchnorm("bn0")
    b.dense("fc_img", units=16)
    b.conv1d("c1d", inputs="sig", out_channels=6, kernel=3, padding="valid", dilation=2)
    b.batchnorm("bn1d")
    b.upsample("up1d", scale=2)
    b.global_avgpool("gap1d")
    b.dense("fc_sig", units=16)
    b.mul("m", inputs=["fc_img", "fc_sig"])
    b.embedding("emb", inputs="ids", vocab=20, dim=16)
    b.positional_embedding("pos", max_len=8)
    b.attention("att", heads=2, causal=True, dropout=0.1)
    b.moe("moe", experts=3, top_k=2, hidden=8, gated=True, bias=True, router_bias=True)
    b.layernorm("ln")
    b.gru("gru", hidden=16, bidirectional=True)
    b.dense("proj", units=16)
    b.rnn("rnn", hidden=16, nonlinearity="relu", return_sequences=True)
    b.lstm("lstm", hidden=16, layers=2, return_sequences=False)
    b.concat("cat", inputs=["lstm", "m"], axis=0)
    b.tanh("th")
    b.dense("fc2", units=32)
    b.dense("fc2t", units=32, share_params_with="fc2")
    b.gelu("ge")
    b.dropout("dr", p=0.2)
    b.reshape("rs", shape=[4, -1])
    b.matmul("mm", inputs=["rs", "rs"], transpose_b=True)
    b.softmax("sm", axis=0)
    b.flatten("fl")
    b.dense("fc3", units=32)
    b.sigmoid("sg")
    b.relu("re")
    b.custom("cu", output_shape=[10], forward_flops_per_sample=1000.0, params=7)
    b.elementwise("ew", fn="mul", params=10)
    b.pad("pd", output_shape=[12], params=3)
    b.slice("sl", output_shape=[10])
    b.bce("loss_bce")
    b.select("sel", inputs="pos", axis=0, index=-1)
    b.dense("tied", units=20, share_params_with="emb", bias=False)
    b.softmax_cross_entropy("loss_ce")
    b.mse("loss_mse", inputs="fc2t")
    b.dense("back", inputs="fc3", units=64, share_params_with="fc3")  # transposed weights (RBM style)
    b.mse("loss_back")
    return b.build()


def test_every_op_kind_builds_trains_and_counts_parameters():
    g = every_op_graph()
    assert {l.op for l in g.layers} == set(OP_KINDS)
    torch.manual_seed(0)
    m = to_module(g)
    assert module_params(m) == graph_params(g)
    assert "back" in m.sharing_notes  # the transposed dense's own bias is a constant
    x, y = make_batch(g, 3)
    loss = m(x, y)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    # shapes: every layer's output is batch-first with the graph's per-sample shape
    m.eval()
    seen = {}
    m.layer_probe = type("P", (), {"enter": lambda s, n, op, a: a,
                                   "exit": lambda s, n, op, out: seen.__setitem__(n, tuple(out.shape)) or out})()
    m(x, y)
    m.layer_probe = None
    for l in g.layers:
        if l.op in ("input", "softmax_cross_entropy", "mse", "bce"):
            continue
        assert seen[l.name] == (3, *l.output_shape), l.name


def test_sharing_reuses_parameters():
    b = NetworkBuilder("tied")
    b.input("ids", shape=[5], dtype="int64")
    b.embedding("emb", vocab=30, dim=8)
    b.dense("out", units=30, share_params_with="emb", bias=False)
    b.softmax_cross_entropy("loss")
    g = b.build()
    m = to_module(g)
    assert m.out.weight is m.emb.weight  # tied output embedding: y = x E^T
    b = NetworkBuilder("rbm")
    b.input("v", shape=[12])
    b.dense("h", units=5)
    b.dense("v1", units=12, share_params_with="h")
    g = b.build()
    m = to_module(g)
    x = torch.randn(2, 12)
    out = m({"v": x})["v1"]
    assert torch.allclose(out, (x @ m.h.weight.t() + m.h.bias) @ m.h.weight, atol=1e-5)


def test_make_batch_ids_and_labels_in_range():
    g = load_network("lstm32")
    x, y = make_batch(g, 4)
    ids = x["tokens"]
    assert ids.dtype == torch.int64 and ids.shape == (4, 32) and int(ids.max()) < 10000
    assert y["loss"].shape == (4, 32) and int(y["loss"].max()) < 10000 and int(y["loss"].min()) >= 0


# ---------------------------------------------------------------------------------------------------------
# from_module


class MixedBlock(nn.Module):
    """Self-attention + LSTM + Linear + LayerNorm with a residual add (no biases, so GEMM FLOPs are exact)."""

    def __init__(self, d=32, heads=4, classes=10):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True, bias=False)
        self.ln2 = nn.LayerNorm(d)
        self.lstm = nn.LSTM(d, d, batch_first=True)
        self.fc = nn.Linear(d, classes, bias=False)

    def forward(self, x):
        h = self.ln1(x)
        a, _ = self.attn(h, h, h, need_weights=False)
        x = x + a
        y, _ = self.lstm(self.ln2(x))
        return self.fc(y[:, -1])


def _flop_counter(fn):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as fc:  # math kernel: attention is counted
        fn()
    return fc.get_total_flops()


def test_from_module_mixed_block_params_and_flops():
    torch.manual_seed(0)
    m = MixedBlock()
    x = torch.randn(3, 12, 32)
    g, rep = from_module(m, x)
    assert rep.method == "fx" and rep.unmapped == ()
    assert [l.op for l in g.layers] == ["input", "layernorm", "attention", "add", "layernorm", "lstm", "dense"]
    assert g["lstm"].spec.return_sequences is False  # y[:, -1] folded into the layer
    assert graph_params(g) == module_params(m) == rep.params_module == rep.params_graph
    # FlopCounterMode counts the GEMMs of Linear and attention, and nothing for the LSTM (aten.lstm)
    assert _flop_counter(lambda: m.lstm(torch.randn(3, 12, 32))) == 0
    counted = _flop_counter(lambda: m(x))
    batch = 3
    ours = sum(w.flops for l in g.layers if l.op in ("dense", "attention", "matmul")
               for w in op_cost(l, batch, 4).forward if w.family == "matrix")
    assert ours == counted


def test_round_trip_small_cnn_and_transformer():
    b = NetworkBuilder("cnn")
    b.input("img", shape=[3, 16, 16])
    b.conv2d("c1", out_channels=8, kernel=3, padding=1)
    b.batchnorm("bn1")
    b.relu("r1")
    b.conv2d("c2", out_channels=8, kernel=3, padding="same")
    b.add("res", inputs=["c2", "r1"])
    b.maxpool2d("p", kernel=2)
    b.global_avgpool("gap")
    b.dense("fc", units=10)
    b.softmax_cross_entropy("loss")
    cnn = b.build()

    b = NetworkBuilder("tiny_gpt")
    b.input("ids", shape=[12], dtype="int64")
    b.embedding("emb", vocab=50, dim=32)
    b.positional_embedding("pos", max_len=16)
    b.layernorm("ln1")
    b.attention("attn", heads=4, causal=True)
    b.add("res1", inputs=["attn", "pos"])
    b.layernorm("ln2")
    b.dense("fc1", units=64)
    b.gelu("g")
    b.dense("fc2", units=32)
    b.dropout("d", p=0.1)
    b.add("res2", inputs=["d", "res1"])
    b.dense("head", units=50, share_params_with="emb", bias=False)
    b.softmax_cross_entropy("loss")
    gpt = b.build()

    for g in (cnn, gpt):
        torch.manual_seed(0)
        m = to_module(g)
        x, y = make_batch(g, 3)
        g2, rep = from_module(m, (x, y))
        assert rep.method == "fx" and rep.unmapped == ()
        assert [l.name for l in g2.layers] == [l.name for l in g.layers]
        assert [l.spec for l in g2.layers if l.op == "attention"] == [l.spec for l in g.layers if l.op == "attention"]
        assert totals(g2) == totals(g)
        assert g2["head" if g is gpt else "fc"].spec.share_params_with == ("emb" if g is gpt else None)


def test_from_module_traces_through_transformer_encoder_layer():
    torch.manual_seed(0)
    m = nn.Sequential(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), nn.Flatten(), nn.Linear(320, 5))
    g, rep = from_module(m, torch.randn(3, 10, 32))
    assert rep.method == "fx" and rep.unmapped == ()
    ops = [l.op for l in g.layers]
    assert ops.count("attention") == 1 and ops.count("layernorm") == 2 and ops.count("dense") == 3
    assert graph_params(g) == module_params(m)


class _StraightThroughClip(torch.autograd.Function):
    """A custom autograd function. fx records the ops of its forward (its backward is not traced)."""

    @staticmethod
    def forward(ctx, x):
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, g):
        return g


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)
        self.mix = nn.Parameter(torch.randn(16, 16))
        self.out = nn.Linear(16, 4)

    def forward(self, x):
        h = self.fc(x)
        s = torch.fft.fft(h).real  # no op kind: custom
        s = _StraightThroughClip.apply(s)  # a custom autograd function: fx records its clamp (elementwise)
        z = torch.einsum("bf,fg->bg", s, self.mix)  # a product with a parameter through einsum: custom, costed
        return self.out(z)


def test_unmappable_ops_are_reported_and_costed():
    torch.manual_seed(0)
    m = Spectral()
    x = torch.randn(3, 16)
    g, rep = from_module(m, x)
    customs = [l for l in g.layers if l.op == "custom"]
    assert len(customs) == len(rep.unmapped) == 2
    by_target = {u.target: u for u in rep.unmapped}
    fft = next(u for t, u in by_target.items() if "fft" in t)
    assert fft.node and "test_torch_bridge.py" in fft.location and "forward" in fft.location
    assert [(l.spec.fn, l.input_shapes) for l in g.layers if l.op == "elementwise"] == [("clamp", ((16,),))]
    ein = next(u for t, u in by_target.items() if "einsum" in t)
    assert ein.flops_per_sample == 2 * 16 * 16 and ein.params == 16 * 16  # measured, and the parameter counted
    assert graph_params(g) == module_params(m)
    # still costed: the custom layers carry their FLOPs into the totals
    ein_layer = g[ein.layer]
    assert op_cost(ein_layer, 3, 4).flops("forward") == 3 * 2 * 16 * 16
    assert any("fft" in line for line in rep.summary_lines())


class ShapeBranching(nn.Module):
    """fx cannot trace Python control flow on a tensor's shape; torch.export can."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 5)

    def forward(self, x):
        y = F.relu(self.conv(x))
        if y.shape[-1] > 4:
            y = F.max_pool2d(y, 2)
        return self.fc(y.flatten(1))


def test_export_fallback():
    m = ShapeBranching()
    g, rep = from_module(m, torch.randn(3, 3, 8, 8))
    assert rep.method == "export" and len(rep.trace_errors) == 1 and rep.trace_errors[0].startswith("fx:")
    assert [l.op for l in g.layers] == ["input", "conv2d", "relu", "maxpool2d", "flatten", "dense"]
    assert graph_params(g) == module_params(m)


def test_import_module_factory(tmp_path, monkeypatch):
    pkg = tmp_path / "usermodels"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(textwrap.dedent("""
        import torch.nn as nn
        def small():
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    from perfmodel.graph import load_network as load
    from perfmodel.torch.from_module import import_module

    out = tmp_path / "small.yaml"
    g, rep = import_module("usermodels.nets:small", ["3x10x10"], out)
    assert out.exists()
    g2 = load(out)
    assert [l.op for l in g2.layers] == ["input", "conv2d", "relu", "global_avgpool", "dense"]
    assert graph_params(g2) == rep.params_module


def test_import_perfmodel_does_not_import_torch():
    code = "import sys, perfmodel, perfmodel.torch, perfmodel.ops, perfmodel.graph; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------------------------------------------
# measurement


def _tiny():
    return small_mlp(16, 32, 4, name="tiny_mlp")


def test_measurement_record_format(tmp_path):
    m = measure_training(_tiny(), 4, threads=1, warmup=1, steps=5, optimizer="momentum", per_layer=True)
    assert isinstance(m, Measurement)
    assert len(m.step_times_s) == m.steps == 5
    assert m.min_s <= m.median_s <= m.max_s and m.p10_s <= m.median_s <= m.p90_s
    assert m.std_s >= 0 and m.samples_per_s > 0 and m.threads == 1
    assert m.params == 16 * 32 + 32 + 32 * 4 + 4
    assert m.machine.logical_cpus >= 1 and m.machine.physical_cores >= 1 and m.machine.torch_version
    assert {l.name for l in m.per_layer} == {"fc1", "r1", "fc2", "loss"}
    assert all(l.forward_s >= 0 for l in m.per_layer)
    assert m.per_layer_method
    d = m.to_json_dict()
    for key in ("schema", "network", "batch", "device", "dtype", "optimizer", "threads", "warmup", "steps",
                "step_times_s", "median_s", "mean_s", "min_s", "max_s", "p10_s", "p90_s", "std_s",
                "samples_per_s", "machine", "created_utc", "per_layer"):
        assert key in d, key
    assert "hostname" not in json.dumps(d["machine"]).lower()
    # JSONL round trip
    path = tmp_path / "runs.jsonl"
    append_jsonl(path, m)
    append_jsonl(path, {"kind": "note", "text": "second record"})
    recs = read_jsonl(path)
    assert len(recs) == 2 and recs[1]["text"] == "second record"
    assert Measurement.model_validate(recs[0]) == m
    only = tmp_path / "only.jsonl"
    append_jsonl(only, m)
    assert load_measurements(only) == [m]


def test_measure_plain_module_with_hooks():
    mod = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    m = measure_training(mod, 4, inputs=(torch.randn(4, 8),), warmup=0, steps=2, per_layer=True)
    assert [l.name for l in m.per_layer] == ["0", "1", "2"]
    assert "hooks" in m.per_layer_method


def test_machine_info_fields():
    info = machine_info()
    assert info.cpu_model and info.python_version.count(".") == 2
    assert info.physical_cores <= info.logical_cpus


def _record(i: int) -> dict:
    return {"kind": "note", "i": i, "payload": "x" * 5000}  # longer than PIPE_BUF


def test_append_that_dies_midway_keeps_earlier_records_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """Measurements go through perfmodel.store: a write killed halfway tears only its own line, which readers
    skip with a warning; the next record starts on a fresh line; no temp file is ever made."""
    from perfmodel.store import StoreWarning

    path = tmp_path / "m.jsonl"
    append_jsonl(path, _record(0))
    append_jsonl(path, _record(1))
    real_write = os.write

    def torn_write(fd, data):
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "write", torn_write)
    with pytest.raises(OSError, match="simulated"):
        append_jsonl(path, _record(2))
    monkeypatch.undo()
    append_jsonl(path, _record(3))
    with pytest.warns(StoreWarning, match="line 3"):
        assert [r["i"] for r in read_jsonl(path)] == [0, 1, 3]
    assert [p.name for p in tmp_path.iterdir()] == ["m.jsonl"]


def test_read_jsonl_names_file_and_line_of_a_corrupt_record(tmp_path):
    from perfmodel.store import StoreWarning

    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n{"a": 2\n{"a": 3}\n')
    with pytest.warns(StoreWarning, match=r"bad.jsonl: line 2"):
        assert read_jsonl(path) == [{"a": 1}, {"a": 3}]
    path.write_text('[1, 2]\n')
    with pytest.warns(StoreWarning, match="JSON object"):
        assert read_jsonl(path) == []
    # an incomplete last line (another writer died) is not glued to: the next record gets its own line
    path.write_text('{"a": 1}\n{"a": ')
    append_jsonl(path, {"a": 9})
    assert json.loads(path.read_text().splitlines()[-1]) == {"a": 9}
    with pytest.raises(JsonlError, match="not a measurement"):
        (tmp_path / "n.jsonl").write_text('{"a": 1}\n')
        load_measurements(tmp_path / "n.jsonl")
    with pytest.raises(JsonlError, match="cannot read"):
        read_jsonl(tmp_path / "missing.jsonl")
