"""Cost rules: hand-computed FLOPs, bytes, params and saved bytes for every op kind.

Unless a test says otherwise: batch B = 2, fp32 (b = 4 bytes), and the layer under test reads a
layernorm "pre" so that its input needs a gradient (op_cost then keeps backward_data).
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.graph import NetworkBuilder
from perfmodel.graph.spec import OP_KINDS
from perfmodel.ops import COST_RULES, STAGES, OpCost, op_cost

B = 2  # batch
F4 = 4  # fp32 bytes per element
I8 = 8  # int64 ids / labels


def put(nb: NetworkBuilder, op: str, name: str, **fields) -> str:
    """Append a layer of kind `op` (NetworkBuilder.layer; older builders called it `add`)."""
    if hasattr(type(nb), "layer"):
        return nb.layer(op, name, **fields)
    return nb.add(op, name, **fields)


def build(shape, op, /, pre=True, dtype="float", **fields):
    """input 'x' of `shape` -> (layernorm 'pre') -> layer 'L' of kind `op`; returns the graph."""
    nb = NetworkBuilder("t")
    nb.input("x", shape=list(shape), dtype=dtype)
    if pre:
        nb.layernorm("pre")
    put(nb, op, "L", **fields)
    return nb.build()


def cost(shape, op, /, batch=B, b=F4, pre=True, dtype="float", **fields) -> OpCost:
    return op_cost(build(shape, op, pre=pre, dtype=dtype, **fields)["L"], batch, b)


def build_multi(shapes, op, **fields):
    """One input + layernorm per shape, all feeding layer 'L'."""
    nb = NetworkBuilder("t")
    names = []
    for i, s in enumerate(shapes):
        nb.input(f"x{i}", shape=list(s))
        names.append(nb.layernorm(f"n{i}", inputs=[f"x{i}"]))
    put(nb, op, "L", inputs=names, **fields)
    return nb.build()


def multi(shapes, op, batch=B, b=F4, **fields) -> OpCost:
    return op_cost(build_multi(shapes, op, **fields)["L"], batch, b)


def F(c: OpCost, stage="forward"):
    return c.flops(stage)


def BY(c: OpCost, stage="forward"):
    return c.bytes(stage)


# ---------------------------------------------------------------- registry and graph-level behaviour

def test_every_op_kind_has_a_cost_rule():
    missing = [k for k in OP_KINDS if k not in COST_RULES]
    assert missing == []


def test_first_conv_after_input_has_no_backward_data():
    c = cost((3, 8, 8), "conv2d", pre=False, out_channels=4, kernel=3)
    assert c.backward_data == ()
    assert F(c, "backward_weight") > 0


def test_shared_params_own_nothing():
    nb = NetworkBuilder("t")
    nb.input("x", shape=[3, 8, 8])
    nb.conv2d("c1", out_channels=3, kernel=3, padding=1)
    nb.conv2d("c2", out_channels=3, kernel=3, padding=1, share_params_with="c1")
    g = nb.build()
    assert op_cost(g["c1"], B, F4).params == 3 * 3 * 3 * 3 + 3
    assert op_cost(g["c2"], B, F4).params == 0


def test_layer_off_the_loss_path_has_no_backward():
    nb = NetworkBuilder("t")
    nb.input("x", shape=[6])
    nb.dense("d", units=4)
    nb.mse("loss")
    nb.relu("side", inputs=["d"])  # a branch that does not reach the loss
    g = nb.build()
    c = op_cost(g["side"], B, F4)
    assert c.backward_data == () and c.backward_weight == () and c.saved_bytes == 0


# one small layer of every kind (custom excepted: its cost is given, tested with its own rule)
CASES = {
    "input": lambda: _input_graph(),
    "dense": lambda: build((5, 8), "dense", units=3),
    "conv1d": lambda: build((2, 10), "conv1d", out_channels=3, kernel=3),
    "conv2d": lambda: build((3, 8, 8), "conv2d", out_channels=4, kernel=3, padding=1),
    "conv_transpose2d": lambda: build((4, 3, 3), "conv_transpose2d", out_channels=2, kernel=2, stride=2),
    "maxpool2d": lambda: build((2, 5, 5), "maxpool2d", kernel=2, stride=2, ceil_mode=True),
    "avgpool2d": lambda: build((2, 4, 4), "avgpool2d", kernel=2),
    "global_avgpool": lambda: build((3, 4, 4), "global_avgpool"),
    "batchnorm": lambda: build((3, 4, 4), "batchnorm"),
    "layernorm": lambda: build((5, 8), "layernorm"),
    "relu": lambda: build((3, 4), "relu"),
    "leaky_relu": lambda: build((3, 4), "leaky_relu"),
    "sigmoid": lambda: build((3, 4), "sigmoid"),
    "tanh": lambda: build((3, 4), "tanh"),
    "gelu": lambda: build((3, 4), "gelu"),
    "softmax": lambda: build((3, 4), "softmax"),
    "dropout": lambda: build((3, 4), "dropout", p=0.1),
    "add": lambda: build_multi([(4, 4)] * 3, "add"),
    "mul": lambda: build_multi([(4, 4)] * 2, "mul"),
    "upsample": lambda: build((2, 3, 3), "upsample", scale=2),
    "concat": lambda: build_multi([(2, 4, 4), (3, 4, 4)], "concat", axis=0),
    "flatten": lambda: build((3, 4, 4), "flatten"),
    "reshape": lambda: build((48,), "reshape", shape=[-1, 4]),
    "select": lambda: build((5, 8), "select", axis=0, index=0),
    "embedding": lambda: build((7,), "embedding", pre=False, dtype="int64", vocab=50, dim=8),
    "positional_embedding": lambda: build((5, 8), "positional_embedding", max_len=16),
    "rnn": lambda: build((2, 3), "rnn", hidden=4, bias=False, nonlinearity="relu"),
    "lstm": lambda: build((3, 4), "lstm", hidden=5),
    "gru": lambda: build((3, 4), "gru", hidden=5, layers=2, bidirectional=True, bias=False, return_sequences=False),
    "attention": lambda: build((4, 8), "attention", heads=2),
    "matmul": lambda: build_multi([(2, 3, 4), (2, 4, 5)], "matmul"),
    "softmax_cross_entropy": lambda: build((10,), "softmax_cross_entropy"),
    "mse": lambda: build((6,), "mse"),
    "bce": lambda: build((6,), "bce"),
    # the importer's kinds (IMPORT, issue 12; hand-computed values in tests/test_import_kinds.py)
    "moe": lambda: build((5, 8), "moe", experts=4, top_k=2, hidden=6, gated=True),
    "elementwise": lambda: build((5, 8), "elementwise", fn="pow", flops_per_element=1),
    "pad": lambda: build((5, 8), "pad", output_shape=[6, 9]),
    "slice": lambda: build((5, 8), "slice", output_shape=[5, 4]),
}


def _input_graph(dtype="float", shape=(3, 4, 4)):
    """An input 'L' followed by one layer (a network of inputs alone is refused)."""
    nb = NetworkBuilder("t")
    nb.input("L", shape=list(shape), dtype=dtype)
    if dtype == "int64":
        nb.embedding("e", vocab=10, dim=2)
    else:
        nb.relu("r")
    return nb.build()


def test_cases_cover_every_kind_but_custom():
    assert set(CASES) == set(OP_KINDS) - {"custom"}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_nothing_is_negative(kind):
    g = CASES[kind]()
    for batch, b in [(1, 2), (3, 4)]:
        c = op_cost(g["L"], batch, b)
        assert c.params >= 0 and c.saved_bytes >= 0 and c.output_bytes > 0 and c.workspace_bytes >= 0
        for s in STAGES:
            for w in c.stage(s):
                assert w.family in ("matrix", "conv", "memory")
                assert w.flops >= 0 and w.bytes_read >= 0 and w.bytes_written >= 0 and w.kernels >= 1
                assert math.isfinite(w.flops) and math.isfinite(w.bytes)


# ---------------------------------------------------------------- convolutions

def test_conv2d():
    c = cost((3, 8, 8), "conv2d", out_channels=4, kernel=3, padding=1)  # -> [4, 8, 8]
    macs = B * 4 * 8 * 8 * 3 * 3 * 3
    assert F(c) == 2 * macs + B * 4 * 8 * 8  # conv + bias add
    assert F(c, "backward_data") == 2 * macs
    assert F(c, "backward_weight") == 2 * macs + B * 4 * 8 * 8  # + bias reduction
    assert c.params == 4 * 3 * 3 * 3 + 4
    assert c.saved_bytes == B * 3 * 8 * 8 * F4
    assert c.output_bytes == B * 4 * 8 * 8 * F4
    conv_bytes = (B * 3 * 64 + 4 * 27 + B * 4 * 64) * F4
    bias_bytes = (B * 4 * 64 + 4 + B * 4 * 64) * F4
    assert BY(c) == conv_bytes + bias_bytes
    assert BY(c, "backward_data") == (B * 4 * 64 + 4 * 27 + B * 3 * 64) * F4
    assert BY(c, "backward_weight") == (B * 4 * 64 + B * 3 * 64 + 4 * 27) * F4 + (B * 4 * 64 + 4) * F4
    assert c.kernels("forward") == 2 and c.extra["param_tensors"] == 2
    assert {w.family for w in c.forward} == {"conv", "memory"}


def test_conv_buffers_and_narrow_key():
    """Per pass the buffers oneDNN allocates for an NCHW conv (copies into its blocked layout, blocked and NCHW
    results), by hand; an ungrouped conv with <= 32 in or out channels is its own kernel class."""
    from perfmodel.ops.base import Work, fresh_allocs

    c = cost((3, 8, 8), "conv2d", out_channels=4, kernel=3, padding=1)
    x, y, w = B * 3 * 64 * F4, B * 4 * 64 * F4, 4 * 27 * F4
    yb = 4 * y  # the blocked result holds 4 channels in one zero-padded 16-channel block; 3 input channels: NCHW
    assert c.forward[0].allocs == (x, yb, y)
    assert c.backward_data[0].allocs == (yb, x, x)
    assert c.backward_weight[0].allocs == (x, yb, w)
    d = cost((24, 8, 8), "conv2d", out_channels=8, kernel=1)  # 24 -> 32 and 8 -> 16 channels blocked
    x24, y8 = B * 24 * 64 * F4, B * 8 * 64 * F4
    assert d.forward[0].allocs == (x24 * 32 / 24, y8 * 2, y8)
    assert d.backward_data[0].allocs == (y8 * 2, x24 * 32 / 24, x24)
    assert c.forward[1].buffers() == (y,)  # the bias add: one output buffer
    assert c.forward[0].efficiency_key == "conv/narrow"
    wide = cost((64, 8, 8), "conv2d", out_channels=64, kernel=1, groups=1)
    assert wide.forward[0].efficiency_key == "conv/1x1"
    assert cost((64, 8, 8), "conv2d", out_channels=64, kernel=3, groups=64).forward[0].efficiency_key == \
        "conv/depthwise"
    assert cost((64, 8, 8), "conv2d", out_channels=64, kernel=3, groups=4).forward[0].efficiency_key == \
        "conv/grouped"  # 16 channels per group: whole blocks
    assert cost((48, 8, 8), "conv2d", out_channels=48, kernel=3, groups=8).forward[0].efficiency_key == \
        "conv/grouped/gemm"  # 6 channels per group: oneDNN's im2col + GEMM path
    assert fresh_allocs((40.0, 10.0, 40.0), 32.0) == 80.0 and fresh_allocs((40.0, 10.0), 32.0, scale=0.5) == 0.0
    assert Work("memory", bytes_written=12.0, kernels=3).buffers() == (4.0,)
    assert Work("conv", bytes_written=12.0, allocs=(2.0, 6.0)).split(2).allocs == (1.0, 3.0)


@pytest.mark.parametrize("c_in, c_out, groups, paths", [
    # channels per group (in, out) -> per pass (forward, backward-data, backward-weight): (GEMM path, executed)
    (64, 64, 4, ((False, 1.0), (False, 1.0), (False, 1.0))),  # 16: whole 16-lane blocks
    (64, 64, 8, ((False, 2.0), (False, 2.0), (False, 2.0))),  # 8: 8-blocks, 8 of 16 lanes (bwd-w AVX2)
    (64, 64, 16, ((False, 4.0), (False, 4.0), (True, 4.0))),  # 4: 4-blocks; backward-weight im2col + GEMM
    (48, 96, 4, ((False, 4.0), (False, 4.0), (True, 1.0))),  # 12 in, 24 out: 4-blocks; GEMM with M = 24 >= 16
    (64, 64, 32, ((True, 8.0), (True, 8.0), (True, 8.0))),  # 2: GEMM path, 16 / 2
    (48, 48, 16, ((True, 16 / 3), (True, 16 / 3), (True, 16 / 3))),  # 3
    (64, 64, 64, ((False, 1.0), (False, 1.0), (False, 1.0))),  # depthwise: its own kernel, no factor
    (64, 64, 1, ((False, 1.0), (False, 1.0), (False, 1.0))),
])
def test_grouped_conv_paths_by_channels_per_group(c_in, c_out, groups, paths):
    """oneDNN's grouped-conv kernels (ONEDNN_VERBOSE on PyTorch 2.x, AVX-512) by hand: blocks of 16/8/4 channels
    per group fill 16/8/4 of 16 fp32 lanes; other counts run im2col + GEMM with M = channels per group out."""
    from perfmodel.ops.base import ConvShape
    from perfmodel.ops.conv import grouped_path

    s = ConvShape(8, c_in, c_out, (16, 16), (16, 16), (3, 3), (1, 1), groups)
    got = tuple(grouped_path(s, st) for st in ("forward", "backward_data", "backward_weight"))
    assert [g[0] for g in got] == [p[0] for p in paths]
    assert [g[1] for g in got] == pytest.approx([p[1] for p in paths])


def test_grouped_conv_executed_work_slows_cpu_rows_only():
    """A CPU row with executed factor 4 (4 channels per group) costs what 4x its FLOPs on whole blocks cost (the
    curve read at the executed FLOPs too); model FLOPs stay; GPU (overlapping launch) rows ignore the factor."""
    from dataclasses import replace

    from perfmodel.engine.rates import device_rates
    from perfmodel.engine.worktime import row_times, work_table
    from perfmodel.hardware import load_hardware

    c = cost((64, 32, 32), "conv2d", batch=256, out_channels=64, kernel=3, padding=1, groups=16, bias=False)
    fwd = c.forward[0]
    assert fwd.executed == 4.0 and fwd.flops == 2 * 256 * 64 * 1024 * 4 * 9  # model FLOPs unchanged
    four = replace(fwd, flops=4.0 * fwd.flops, executed=1.0)
    table = work_table([replace(c, forward=(fwd, four, replace(fwd, executed=1.0)), backward_data=(),
                                backward_weight=())])
    cpu = device_rates(load_hardware("epyc-9654"), "fp32", threads=1)
    t = row_times(table, cpu)["compute"]
    assert t[0] == pytest.approx(t[1]) and t[0] > 3.0 * t[2]
    g = row_times(table, replace(cpu, overhead_overlaps=True))["compute"]
    assert g[0] == pytest.approx(g[2])


def test_conv2d_groups_stride_no_bias():
    c = cost((4, 6, 6), "conv2d", out_channels=6, kernel=(3, 1), stride=2, groups=2, bias=False)  # -> [6, 2, 3]
    macs = B * 6 * 2 * 3 * (4 // 2) * 3 * 1
    assert F(c) == 2 * macs and F(c, "backward_data") == 2 * macs and F(c, "backward_weight") == 2 * macs
    assert c.params == 6 * (4 // 2) * 3 * 1
    assert c.kernels("forward") == 1


def test_conv1d():
    c = cost((2, 10), "conv1d", out_channels=3, kernel=3)  # -> [3, 8]
    assert F(c) == 2 * B * 3 * 8 * 2 * 3 + B * 3 * 8
    assert F(c, "backward_data") == 2 * B * 3 * 8 * 2 * 3
    assert c.params == 3 * 2 * 3 + 3
    assert c.saved_bytes == B * 2 * 10 * F4 and c.output_bytes == B * 3 * 8 * F4
    assert BY(c) == (B * 20 + 3 * 2 * 3 + B * 24) * F4 + (B * 24 + 3 + B * 24) * F4  # conv, then bias add


def test_conv_transpose2d():
    c = cost((4, 3, 3), "conv_transpose2d", out_channels=2, kernel=2, stride=2)  # -> [2, 6, 6]
    macs = B * 4 * 3 * 3 * 2 * 2 * 2  # every input position scatters out * kh * kw
    assert F(c) == 2 * macs + B * 2 * 6 * 6
    assert F(c, "backward_data") == 2 * macs
    assert F(c, "backward_weight") == 2 * macs + B * 2 * 6 * 6
    assert c.params == 4 * 2 * 2 * 2 + 2
    assert c.saved_bytes == B * 4 * 3 * 3 * F4 and c.output_bytes == B * 2 * 6 * 6 * F4
    assert BY(c) == (B * 36 + 4 * 2 * 2 * 2 + B * 72) * F4 + (B * 72 + 2 + B * 72) * F4
    assert BY(c, "backward_data") == (B * 72 + 32 + B * 36) * F4


# ---------------------------------------------------------------- pooling and normalisation

def test_maxpool2d_ceil_mode():
    c = cost((2, 5, 5), "maxpool2d", kernel=2, stride=2, ceil_mode=True)  # -> [2, 3, 3]
    n_in, n_out = B * 2 * 5 * 5, B * 2 * 3 * 3
    assert F(c) == n_out * 2 * 2
    assert BY(c) == n_in * F4 + n_out * (F4 + I8)  # output and int64 indices
    assert c.saved_bytes == n_in * F4 + n_out * I8
    assert F(c, "backward_data") == n_out
    assert BY(c, "backward_data") == n_out * (F4 + I8) + n_in * F4
    assert c.params == 0 and c.backward_weight == ()


def test_avgpool2d():
    c = cost((2, 4, 4), "avgpool2d", kernel=2)  # -> [2, 2, 2]
    assert F(c) == B * 2 * 2 * 2 * 2 * 2
    assert F(c, "backward_data") == B * 2 * 2 * 2 * 2 * 2
    assert BY(c) == (B * 32 + B * 8) * F4
    assert c.saved_bytes == B * 32 * F4 and c.output_bytes == B * 8 * F4


def test_global_avgpool():
    c = cost((3, 4, 4), "global_avgpool")  # -> [3]
    assert F(c) == B * 48 and F(c, "backward_data") == B * 48
    assert BY(c) == (B * 48 + B * 3) * F4
    assert c.saved_bytes == 0 and c.output_bytes == B * 3 * F4


def test_batchnorm():
    c = cost((3, 4, 4), "batchnorm")
    n = B * 3 * 4 * 4
    assert F(c) == (3 + 4) * n  # stats: sum, square, sum; apply: sub, mul, mul, add
    assert c.kernels("forward") == 2
    assert BY(c) == n * F4 + 2 * 3 * 4 + n * F4 + n * F4  # stats pass, then normalise pass
    assert F(c, "backward_weight") == 5 * n and F(c, "backward_data") == 5 * n
    assert c.params == 2 * 3
    assert c.saved_bytes == n * F4 + 2 * 3 * 4  # input + fp32 mean and invstd per channel


def test_batchnorm_without_affine_keeps_the_reduction_in_backward_data():
    c = cost((3, 4, 4), "batchnorm", affine=False)
    n = B * 48
    assert c.params == 0 and c.backward_weight == ()
    assert F(c, "backward_data") == 5 * n + 5 * n


def test_layernorm():
    c = cost((5, 8), "layernorm")
    rows, n = B * 5, B * 5 * 8
    assert F(c) == 7 * n and c.kernels("forward") == 1
    assert BY(c) == (n + 2 * 8) * F4 + n * F4 + 2 * rows * 4
    assert F(c, "backward_data") == 10 * n and F(c, "backward_weight") == 5 * n
    assert c.params == 2 * 8
    assert c.saved_bytes == n * F4 + 2 * rows * 4


# ---------------------------------------------------------------- elementwise

@pytest.mark.parametrize("kind,fwd,bwd", [
    ("relu", 1, 1),  # max(x, 0); dy where y > 0
    ("leaky_relu", 2, 2),  # compare and multiply, both ways
    ("sigmoid", 4, 3),  # exp (2) + add + divide; dy * y * (1 - y)
    ("tanh", 2, 3),  # one transcendental (2); dy * (1 - y^2)
    ("gelu", 6, 10),  # erf (2) + 4; erf and exp (4) + 6
])
def test_activations(kind, fwd, bwd):
    c = cost((3, 4), kind)
    n = B * 12
    assert F(c) == fwd * n and F(c, "backward_data") == bwd * n
    assert BY(c) == 2 * n * F4 and BY(c, "backward_data") == 3 * n * F4
    assert c.saved_bytes == n * F4 and c.output_bytes == n * F4 and c.params == 0


def test_softmax():
    c = cost((3, 4), "softmax")
    n = B * 12
    assert F(c) == 5 * n and F(c, "backward_data") == 4 * n
    assert BY(c) == 2 * n * F4 and BY(c, "backward_data") == 3 * n * F4
    assert c.saved_bytes == n * F4


def test_dropout():
    c = cost((3, 4), "dropout", p=0.1)
    n = B * 12
    assert F(c) == 2 * n and F(c, "backward_data") == 2 * n
    assert BY(c) == n * F4 + n * (F4 + 1)  # writes y and a 1-byte mask
    assert c.saved_bytes == n * 1


def test_dropout_p0_is_free():
    c = cost((3, 4), "dropout", p=0.0)
    assert c.forward == () and c.backward_data == () and c.saved_bytes == 0
    assert c.output_bytes == B * 12 * F4


def test_add_three_inputs():
    c = multi([(4, 4)] * 3, "add")
    n = B * 16
    assert F(c) == 2 * n and c.kernels("forward") == 2  # two binary adds
    assert BY(c) == 2 * (2 * n + n) * F4
    assert c.backward_data == () and c.saved_bytes == 0 and c.output_bytes == n * F4


def test_mul():
    c = multi([(4, 4)] * 2, "mul")
    n = B * 16
    assert F(c) == n and BY(c) == 3 * n * F4
    assert F(c, "backward_data") == 2 * n and c.kernels("backward_data") == 2
    assert c.saved_bytes == 2 * n * F4


def test_upsample_nearest_and_bilinear():
    c = cost((2, 3, 3), "upsample", scale=2)  # -> [2, 6, 6]
    n_in, n_out = B * 18, B * 72
    assert F(c) == 0 and BY(c) == (n_in + n_out) * F4
    assert F(c, "backward_data") == n_out
    assert c.saved_bytes == 0 and c.output_bytes == n_out * F4
    c = cost((2, 3, 3), "upsample", scale=2, mode="bilinear")
    assert F(c) == 2 * 4 * n_out  # 4 neighbours, multiply-add each
    assert F(c, "backward_data") == 2 * 4 * n_out and c.kernels("backward_data") == 2


# ---------------------------------------------------------------- data layout

def test_input_float_and_int():
    g = _input_graph()
    c = op_cost(g["L"], B, F4)
    assert c.forward == () and c.params == 0 and c.output_bytes == B * 48 * F4
    assert op_cost(_input_graph("int64", (7,))["L"], B, F4).output_bytes == B * 7 * I8


def test_flatten_and_reshape_are_views():
    for c in (cost((3, 4, 4), "flatten"), cost((48,), "reshape", shape=[-1, 4])):
        assert c.forward == () and c.backward_data == () and c.saved_bytes == 0
        assert BY(c) == 0 and F(c) == 0
        assert c.output_bytes == B * 48 * F4 and c.extra["view"]


def test_select():
    c = cost((5, 8), "select", axis=0, index=0)  # -> [8]
    assert c.forward == () and c.output_bytes == B * 8 * F4
    assert BY(c, "backward_data") == B * 8 * F4 + (B * 40 + B * 8) * F4  # zero-fill dx, copy dy in
    assert c.kernels("backward_data") == 2


def test_views_of_token_ids_take_int64_bytes():
    c = cost((5,), "reshape", pre=False, dtype="int64", shape=[5, 1])
    assert c.output_bytes == B * 5 * I8
    c = cost((5,), "select", pre=False, dtype="int64", index=0)
    assert c.output_bytes == B * I8  # one id per sample


def test_concat():
    c = multi([(2, 4, 4), (3, 4, 4)], "concat", axis=0)  # -> [5, 4, 4]
    n = B * 80
    assert F(c) == 0 and BY(c) == 2 * n * F4 and c.kernels("forward") == 1
    assert BY(c, "backward_data") == 2 * n * F4 and c.kernels("backward_data") == 2
    assert c.saved_bytes == 0 and c.output_bytes == n * F4


# ---------------------------------------------------------------- embeddings and matmul

def test_embedding():
    c = cost((7,), "embedding", pre=False, dtype="int64", vocab=50, dim=8)  # -> [7, 8]
    ids, n = B * 7, B * 7 * 8
    assert F(c) == 0 and BY(c) == ids * I8 + n * F4 + n * F4
    assert c.backward_data == ()
    assert F(c, "backward_weight") == n
    assert BY(c, "backward_weight") == 50 * 8 * F4 + (ids * I8 + n * F4 + n * F4)
    assert c.params == 50 * 8 and c.saved_bytes == ids * I8 and c.output_bytes == n * F4


def test_positional_embedding():
    c = cost((5, 8), "positional_embedding", max_len=16)
    n = B * 5 * 8
    assert F(c) == n and BY(c) == (n + 5 * 8 + n) * F4
    assert c.backward_data == ()  # dy passes through unchanged
    assert F(c, "backward_weight") == n
    assert BY(c, "backward_weight") == (n + 5 * 8) * F4 + (5 * 8 + 16 * 8 + 5 * 8) * F4
    assert c.params == 16 * 8 and c.saved_bytes == 0


def test_matmul():
    c = multi([(2, 3, 4), (2, 4, 5)], "matmul")  # -> [2, 3, 5]
    lead = B * 2
    assert F(c) == 2 * lead * 3 * 4 * 5
    assert F(c, "backward_data") == 2 * (2 * lead * 3 * 4 * 5) and c.kernels("backward_data") == 2
    assert BY(c) == lead * (12 + 20 + 15) * F4
    assert c.saved_bytes == lead * (12 + 20) * F4 and c.output_bytes == lead * 15 * F4
    assert c.params == 0 and c.backward_weight == ()


def test_matmul_transpose_b():
    c = multi([(2, 3, 4), (2, 5, 4)], "matmul", transpose_b=True)
    assert F(c) == 2 * (B * 2) * 3 * 4 * 5


# ---------------------------------------------------------------- recurrent

def test_lstm():
    c = cost((3, 4), "lstm", hidden=5)  # T=3, F=4, H=5, 4 gates -> gH = 20
    gemm = 2 * B * 3 * (4 + 5) * 20  # input projection + recurrent GEMMs over 3 steps
    # per hidden unit and step: 3 sigmoids (4 each) + 2 tanh (2 each) + 4 for the state update = 20;
    # per gate unit: sum of two projections + two biases = 3
    cell = B * 3 * (3 * 20 + 5 * 20)
    assert F(c) == gemm + cell
    assert c.kernels("forward") == 1 + 3 + 3  # one input GEMM, per step a recurrent GEMM and a gate kernel
    assert BY(c) == ((B * 3 * 4 + 4 * 20) * F4 + B * 3 * 20 * F4  # input projection: X, W_ih -> preacts
                     + 3 * (B * 5 + 5 * 20) * F4 + B * 3 * 20 * F4  # per step: h, W_hh -> preacts
                     # gate kernel: both preacts, c_prev and the biases -> activated gates, h, c
                     + (B * 3 * (2 * 20 + 5) + 2 * 20) * F4 + B * 3 * (20 + 2 * 5) * F4)
    assert c.params == 4 * (5 * 4 + 5 * 5) + 2 * 4 * 5
    assert c.saved_bytes == B * 3 * 4 * F4 + B * 3 * (20 + 2 * 5) * F4  # input; gates, h and c per step
    # a fused LSTM computes dX of layer 0 whether or not the input needs it: backward_weight, not backward_data
    assert c.backward_data == ()
    dx, bptt = 2 * B * 3 * 20 * 4, 2 * B * 3 * 20 * 5
    dw = 2 * B * 3 * 20 * (4 + 5)
    assert F(c, "backward_weight") == dx + bptt + 2 * cell + dw + B * 3 * 20
    # the data-gradient GEMMs (dX, dh) and weight-gradient GEMMs each match the forward GEMMs
    assert dx + bptt == gemm and dw == gemm
    assert c.extra["data_chain_flops"] == dx + bptt + 2 * cell
    assert c.extra["param_tensors"] == 4
    # one layer-direction's hidden states over all steps (the unit of a library's workspace); the ops' reserve
    assert c.extra["state_bytes"] == B * 3 * 5 * F4 and c.extra["layer_directions"] == 1 and c.extra["cell"] == "lstm"
    assert c.extra["reserve_bytes"] == B * 3 * (20 + 2 * 5) * F4
    assert c.output_bytes == B * 3 * 5 * F4
    assert cost((3, 4), "lstm", hidden=5, return_sequences=False).output_bytes == B * 5 * F4


def test_lstm_first_layer_keeps_backprop_through_time():
    c = cost((3, 4), "lstm", pre=False, hidden=5)
    assert c.backward_data == ()
    dx, bptt, gate_bwd = 2 * B * 3 * 20 * 4, 2 * B * 3 * 20 * 5, 2 * B * 3 * (3 * 20 + 5 * 20)
    assert F(c, "backward_weight") == dx + bptt + gate_bwd + 2 * B * 3 * 20 * (4 + 5) + B * 3 * 20


def test_gru_layer0_input_gradient_stays_in_backward_data():
    """GRU and RNN run as ATen cells on a CPU (autograd skips an input gradient nobody needs): layer 0's dX is
    backward_data, which op_cost drops for an input without gradients."""
    c = cost((3, 4), "gru", hidden=5)
    assert F(c, "backward_data") == 2 * B * 3 * 15 * 4


def test_gru_two_layers_bidirectional_no_bias():
    c = cost((3, 4), "gru", hidden=5, layers=2, bidirectional=True, bias=False, return_sequences=False)
    gh = 3 * 5
    assert c.params == 2 * (gh * 4 + gh * 5) + 2 * (gh * 10 + gh * 5)  # layer 1 reads H * 2 directions
    gemm = 2 * (2 * B * 3 * gh * (4 + 5)) + 2 * (2 * B * 3 * gh * (10 + 5))
    # per hidden unit: 2 sigmoids (4 each) + tanh (2) + 2 + 4 = 16; per gate unit: sum of projections = 1
    cell = 4 * B * 3 * (gh + 5 * 16)
    assert F(c) == gemm + cell
    assert c.kernels("forward") == 4 * (1 + 3 + 3)
    per_dir_l0 = (6 * 4 + 4 * gh + 6 * gh) + (3 * (B * 5 + 5 * gh) + 6 * gh) + (6 * 2 * gh + 6 * (gh + 5))
    per_dir_l1 = (6 * 10 + 10 * gh + 6 * gh) + (3 * (B * 5 + 5 * gh) + 6 * gh) + (6 * 2 * gh + 6 * (gh + 5))
    assert BY(c) == 2 * (per_dir_l0 + per_dir_l1) * F4  # B * T = 6
    assert F(c, "backward_data") == 2 * (2 * B * 3 * gh * 4)
    assert c.saved_bytes == B * 3 * 4 * F4 + 4 * B * 3 * (gh + 5) * F4
    assert c.output_bytes == B * 10 * F4


def test_rnn_relu():
    c = cost((2, 3), "rnn", hidden=4, bias=False, nonlinearity="relu")  # T=2, F=3, H=4
    assert F(c) == 2 * B * 2 * 4 * (3 + 4) + B * 2 * (4 + 4 * 1)
    assert c.params == 4 * 3 + 4 * 4
    assert c.saved_bytes == B * 2 * 3 * F4 + B * 2 * (4 + 4) * F4  # input; gates and h per step
    assert F(c, "backward_data") == 2 * B * 2 * 4 * 3
    assert c.extra["param_tensors"] == 2


# ---------------------------------------------------------------- attention

def test_attention():
    c = cost((4, 8), "attention", heads=2)  # T=4, D=8; scores [2 heads, 4, 4]
    btd, s = B * 4 * 8, B * 2 * 4 * 4
    qkv = 2 * B * 4 * 8 * 24 + B * 4 * 24
    scores = 2 * B * 4 * 4 * 8
    pv = 2 * B * 4 * 4 * 8
    out = 2 * B * 4 * 8 * 8 + B * 4 * 8
    assert F(c) == qkv + scores + 5 * s + pv + out
    assert c.params == 3 * 8 * 8 + 3 * 8 + 8 * 8 + 8
    assert BY(c) == ((btd + 3 * 64 + 24) + 3 * btd  # QKV projection
                     + 2 * btd + s  # scores
                     + 2 * s  # softmax
                     + (s + btd) + btd  # probs x V
                     + (btd + 64 + 8) + btd) * F4  # output projection
    assert c.saved_bytes == (btd + 3 * btd + s + btd) * F4  # x, Q K V, probabilities, context
    assert F(c, "backward_data") == 2 * B * 4 * 24 * 8  # dX = dQKV W_in
    dw = 2 * B * 4 * 8 * 8 + 2 * B * 4 * 8 * 24
    chain = 2 * B * 4 * 8 * 8 + 2 * (2 * B * 4 * 4 * 8) + 2 * (2 * B * 4 * 4 * 8) + 4 * s
    assert F(c, "backward_weight") == dw + chain + 4 * btd  # + bias reductions
    gemm_fwd = 2 * B * 4 * 8 * 24 + scores + pv + 2 * B * 4 * 8 * 8
    assert F(c, "backward_data") + dw + chain - 4 * s == 2 * gemm_fwd  # backward GEMMs = 2x forward
    assert c.output_bytes == btd * F4 and c.extra["score_bytes"] == s * F4


def test_attention_causal_costs_the_same_and_dropout_adds():
    base = cost((4, 8), "attention", heads=2)
    assert cost((4, 8), "attention", heads=2, causal=True) == base
    d = cost((4, 8), "attention", heads=2, dropout=0.1)
    s = B * 2 * 4 * 4
    assert F(d) == F(base) + 2 * s
    assert d.saved_bytes == base.saved_bytes + s * (1 + F4)  # mask and dropped probabilities
    nb = cost((4, 8), "attention", heads=2, bias=False)
    assert nb.params == 4 * 8 * 8


# ---------------------------------------------------------------- losses

def test_softmax_cross_entropy():
    c = cost((10,), "softmax_cross_entropy")
    rows, n = B, B * 10
    assert F(c) == 5 * n + rows  # log_softmax, then gather and mean
    assert BY(c) == 2 * n * F4 + rows * (I8 + F4) + F4
    assert c.saved_bytes == n * F4 + rows * I8  # log-probabilities and labels
    assert F(c, "backward_data") == rows + 5 * n
    assert c.output_bytes == B * F4 and c.params == 0


def test_softmax_cross_entropy_over_a_sequence():
    c = cost((5, 10), "softmax_cross_entropy")
    rows, n = B * 5, B * 5 * 10
    assert F(c) == 5 * n + rows and c.saved_bytes == n * F4 + rows * I8


def test_mse():
    c = cost((6,), "mse")
    n = B * 6
    assert F(c) == 3 * n and BY(c) == 4 * n * F4 and c.kernels("forward") == 2
    assert F(c, "backward_data") == 3 * n and c.saved_bytes == 2 * n * F4


def test_bce():
    c = cost((6,), "bce")
    n = B * 6
    assert F(c) == 10 * n and BY(c) == (7 + 4) * n * F4 and c.kernels("forward") == 5
    assert F(c, "backward_data") == 7 * n and c.kernels("backward_data") == 4
    assert c.saved_bytes == 2 * n * F4


def test_dense_reference_rule():
    c = cost((5, 8), "dense", units=3)
    m = B * 5
    assert F(c) == 2 * m * 8 * 3 + m * 3
    assert c.params == 8 * 3 + 3 and c.saved_bytes == m * 8 * F4


def test_fp16_halves_bytes_not_flops():
    c32 = cost((3, 8, 8), "conv2d", b=4, out_channels=4, kernel=3)
    c16 = cost((3, 8, 8), "conv2d", b=2, out_channels=4, kernel=3)
    assert F(c16) == F(c32) and BY(c16) * 2 == BY(c32) and c16.saved_bytes * 2 == c32.saved_bytes


# ---------------------------------------------------------------- properties

@st.composite
def dense_or_conv(draw):
    if draw(st.booleans()):
        shape = (draw(st.integers(1, 4)), draw(st.integers(1, 32)))
        return build(shape, "dense", units=draw(st.integers(1, 32)), bias=draw(st.booleans()))
    k, s = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    c = draw(st.integers(1, 4))
    g = draw(st.sampled_from([1, c]))
    shape = (c, draw(st.integers(k, 12)), draw(st.integers(k, 12)))
    return build(shape, "conv2d", out_channels=c * draw(st.integers(1, 3)), kernel=k, stride=s, groups=g,
                 padding=draw(st.integers(0, 1)), bias=draw(st.booleans()))


@settings(max_examples=60, deadline=None)
@given(dense_or_conv(), st.integers(1, 16), st.sampled_from([1, 2, 4]))
def test_dense_conv_costs_finite_nonnegative_and_linear_in_batch(graph, batch, b):
    layer = graph["L"]
    c1, cb = op_cost(layer, 1, b), op_cost(layer, batch, b)
    for c in (c1, cb):
        assert c.params >= 0 and c.saved_bytes >= 0 and c.output_bytes >= 0
        for s in STAGES:
            for w in c.stage(s):
                for v in (w.flops, w.bytes_read, w.bytes_written):
                    assert math.isfinite(v) and v >= 0
    assert F(cb) == batch * F(c1)
    assert cb.saved_bytes == batch * c1.saved_bytes
