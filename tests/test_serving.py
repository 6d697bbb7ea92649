"""perfmodel.serving: forward-only latency, throughput, inference memory; the serve CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from perfmodel.cli import app
from perfmodel.errors import InputError
from perfmodel.graph.io import load_network
from perfmodel.hardware.loader import load_hardware
from perfmodel.ops import DTYPE_BYTES
from perfmodel.ops.base import graph_costs
from perfmodel.prediction import predict
from perfmodel.serving import SKIPPED_AT_INFERENCE, serve, serving_activation_peak
from perfmodel.step import step_profile

from conftest import small_cnn, small_mlp


@pytest.mark.parametrize("net,hw,dtype", [("resnet50", "v100-sxm2", "fp16"), ("lstm32", "a100-sxm4-40gb", "fp32"),
                                          ("bert_base", "t4", "fp16"), ("gpt2_small", "h100-sxm", "bf16")])
def test_forward_only_time_and_memory(net, hw, dtype):
    g = load_network(net)
    dev = load_hardware(hw)
    r = serve(g, dev, [1, 8, 32], dtype=dtype)
    assert [p.batch for p in r.points] == [1, 8, 32]
    for p in r.points:
        prof = step_profile(g, dev, p.batch, dtype)
        fwd = sum(t.forward.time_s for l, t in zip(g.layers, prof.times) if l.op not in SKIPPED_AT_INFERENCE)
        assert p.latency_s == pytest.approx(fwd)
        assert p.latency_s < prof.total_s  # no backward, no optimizer
        assert p.throughput == pytest.approx(p.batch / p.latency_s)
        assert sum(p.breakdown.values()) == pytest.approx(p.latency_s)
        # weights in the serving dtype only; activations far below the training footprint
        assert p.memory.weights_bytes == r.params * DTYPE_BYTES[dtype]
        train = predict(g, dev, batch=p.batch, dtype=dtype, layers=False).memory
        assert p.memory.weights_bytes <= train.weights_bytes and p.memory.total_bytes < train.total_bytes
        assert 0 < p.memory.activations_bytes < train.activations_bytes
        assert p.memory.total_bytes == pytest.approx(p.memory.weights_bytes + p.memory.activations_bytes
                                                     + p.memory.reserved_bytes)
    # larger batches: more throughput, more latency (per-kernel overheads amortised)
    assert r.points[-1].throughput > r.points[0].throughput
    assert r.points[-1].latency_s > r.points[0].latency_s
    assert r.max_batch > 32


def test_activation_peak_is_liveness_not_sum():
    # a plain chain: the peak is two neighbouring activations (input of a layer and its output), not all
    g = small_mlp()
    costs = graph_costs(g, 10, 4)
    peak, at = serving_activation_peak(g, costs)
    outs = {l.name: c.output_bytes for l, c in zip(g.layers, costs)}
    assert peak == pytest.approx(max(outs["x"] + outs["fc1"], outs["fc1"] + outs["r1"], outs["r1"] + outs["fc2"]))
    assert at in ("fc1", "r1", "fc2")
    # residual: the shortcut stays alive until the add
    g = small_cnn()
    costs = graph_costs(g, 4, 4)
    peak, _ = serving_activation_peak(g, costs)
    o = {l.name: c.output_bytes for l, c in zip(g.layers, costs)}
    assert peak >= o["r1"] + o["c2"] + o["r2"] - o["c2"]  # r1 still alive while r2 is produced
    assert peak < sum(o.values())


def test_serving_max_batch_fits():
    r = serve("resnet50", "t4", [1], dtype="fp16")
    big = serve("resnet50", "t4", [r.max_batch, r.max_batch + 1], dtype="fp16")
    assert big.points[0].memory.fits and not big.points[1].memory.fits


def test_serving_bad_input():
    with pytest.raises(InputError):
        serve("resnet50", "k80", [1], dtype="fp16")
    with pytest.raises(InputError):
        serve("resnet50", "v100-sxm2", [0])
    with pytest.raises(InputError):
        serve("resnet50", "v100-sxm2", [])


def test_serve_cli():
    run = CliRunner().invoke(app, ["serve", "resnet50", "--hardware", "v100-sxm2", "--batch", "1,8,32",
                                   "--dtype", "fp16"])
    assert run.exit_code == 0, run.output
    assert "latency" in run.output and "largest batch that fits" in run.output
    run = CliRunner().invoke(app, ["serve", "lstm32", "-H", "i7-3820", "--batch", "1,16", "--threads", "2", "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.output)
    assert [p["batch"] for p in d["points"]] == [1, 16] and d["threads"] == 2
