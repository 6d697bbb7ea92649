"""Op-kind knowledge beyond FLOPs: efficiency keys, kernel shapes, tensor-parallel role, inference mode.

Batch B = 2 and fp32 unless a test says otherwise; shapes are hand-derived from the layer sizes.
"""

from __future__ import annotations

import pytest

from perfmodel.graph import NetworkBuilder
from perfmodel.graph.io import builtin_networks, load_network
from perfmodel.graph.spec import OP_KINDS as SPEC_KINDS
from perfmodel.ops import (
    OP_KINDS, STAGES, ConvShape, GemmShape, Work, cost_rule, inference_cost, inference_mode, op_cost, tp_role,
)
from perfmodel.ops.base import COST_RULES
from perfmodel.parallel.tensor import SPLIT_ELEMENTWISE
from perfmodel.serving import ALIAS_OPS, SKIPPED_AT_INFERENCE

from test_ops_costs import B, F4, build, cost

MATRIX_ROOTS = {"matmul", "attention", "rnn", "custom"}
MEMORY_ROOTS = {"elementwise", "norm", "pool", "reduce", "copy", "loss", "custom"}


def works(c):
    return [w for s in STAGES for w in c.stage(s)]


def test_every_kind_declares_tp_role_and_inference_mode():
    assert set(SPEC_KINDS) <= set(OP_KINDS)
    for k in SPEC_KINDS:
        assert OP_KINDS[k].tp_role in ("linear", "heads", "vocab", "elementwise", "replicated")
        assert OP_KINDS[k].inference in ("run", "skip", "alias")


def test_roles_match_what_tensor_parallelism_and_serving_use():
    split = {"relu", "gelu", "tanh", "sigmoid", "leaky_relu", "dropout"}  # Megatron keeps these split
    assert split <= {k for k in OP_KINDS if tp_role(k) == "elementwise"} == set(SPLIT_ELEMENTWISE)
    assert not any(tp_role(k) == "elementwise" for k in ("add", "mul", "softmax", "layernorm", "concat", "matmul"))
    assert (tp_role("dense"), tp_role("attention"), tp_role("embedding")) == ("linear", "heads", "vocab")
    assert tp_role("conv2d") == tp_role("lstm") == tp_role("no-such-kind") == "replicated"
    assert {"softmax_cross_entropy", "mse", "bce", "dropout"} <= set(SKIPPED_AT_INFERENCE)
    assert ALIAS_OPS == {"dropout"}
    assert not {"relu", "dense", "conv2d", "attention", "batchnorm", "flatten"} & set(SKIPPED_AT_INFERENCE)


@pytest.mark.parametrize("name", sorted(builtin_networks()))
def test_zoo_keys_are_rooted_in_their_family(name):
    g = load_network(name)
    for layer in g.layers:
        for w in works(op_cost(layer, 3, F4)):
            root = w.efficiency_key.split("/")[0]
            if w.family == "memory":
                assert root in MEMORY_ROOTS, (layer.name, w.efficiency_key)
            elif w.family == "matrix":
                assert root in MATRIX_ROOTS, (layer.name, w.efficiency_key)
            else:
                assert root == "conv" and isinstance(w.shape, ConvShape), (layer.name, w.efficiency_key)


def test_work_key_defaults_to_its_family_and_split_keeps_key_and_shape():
    assert Work("matrix").efficiency_key == "matrix"
    assert Work("memory", 1.0).efficiency_key == "memory"  # the family curve, not the elementwise class
    w = Work("conv", 8.0, 4.0, 2.0, 3, "conv/1x1", GemmShape(1, 2, 3))
    s = w.split(4)
    assert (s.flops, s.bytes_read, s.bytes_written, s.kernels) == (2.0, 1.0, 0.5, 3)
    assert (s.efficiency_key, s.shape) == ("conv/1x1", GemmShape(1, 2, 3))


def test_dense_gemm_shapes_and_thin_key():
    c = cost((8,), "dense", units=32)  # M = B = 2 rows -> thin
    assert c.forward[0].shape == GemmShape(m=2, n=32, k=8)
    assert c.backward_data[0].shape == GemmShape(m=2, n=8, k=32)
    assert c.backward_weight[0].shape == GemmShape(m=8, n=32, k=2)
    assert c.forward[0].efficiency_key == "matmul/thin"
    assert c.backward_weight[1].efficiency_key == "reduce/bias"
    wide = cost((10, 64), "dense", units=32, batch=4)  # M = 40, N = 32
    assert wide.forward[0].efficiency_key == "matmul" and wide.forward[0].shape == GemmShape(40, 32, 64)


def test_matmul_is_batched():
    nb = NetworkBuilder("t")
    nb.input("a", shape=[3, 20, 24])
    nb.input("b", shape=[3, 24, 32])
    nb.matmul("L", inputs=["a", "b"])
    w = op_cost(nb.build()["L"], B, F4).forward[0]
    assert w.shape == GemmShape(20, 32, 24, batch=B * 3) and w.efficiency_key == "matmul/batched"


