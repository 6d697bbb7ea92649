"""Shape inference for every op kind (per-sample shapes, no batch dim) and its errors."""

from __future__ import annotations

import pytest

from perfmodel.errors import NetworkError, ShapeError
from perfmodel.graph import NetworkBuilder
from perfmodel.graph.shapes import SHAPE_RULES
from perfmodel.graph.spec import OP_KINDS


def put(nb: NetworkBuilder, op: str, name: str, **fields) -> str:
    """Append a layer of kind `op` (NetworkBuilder.layer; older builders called it `add`)."""
    if hasattr(type(nb), "layer"):
        return nb.layer(op, name, **fields)
    return nb.add(op, name, **fields)


def out(shape, op, /, dtype="float", **fields):
    """Output shape of one layer `op` reading an input of `shape`."""
    nb = NetworkBuilder("t")
    nb.input("x", shape=list(shape), dtype=dtype)
    put(nb, op, "L", **fields)
    return nb.build()["L"].output_shape


def out_multi(shapes, op, **fields):
    nb = NetworkBuilder("t")
    names = [nb.input(f"x{i}", shape=list(s)) for i, s in enumerate(shapes)]
    put(nb, op, "L", inputs=names, **fields)
    return nb.build()["L"].output_shape


def test_every_kind_has_a_shape_rule():
    assert [k for k in OP_KINDS if k not in SHAPE_RULES] == []


def test_input():
    nb = NetworkBuilder("t")
    nb.input("x", shape=[3, 4])
    nb.relu("r")
    assert nb.build()["x"].output_shape == (3, 4)
    only_inputs = NetworkBuilder("t")
    only_inputs.input("x", shape=[3, 4])
    with pytest.raises(NetworkError, match="only input layers"):
        only_inputs.build()


def test_dense():
    assert out((5, 8), "dense", units=3) == (5, 3)
    assert out((8,), "dense", units=3) == (3,)


@pytest.mark.parametrize("fields,hw", [
    (dict(kernel=3), 30),  # 32 - 3 + 1
    (dict(kernel=3, padding=1), 32),
    (dict(kernel=3, stride=2, padding=1), 16),  # (32 + 2 - 3) // 2 + 1
    (dict(kernel=3, dilation=2), 28),  # effective kernel 5
    (dict(kernel=5, padding="same"), 32),
    (dict(kernel=5, padding="valid"), 28),
    (dict(kernel=7, stride=2, padding=3), 16),  # ResNet stem on 32
])
def test_conv2d(fields, hw):
    assert out((3, 32, 32), "conv2d", out_channels=8, **fields) == (8, hw, hw)


def test_conv2d_rectangular_and_groups():
    assert out((4, 10, 12), "conv2d", out_channels=6, kernel=(3, 5), padding=(1, 2), groups=2) == (6, 10, 12)
    with pytest.raises(ShapeError, match="layer 'L'"):
        out((3, 10, 10), "conv2d", out_channels=6, kernel=3, groups=2)  # 3 channels not divisible by 2


def test_conv2d_rejects_wrong_rank_and_too_small_input():
    with pytest.raises(ShapeError, match="layer 'L'"):
        out((3, 32), "conv2d", out_channels=8, kernel=3)
    with pytest.raises(ShapeError, match="non-positive"):
        out((3, 2, 2), "conv2d", out_channels=8, kernel=3)


def test_conv1d():
    assert out((4, 100), "conv1d", out_channels=8, kernel=5, stride=2) == (8, 48)  # (100 - 5) // 2 + 1
    assert out((4, 100), "conv1d", out_channels=8, kernel=3, padding="same") == (8, 100)


@pytest.mark.parametrize("fields,hw", [
    (dict(kernel=4, stride=2, padding=1), 14),  # (7 - 1) * 2 - 2 + 3 + 1
    (dict(kernel=3, stride=2, padding=1, output_padding=1), 14),  # 12 - 2 + 2 + 1 + 1
    (dict(kernel=2, stride=2), 14),
    (dict(kernel=3), 9),  # stride 1: 7 + 3 - 1
])
def test_conv_transpose2d(fields, hw):
    assert out((16, 7, 7), "conv_transpose2d", out_channels=8, **fields) == (8, hw, hw)


@pytest.mark.parametrize("op", ["maxpool2d", "avgpool2d"])
def test_pooling(op):
    assert out((3, 5, 5), op, kernel=2) == (3, 2, 2)  # stride defaults to the kernel
    assert out((3, 5, 5), op, kernel=2, ceil_mode=True) == (3, 3, 3)  # ceil((5 - 2) / 2) + 1
    assert out((64, 112, 112), op, kernel=3, stride=2, padding=1) == (64, 56, 56)
    # ceil_mode drops a last window that would start in the right padding
    assert out((1, 3, 3), op, kernel=2, stride=2, padding=1, ceil_mode=True) == (1, 2, 2)
    assert out((1, 6, 7), op, kernel=(2, 3), stride=(2, 1)) == (1, 3, 5)


