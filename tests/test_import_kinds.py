"""The importer's op kinds (moe, elementwise, pad, slice): shapes and costs against hand-computed values."""

from __future__ import annotations

import pytest

from perfmodel.errors import PerfModelError
from perfmodel.graph import NetworkBuilder
from perfmodel.ops import op_cost
from perfmodel.ops.moe import moe_params


def _layer(shapes, op, **fields):
    nb = NetworkBuilder("t")
    names = []
    for i, s in enumerate(shapes):
        nb.input(f"x{i}", shape=list(s))
        names.append(nb.layernorm(f"n{i}", inputs=[f"x{i}"]))  # so the layer has a backward-data stage
    nb.layer(op, "L", inputs=names, **fields)
    return nb.build()["L"]


def _mat(c, stage):
    return sum(w.flops for w in c.stage(stage) if w.family == "matrix")


def test_moe_costs_expected_tokens_per_expert():
    # batch 2 x 5 tokens = 10 tokens, D 8, 4 experts, top-2, hidden 6, gated (3 matrices per expert)
    layer = _layer([(5, 8)], "moe", experts=4, top_k=2, hidden=6, gated=True)
    assert layer.output_shape == (5, 8)
    c = op_cost(layer, 2, 4)
    router = 2 * 10 * 8 * 4  # 640
    experts = 2 * 20 * 8 * 6 * 2 + 2 * 20 * 6 * 8  # 20 routed tokens: gate+up 3840, down 1920
    assert _mat(c, "forward") == router + experts == 6400
    assert _mat(c, "backward_data") == _mat(c, "backward_weight") == 6400
    assert c.params == 8 * 4 + 4 * 3 * 8 * 6 == 608
    assert c.extra["tokens_per_expert"] == 5.0
    assert c.output_bytes == 10 * 8 * 4
    gemms = [w for w in c.forward if w.shape is not None and w.efficiency_key.startswith("matmul/moe")]
    assert [(w.shape.m, w.shape.batch, w.kernels) for w in gemms] == [(5, 8, 8), (5, 4, 4)]  # gate and up, then down


def test_moe_params_with_biases_and_validation():
    assert moe_params(8, 4, 6, gated=True, bias=True, router_bias=True) == 608 + 4 * (2 * 6 + 8) + 4 == 692
    assert moe_params(8, 4, 6, gated=False, bias=True, router_bias=False) == 32 + 4 * (2 * 48 + 6 + 8) == 472
    with pytest.raises(PerfModelError):
        _layer([(5, 8)], "moe", experts=2, top_k=3, hidden=6)


def test_elementwise_broadcast_and_learned_scale():
    layer = _layer([(5, 8), (5, 1)], "elementwise", fn="mul", flops_per_element=2, params=8)
    assert layer.output_shape == (5, 8)
    c = op_cost(layer, 2, 4)
    (fwd,), (bwd,), (bw,) = c.forward, c.backward_data, c.backward_weight
    assert (fwd.flops, fwd.bytes_read, fwd.bytes_written) == (160, 360, 320)  # 80 out, 90 in elements
    assert (bwd.flops, bwd.bytes_read, bwd.bytes_written, bwd.kernels) == (320, 1000, 360, 2)
    assert (bw.flops, bw.bytes_written) == (160, 32) and c.params == 8
    with pytest.raises(PerfModelError):
        _layer([(5, 8), (4, 8)], "elementwise")


def test_pad_and_slice():
    pad = op_cost(_layer([(5, 8)], "pad", output_shape=[6, 9]), 2, 4)
    assert [(w.bytes_read, w.bytes_written) for w in pad.forward] == [(320, 432)]
    assert [(w.bytes_read, w.bytes_written) for w in pad.backward_data] == [(320, 320)]
    sl = op_cost(_layer([(5, 8)], "slice", output_shape=[5, 4]), 2, 4)
    assert sl.forward == () and sl.extra["view"]
    assert [(w.bytes_read, w.bytes_written, w.kernels) for w in sl.backward_data] == [(160, 480, 2)]
    learned = op_cost(_layer([(5, 8)], "pad", output_shape=[6, 9], params=9), 2, 4)
    assert learned.params == 9  # a learned fill: dy summed over the 28 padded elements of the batch
    assert [(w.flops, w.bytes_read, w.bytes_written) for w in learned.backward_weight] == [(28, 112, 36)]
    with pytest.raises(PerfModelError):
        _layer([(5, 8)], "pad", output_shape=[4, 9])
    with pytest.raises(PerfModelError):
        _layer([(5, 8)], "slice", output_shape=[6, 8])


def test_custom_layer_with_no_flops_and_no_bytes_is_a_warning(tmp_path):
    from typer.testing import CliRunner

    from perfmodel.cli import app
    from perfmodel.graph import NetworkBuilder, save_network
    from perfmodel.ops.layout import free_custom_layers

    nb = NetworkBuilder("free")
    nb.input("x", shape=[4])
    nb.dense("fc", units=4)
    nb.custom("odd", output_shape=[4], bytes_per_sample=0, note="fft at model.py:3")
    nb.custom("costed", output_shape=[4], forward_flops_per_sample=8.0)
    g = nb.build()
    assert free_custom_layers(g) == ["custom layer 'odd' has no FLOPs and no bytes: it is costed as free "
                                     "(fft at model.py:3)"]
    save_network(g, tmp_path / "free.yaml")
    for argv in (["show", str(tmp_path / "free.yaml")], ["predict", str(tmp_path / "free.yaml"), "--hardware",
                                                         "a100-sxm4-80gb"]):
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0 and "warning: custom layer 'odd' has no FLOPs and no bytes" in r.output
