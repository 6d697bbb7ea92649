"""perfmodel fit / perfmodel.recompute: the largest batch fits and batch + 1 does not; recomputation rules."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from perfmodel.cli import app
from perfmodel.errors import InputError
from perfmodel.graph.io import load_network
from perfmodel.hardware.loader import load_hardware
from perfmodel.memory import memory_footprint
from perfmodel.ops.base import graph_costs
from perfmodel.planning import fit
from perfmodel.recompute import block_segments, recompute_memory, segments, sqrt_segments

from conftest import small_cnn


def _fits(g, dev, batch, dtype, optimizer, rule=None) -> bool:
    from perfmodel.ops import DTYPE_BYTES

    costs = graph_costs(g, batch, DTYPE_BYTES[dtype])
    acts = recompute_memory(g, batch, dtype, rule, costs).activations_bytes if rule else None
    return memory_footprint(g, dev, batch, dtype, optimizer, costs=costs, activations_bytes=acts).fits


@pytest.mark.parametrize("net,hw,dtype,opt,rule", [
    ("resnet50", "v100-sxm2", "fp32", "sgd", None),
    ("resnet50", "v100-sxm2", "fp16", "adam", "auto"),
    ("bert_base", "a100-sxm4-40gb", "bf16", "adamw", None),
    ("bert_base", "t4", "fp16", "adam", "blocks"),
    ("gpt2_small", "v100-sxm2", "fp16", "adam", "sqrt"),
    ("lstm32", "k80", "fp32", "momentum", None),
    ("vgg16", "p100-sxm2", "fp32", "sgd", "auto"),
])
def test_fit_batch_fits_and_next_does_not(net, hw, dtype, opt, rule):
    g = load_network(net)
    dev = load_hardware(hw)
    r = fit(g, dev, dtype=dtype, optimizer=opt, recompute=rule)
    assert r.batch >= 1
    assert r.memory.fits and r.memory.total_bytes <= r.memory.capacity_bytes
    assert r.next_total_bytes > r.memory.capacity_bytes
    assert _fits(g, dev, r.batch, dtype, opt, rule)
    assert not _fits(g, dev, r.batch + 1, dtype, opt, rule)
    parts = ("weights", "gradients", "optimizer", "activations", "workspace", "reserved")
    assert sum(getattr(r.memory, f"{k}_bytes") for k in parts) == pytest.approx(r.memory.total_bytes)
    if rule:
        assert r.batch >= r.max_batch_without_recompute
        assert r.recompute_time_s > 0 and r.iteration_time_s > r.recompute_time_s
    else:
        assert r.recompute_time_s == 0.0


def test_recompute_lowers_activations_and_costs_a_forward():
    g = load_network("gpt2_small")
    m = recompute_memory(g, 4, "fp16", "blocks")
    assert m.rule == "blocks" and m.segments == 14  # embeddings, 12 decoder layers, head
    assert m.activations_bytes < m.without_bytes / 4
    assert m.activations_bytes == pytest.approx(m.inputs_bytes + m.checkpoint_bytes + m.largest_segment_bytes)
    # memory proportional to the batch (so the closed-form largest batch holds)
    m8 = recompute_memory(g, 8, "fp16", "blocks")
    assert m8.activations_bytes == pytest.approx(2 * m.activations_bytes, rel=1e-6)
    # the extra time is one forward of every layer but the last segment's
    from perfmodel.recompute import recompute_extra_time
    from perfmodel.step import step_profile

    prof = step_profile(g, load_hardware("a100-sxm4-40gb"), 4, "fp16")
    last = set(segments(g, "blocks")[-1])
    exp = sum(t.forward.time_s for i, t in enumerate(prof.times)
              if i not in last and g.layers[i].op != "input" and g.layers[i].in_backward)
    assert recompute_extra_time(prof, m) == pytest.approx(exp)


def test_segment_rules():
    g = load_network("resnet50")
    blocks = block_segments(g)
    names = [g.layers[s[0]].name for s in blocks]
    assert "layer1.b.0.body.c1.conv" in names and "layer4.b.1.body.c1.conv" in names
    assert sorted(i for s in blocks for i in s) == list(range(len(g.layers)))  # a partition, in order
    sq = sqrt_segments(g, graph_costs(g, 1, 4))
    assert len(sq) <= 14 and [i for s in sq for i in s] == list(range(len(g.layers)))
    assert segments(small_cnn(), "auto") == sqrt_segments(small_cnn(), graph_costs(small_cnn(), 1, 4))
    with pytest.raises(InputError):
        segments(g, "everything")


def test_fit_not_even_batch_one():
    r = fit("gpt3_175b", "a100-sxm4-80gb", dtype="fp16", optimizer="adam")
    assert r.batch == 0 and not r.memory.fits and r.iteration_time_s is None


def test_fit_cli_text_and_json():
    run = CliRunner().invoke(app, ["fit", "resnet50", "--hardware", "v100-sxm2", "--dtype", "fp16"])
    assert run.exit_code == 0, run.output
    assert "largest batch per device that fits" in run.output and "activations" in run.output
    run = CliRunner().invoke(app, ["fit", "bert_base", "-H", "t4", "--recompute", "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.output)
    assert d["batch"] > d["max_batch_without_recompute"] and d["recompute"] == "blocks"
    assert d["memory"]["fits"] is True and d["next_total_bytes"] > d["memory"]["capacity_bytes"]
    run = CliRunner().invoke(app, ["fit", "gpt3_175b", "-H", "a100-sxm4-80gb"])
    assert run.exit_code == 1 and "does not fit" in run.output