def test_pooling_padding_at_most_half_the_kernel():
    with pytest.raises(ShapeError, match="layer 'L'"):
        out((3, 8, 8), "maxpool2d", kernel=2, padding=2)


def test_global_avgpool():
    assert out((8, 7, 7), "global_avgpool") == (8,)
    assert out((8, 10), "global_avgpool") == (8,)
    with pytest.raises(ShapeError):
        out((8,), "global_avgpool")


@pytest.mark.parametrize("op", ["batchnorm", "layernorm", "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax",
                                "dropout"])
def test_same_shape_ops(op):
    assert out((3, 4, 5), op) == (3, 4, 5)


def test_softmax_axis_out_of_range():
    with pytest.raises(ShapeError, match="axis"):
        out((3, 4), "softmax", axis=2)


def test_add_and_mul():
    assert out_multi([(3, 4)] * 3, "add") == (3, 4)
    assert out_multi([(3, 4)] * 2, "mul") == (3, 4)


def test_add_mismatched_shapes_names_the_layer():
    nb = NetworkBuilder("t")
    nb.input("a", shape=[3, 4])
    nb.input("b", shape=[3, 5])
    put(nb, "add", "sum", inputs=["a", "b"])
    with pytest.raises(ShapeError, match="layer 'sum'") as e:
        nb.build()
    assert isinstance(e.value, NetworkError) and "[3, 5]" in str(e.value)


def test_mul_takes_two_inputs():
    with pytest.raises(ShapeError, match="layer 'L'"):
        out_multi([(3, 4)] * 3, "mul")


def test_concat():
    assert out_multi([(2, 4, 4), (3, 4, 4)], "concat") == (5, 4, 4)
    assert out_multi([(5, 3), (5, 4)], "concat", axis=-1) == (5, 7)
    with pytest.raises(ShapeError, match="layer 'L'"):
        out_multi([(2, 4, 4), (3, 5, 4)], "concat")


def test_flatten_and_reshape():
    assert out((3, 4, 5), "flatten") == (60,)
    assert out((3, 4, 5), "reshape", shape=[-1, 5]) == (12, 5)
    assert out((3, 4, 5), "reshape", shape=[6, 10]) == (6, 10)
    with pytest.raises(ShapeError, match="cannot reshape"):
        out((3, 4, 5), "reshape", shape=[7, -1])
    with pytest.raises(ShapeError, match="at most one -1"):
        out((3, 4, 5), "reshape", shape=[-1, -1])


def test_select():
    assert out((5, 8), "select") == (8,)  # [CLS] token
    assert out((5, 8), "select", axis=1, index=-1) == (5,)
    with pytest.raises(ShapeError, match="index"):
        out((5, 8), "select", index=5)


def test_embedding_and_positional_embedding():
    assert out((7,), "embedding", dtype="int64", vocab=100, dim=16) == (7, 16)
    assert out((7, 16), "positional_embedding", max_len=512) == (7, 16)
    with pytest.raises(ShapeError, match="max_len"):
        out((7, 16), "positional_embedding", max_len=4)


@pytest.mark.parametrize("op", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional,return_sequences,expected", [
    (False, True, (10, 8)),
    (False, False, (8,)),
    (True, True, (10, 16)),
    (True, False, (16,)),
])
def test_recurrent(op, bidirectional, return_sequences, expected):
    assert out((10, 4), op, hidden=8, layers=2, bidirectional=bidirectional,
               return_sequences=return_sequences) == expected


def test_recurrent_needs_a_sequence():
    with pytest.raises(ShapeError, match="layer 'L'"):
        out((10,), "lstm", hidden=8)


def test_attention():
    assert out((4, 8), "attention", heads=2) == (4, 8)
    with pytest.raises(ShapeError, match="heads"):
        out((4, 8), "attention", heads=3)


def test_matmul():
    assert out_multi([(2, 3, 4), (2, 4, 5)], "matmul") == (2, 3, 5)
    assert out_multi([(2, 3, 4), (2, 5, 4)], "matmul", transpose_b=True) == (2, 3, 5)  # Q K^T
    with pytest.raises(ShapeError, match="inner"):
        out_multi([(2, 3, 4), (2, 5, 4)], "matmul")
    with pytest.raises(ShapeError, match="batch"):
        out_multi([(2, 3, 4), (3, 4, 5)], "matmul")


def test_upsample():
    assert out((3, 4, 4), "upsample", scale=2) == (3, 8, 8)
    assert out((3, 5), "upsample", scale=3, mode="bilinear") == (3, 15)


@pytest.mark.parametrize("op", ["softmax_cross_entropy", "mse", "bce"])
def test_losses_give_one_value_per_sample(op):
    assert out((10,), op) == (1,)
    assert out((5, 10), op) == (1,)
