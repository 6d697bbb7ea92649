"""Network files with blocks, the builder API, saving and loading round trips."""

from __future__ import annotations

import pytest

import perfmodel
from perfmodel.errors import NetworkError
from perfmodel.graph import NetworkBuilder, load_network, save_network

BLOCKS = """\
name: tiny-resnet
blocks:
  basic:
    params: {ch: null, stride: 1}
    layers:
      - {op: conv2d, name: c1, out_channels: $ch, kernel: 3, padding: 1, stride: $stride, bias: false}
      - {op: batchnorm, name: bn1}
      - {op: relu, name: r1}
      - {op: add, name: add, inputs: [r1, $input]}
layers:
  - {op: input, name: x, shape: [8, 16, 16]}
  - {block: basic, name: stage1, repeat: 3, args: {ch: 8}}
  - {op: global_avgpool, name: gap}
  - {op: dense, name: fc, units: 10}
  - {op: softmax_cross_entropy, name: loss}
"""


def test_blocks_expand_with_names_and_chaining(tmp_path):
    p = tmp_path / "n.yaml"
    p.write_text(BLOCKS)
    g = load_network(p)
    names = [l.name for l in g.layers]
    assert names[:5] == ["x", "stage1.0.c1", "stage1.0.bn1", "stage1.0.r1", "stage1.0.add"]
    assert g["stage1.1.c1"].input_names == ("stage1.0.add",)
    assert g["stage1.0.add"].input_names == ("stage1.0.r1", "x")
    assert g["stage1.2.add"].input_names == ("stage1.2.r1", "stage1.1.add")
    assert g["gap"].output_shape == (8,)
    assert len(g) == 1 + 3 * 4 + 3


@pytest.mark.parametrize("suffix,flat", [(".yaml", False), (".json", False), (".yaml", True), (".json", True)])
def test_save_and_load_gives_same_graph(tmp_path, suffix, flat):
    p = tmp_path / "n.yaml"
    p.write_text(BLOCKS)
    g = load_network(p)
    out = save_network(g, tmp_path / f"out{suffix}", flat=flat)
    assert load_network(out) == g


def test_builder_equals_file(tmp_path):
    b = NetworkBuilder("mlp")
    b.input("x", shape=[20])
    b.dense("fc1", units=30)
    b.relu("r")
    b.dense("fc2", units=5)
    b.mse("loss")
    g = b.build()
    out = save_network(g, tmp_path / "mlp.yaml")
    assert load_network(out) == g
    assert g["fc2"].output_shape == (5,)


def test_builder_rejects_bad_layer_immediately():
    b = NetworkBuilder("x")
    b.input("x", shape=[4])
    with pytest.raises(NetworkError, match="units"):
        b.dense("fc", units=0)


def test_zoo_files_round_trip(tmp_path):
    for name in ("resnet50", "gpt2_small", "lstm32"):
        g = perfmodel.load_network(name)
        assert load_network(save_network(g, tmp_path / f"{name}.yaml")) == g


def test_backward_flags():
    b = NetworkBuilder("gan-ish")
    b.input("z", shape=[4])
    b.dense("g", units=4)
    b.input("label", shape=[4])
    b.relu("side", inputs=["label"])  # not on a path to the loss
    b.mse("loss", inputs=["g"])
    g = b.build()
    assert not g["side"].in_backward
    assert not g["g"].needs_input_grad  # reads the input directly
    assert g["loss"].needs_input_grad


def test_fan_out_gradients_are_summed_once_per_extra_consumer():
    from conftest import small_cnn

    from perfmodel.ops import op_cost

    g = small_cnn()
    r1 = g["r1"]  # read by c2 and by the residual add
    assert r1.grad_consumers == 2 and g["c2"].grad_consumers == 1
    c = op_cost(r1, 4, 4)
    acc = c.backward_data[-1]
    n = 4 * 16 * 32 * 32 * 4  # output bytes of r1 at batch 4
    assert (acc.bytes_read, acc.bytes_written, acc.kernels) == (2 * n, n, 1)
    assert op_cost(r1, 4, 4).flops("backward_data") > op_cost(g["r2"], 4, 4).flops("backward_data")


def test_same_padding_keeps_size_for_even_kernels_and_needs_stride_1():
    from perfmodel.errors import ShapeError

    b = NetworkBuilder("s")
    b.input("x", shape=[3, 10, 10])
    b.conv2d("c", out_channels=4, kernel=4, padding="same")
    assert b.build()["c"].output_shape == (4, 10, 10)
    b2 = NetworkBuilder("s2")
    b2.input("x", shape=[3, 10, 10])
    b2.conv2d("c", out_channels=4, kernel=3, padding="same", stride=2)
    with pytest.raises(ShapeError, match="stride 1"):
        b2.build()