@pytest.mark.parametrize("fields, shape_in, key", [
    (dict(out_channels=64, kernel=3, padding=1), (64, 8, 8), "conv"),
    (dict(out_channels=64, kernel=1), (64, 8, 8), "conv/1x1"),
    (dict(out_channels=64, kernel=3, stride=2, padding=1), (64, 8, 8), "conv/strided"),
    (dict(out_channels=128, kernel=1, stride=2), (64, 8, 8), "conv/strided/1x1"),
    (dict(out_channels=8, kernel=3, padding=1, groups=8), (8, 8, 8), "conv/depthwise"),
    (dict(out_channels=8, kernel=3, stride=2, padding=1, groups=8), (8, 8, 8), "conv/depthwise/strided"),
    (dict(out_channels=64, kernel=3, padding=1, groups=4), (64, 8, 8), "conv/grouped"),  # 16 channels per group
    # at most 32 channels (ungrouped) or partial 16-channel blocks per group: the narrow kernel class
    (dict(out_channels=8, kernel=3, padding=1), (8, 8, 8), "conv/narrow"),
    (dict(out_channels=16, kernel=1, stride=2), (8, 8, 8), "conv/strided/1x1/narrow"),
    (dict(out_channels=8, kernel=3, padding=1, groups=4), (8, 8, 8), "conv/grouped/gemm"),  # 2 per group: im2col
])
def test_conv_kernel_classes(fields, shape_in, key):
    c = cost(shape_in, "conv2d", **fields)
    conv = [w for w in works(c) if w.family == "conv"]
    assert len(conv) == 3 and {w.efficiency_key for w in conv} == {key}


def test_conv_shape_and_transposed_key():
    c = cost((4, 6, 6), "conv2d", out_channels=6, kernel=(3, 1), stride=2, groups=2, bias=False)  # -> [6, 2, 3]
    assert c.forward[0].shape == ConvShape(batch=B, c_in=4, c_out=6, in_size=(6, 6), out_size=(2, 3),
                                           kernel=(3, 1), stride=(2, 2), groups=2, transposed=False,
                                           padding=(0, 0), dilation=(1, 1))
    same = cost((4, 9, 9), "conv2d", out_channels=4, kernel=5, padding="same", dilation=2).forward[0].shape
    assert same.padding == (4, 4) and same.dilation == (2, 2) and same.out_size == (9, 9)
    one_d = cost((2, 10), "conv1d", out_channels=3, kernel=3, padding=1).forward[0].shape
    assert (one_d.kernel, one_d.padding, one_d.in_size, one_d.out_size) == ((3,), (1,), (10,), (10,))
    t = cost((4, 5, 5), "conv_transpose2d", out_channels=2, kernel=2, stride=2)
    assert t.forward[0].efficiency_key == "conv/transposed/strided" and t.forward[0].shape.transposed
    assert [w.efficiency_key for w in t.forward[1:]] == ["elementwise/bias"]


def test_attention_keys_and_per_head_shapes():
    c = cost((4, 8), "attention", heads=2, dropout=0.1)  # T=4, D=8, head dim 4
    keys = [w.efficiency_key for w in c.forward]
    assert keys == ["attention/proj", "attention/scores", "elementwise/softmax/attention", "elementwise/dropout",
                    "attention/context", "attention/proj"]
    assert c.forward[1].shape == GemmShape(4, 4, 4, batch=B * 2)  # Q K^T per head
    assert c.forward[4].shape == GemmShape(4, 4, 4, batch=B * 2)  # P V per head
    assert c.forward[0].shape == GemmShape(B * 4, 24, 8)


def test_recurrent_keys_and_step_gemm_shape():
    c = cost((5, 6), "lstm", hidden=10)  # T=5, F=6, 4 gates
    assert [w.efficiency_key for w in c.forward] == ["rnn/gemm/lstm", "rnn/gemm/recurrent/lstm",
                                                      "elementwise/rnn-cell/lstm"]  # oneDNN's fused RNN
    g = cost((5, 6), "gru", hidden=10)
    assert [w.efficiency_key for w in g.forward] == ["rnn/gemm", "rnn/gemm/recurrent", "elementwise/rnn-cell"]
    assert c.forward[0].shape == GemmShape(B * 5, 40, 6)
    assert c.forward[1].shape == GemmShape(B, 40, 10) and c.forward[1].kernels == 5


@pytest.mark.parametrize("op, key", [("relu", "elementwise/relu"), ("softmax", "elementwise/softmax")])
def test_memory_keys(op, key):
    shape = (4, 6, 6) if op == "batchnorm" else (12,)
    assert {w.efficiency_key for w in works(cost(shape, op))} == {key}


def test_inference_cost_is_the_forward_only():
    g = build((12,), "dense", units=4)
    full = op_cost(g["L"], B, F4)
    inf = inference_cost(g["L"], B, F4)
    assert inf.forward == full.forward and inf.backward_data == () and inf.backward_weight == ()
    assert inf.saved_bytes == 0 and inf.params == full.params
    assert inference_cost(build((12,), "dropout", p=0.5)["L"], B, F4) is None


def test_cost_rule_rejects_unknown_roles():
    with pytest.raises(ValueError):
        cost_rule("x-kind", tp="diagonal")
    with pytest.raises(ValueError):
        cost_rule("x-kind", inference="maybe")
    assert "x-kind" not in COST_RULES
