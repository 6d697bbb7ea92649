"""Issue 14 options in predict: selective recomputation, hybrid sharding, context parallelism, activation offload.

Every figure below is worked by hand from the network (GPT-2 small: L = 12 layers, a = 12 heads, s = 1024,
h = 768) and the hardware profiles (A100: PCIe 4.0 x16 host link 31.5 GB/s x 0.80 efficiency, 6 us; DGX A100:
NVLink3 255 GB/s, 2 us per device, two GPUs per PCIe switch; dgx-a100-ib-hdr: 180 GB/s of network per node, 1 us).
"""

from __future__ import annotations

import pytest

import perfmodel
from perfmodel.errors import InputError
from perfmodel.parallel.predict import evaluate
from perfmodel.prediction import make_setup

L, A, S, H = 12, 12, 1024, 768
GPT = dict(dtype="bf16", optimizer="adam", layers=False)
PCIE4_BPS, PCIE4_LAT = 31.5e9 * 0.80, 6e-6


def _ev(net: str, hw: str, **kw):
    return evaluate(perfmodel.load_network(net), perfmodel.load_hardware(hw),
                    make_setup(**{k: v for k, v in kw.items() if k != "layers"}))


def _unfused(name: str):
    """The device without its kernel-level model: attention runs unfused and keeps its core (scores, mask)."""
    return perfmodel.load_hardware(name).model_copy(update={"gpu_arch": None, "software_stack": None})


def _sums(p) -> None:
    assert p.iteration_time_s > 0
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)


# ---- selective recomputation (Korthikanti et al. 2022) -------------------------------------------------

def test_selective_drops_5as2b_per_layer_but_one():
    """Korthikanti Table 2: selective recomputation removes the 5as/h sbh term (softmax output 2 as^2b, dropout
    mask as^2b, dropout output 2 as^2b) of every layer; one layer's core is alive again during its backward."""
    b = 8
    dev = _unfused("a100-sxm4-40gb")
    base = perfmodel.predict("gpt2_small", dev, batch=b, **GPT)
    sel = perfmodel.predict("gpt2_small", dev, batch=b, recompute="selective", **GPT)
    per_layer = 5 * A * S * S * b  # 503,316,480 B
    assert base.memory.activations_bytes - sel.memory.activations_bytes == pytest.approx((L - 1) * per_layer,
                                                                                           rel=1e-12)
    assert (L - 1) * per_layer == 5_536_481_280
    assert sel.memory.weights_bytes == base.memory.weights_bytes
    _sums(sel)


def test_selective_with_tp4_divides_the_core_by_t():
    """5as/(ht) sbh: with tensor parallelism each rank keeps (and drops) 1/t of the attention core."""
    kw = dict(batch=4, devices=4, plan={"dp": 1, "tp": 4, "pp": 1}, **GPT)
    dev = _unfused("a100-sxm4-40gb")
    base = perfmodel.predict("gpt2_small", dev, **kw)
    sel = perfmodel.predict("gpt2_small", dev, recompute="selective", **kw)
    assert base.memory.activations_bytes - sel.memory.activations_bytes == pytest.approx(
        (L - 1) * 5 * A * S * S * 4 / 4, rel=1e-12)


def test_fused_attention_keeps_no_core_and_selective_changes_nothing():
    """A stack with fused (flash) attention keeps no 5as^2b core in any layer, so selective recomputation has
    nothing left to drop or recompute: same time, same memory, and a warning says why."""
    b = 8
    fused = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=b, **GPT)
    plain = perfmodel.predict("gpt2_small", _unfused("a100-sxm4-40gb"), batch=b, **GPT)
    assert plain.memory.activations_bytes - fused.memory.activations_bytes == pytest.approx(
        L * 5 * A * S * S * b, rel=1e-12)
    sel = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=b, recompute="selective", **GPT)
    assert sel.iteration_time_s == fused.iteration_time_s
    assert sel.memory.total_bytes == fused.memory.total_bytes
    assert any("fused attention" in w for w in sel.warnings)


def test_selective_time_is_the_forward_of_the_attention_core():
    from perfmodel.compute import work_time
    from perfmodel.engine.rates import device_rates
    from perfmodel.ops.attention import CORE_KEYS
    from perfmodel.ops.base import graph_costs

    g = perfmodel.load_network("gpt2_small")
    # the roofline path (no kernel-level model, whose fused attention kernel absorbs softmax and dropout), so that
    # the scalar work_time of each Work is the engine's time of that Work
    dev = _unfused("a100-sxm4-40gb")
    base = perfmodel.predict(g, dev, batch=8, **GPT)
    sel = perfmodel.predict(g, dev, batch=8, recompute="selective", **GPT)
    rates = device_rates(dev, "bf16")
    # hand sum with the scalar work_time: scores, softmax, dropout and probs x V of the 12 attention layers
    extra = sum(work_time(w, rates, "attention").time_s for l, c in zip(g.layers, graph_costs(g, 8, 2))
                if l.op == "attention" for w in c.forward if w.efficiency_key in CORE_KEYS)
    assert extra > 0
    assert sel.breakdown["recompute"] == pytest.approx(extra, rel=1e-9)
    assert sel.iteration_time_s == pytest.approx(base.iteration_time_s + extra, rel=1e-9)
    full = perfmodel.predict(g, dev, batch=8, recompute="full", **GPT)
    assert base.iteration_time_s < sel.iteration_time_s < full.iteration_time_s


def test_selective_without_attention_warns_and_changes_nothing():
    a = perfmodel.predict("fcn5", "v100-sxm2", batch=16, layers=False)
    b = perfmodel.predict("fcn5", "v100-sxm2", batch=16, recompute="selective", layers=False)
    assert b.iteration_time_s == a.iteration_time_s and b.memory.total_bytes == a.memory.total_bytes
    assert any("no attention layer" in w for w in b.warnings)


# ---- hybrid sharding (FSDP HYBRID_SHARD) ---------------------------------------------------------------

def test_hybrid_collectives_by_hand():
    from perfmodel.parallel.plan import Placement, Plan, Tier
    from perfmodel.parallel.sharding import hybrid_collectives

    intra = Tier("in", 8, 100e9, 1e-6)
    pl = Placement(Plan(dp=16), 16, 2, 8, intra, (), 8, 2, 1, intra, 200e9, 5e-6)
    bucket, gather, scatter, per_tier = hybrid_collectives(pl)
    n = 1e9
    # reduce-scatter + all-gather in the node (2 x 7/8 n / 100 GB/s + 14 us) + ring all-reduce of n/8 over 2 nodes
    # by 8 ranks sharing 200 GB/s (2 x 1/2 x n / 200 GB/s + 10 us)
    assert bucket(n) == pytest.approx(0.0175 + 14e-6 + 0.005 + 10e-6, rel=1e-12)
    assert gather(n) == pytest.approx(0.00875 + 7e-6, rel=1e-12)
    assert scatter(n) == pytest.approx(0.00875 + 7e-6 + 0.005 + 10e-6, rel=1e-12)  # reduce-scatter + across nodes
    t = per_tier(n)
    assert t["in_node_s"] == pytest.approx(3 * (0.00875 + 7e-6), rel=1e-12)
    assert t["across_nodes_s"] == pytest.approx(0.005 + 10e-6, rel=1e-12)


def test_hybrid_zero_paper_example():
    """ZeRO paper Figure 1 (7.5B parameters, Nd = 64, K = 12: 120 GB plain, 1.9 GB stage 3): hybrid sharding in
    nodes of 8 shards over the 8 ranks of a node only, (2 + 2 + 12) x 7.5e9 / 8 = 15.0 GB per rank."""
    from perfmodel.parallel.sharding import shard_degree, zero_bytes_per_rank

    stage, group = shard_degree(0, "hybrid", 64, 8)
    assert (stage, group) == (3, 8) and shard_degree(0, "full", 64, 8) == (3, 64) and shard_degree(1, "none", 64, 8) == (1, 64)
    assert zero_bytes_per_rank(7.5e9, stage, group).total_bytes == pytest.approx(15.0e9)


def test_hybrid_on_one_node_is_full_sharding():
    kw = dict(batch=4, devices=8, **GPT)
    full = perfmodel.predict("gpt2_small", "dgx-a100", sharding="full", **kw)
    hyb = perfmodel.predict("gpt2_small", "dgx-a100", sharding="hybrid", **kw)
    assert hyb.iteration_time_s == full.iteration_time_s
    assert hyb.memory.total_bytes == full.memory.total_bytes


def test_hybrid_shards_over_the_node_and_prices_each_tier():
    kw = dict(batch=4, **GPT)
    psi = 124_439_808  # parameters of gpt2_small
    full8 = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", devices=8, sharding="full", **kw)
    full16 = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", devices=16, sharding="full", **kw)
    hyb16 = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", devices=16, sharding="hybrid", **kw)
    assert hyb16.memory.total_bytes == full8.memory.total_bytes  # state / 8, not / 16
    assert full16.memory.optimizer_bytes == pytest.approx(8 * psi / 16)
    assert hyb16.memory.optimizer_bytes == pytest.approx(8 * psi / 8)
    sh = hyb16.parallel["sharding"]
    assert (sh["stage"], sh["sharded_over"]) == (3, 8)
    n = 2 * psi  # bf16 parameters
    gather = 7 / 8 * n / 255e9 + 7 * 2e-6
    assert sh["per_tier"]["in_node_s"] == pytest.approx(3 * gather, rel=1e-12)
    assert sh["per_tier"]["across_nodes_s"] == pytest.approx(n / 180e9 + 2 * 1e-6, rel=1e-12)
    _sums(hyb16)


# ---- context parallelism (ring attention) --------------------------------------------------------------

def test_ring_exposed_by_hand():
    import numpy as np

    from perfmodel.parallel.context import ring_exposed

    # step 1 us + 1e6 B / 1e11 B/s = 11 us; compute 40 us / 4 = 10 us per step: 3 steps x 1 us exposed
    got = ring_exposed(np.array([1e6, 0.0, 1e6]), np.array([4e-5, 4e-5, 1e-3]), 4, 1e11, 1e-6)
    assert got.tolist() == pytest.approx([3e-6, 0.0, 0.0])
    assert ring_exposed(np.array([1e6]), np.array([0.0]), 1, 1e11, 1e-6).tolist() == [0.0]


def test_context_parallel_halves_activations_and_counts_devices():
    one = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=8, **GPT)
    cp = perfmodel.predict("gpt2_small", "dgx-a100", batch=8, devices=8, context_parallel=2, **GPT)
    assert cp.memory.activations_bytes == pytest.approx(one.memory.activations_bytes / 2, rel=1e-12)
    assert cp.memory.weights_bytes == one.memory.weights_bytes  # parameters whole on every cp rank
    assert cp.devices == 8 and cp.parallel["plan"]["dp"] == 4 and cp.parallel["plan"]["cp"] == 2
    assert cp.batch == 4 * 8  # the cp ranks of a replica share its samples
    assert cp.parallel["tiers"]["data"]["ranks"] == 8  # gradients averaged over dp x cp
    assert cp.parallel["context_tier"].startswith("nvlink3")
    _sums(cp)


def test_context_comm_by_hand():
    from perfmodel.parallel.rank import attention_core

    kw = dict(batch=1, devices=16, context_parallel=16, dtype="fp16", optimizer="adam", layers=False)
    ev = _ev("gpt2_small", "dgx1-v100-eth10g", **kw)
    p = perfmodel.predict("gpt2_small", "dgx1-v100-eth10g", **kw)
    core = attention_core(ev.graph, ev.ranks)
    kv = 2 * (S * H * 2) / 16  # keys and values of 64 tokens, fp16
    bw, lat = 1.25e9 * 0.9, 30e-6  # the ring crosses the two nodes over one 10 GbE NIC (efficiency 0.9, 30 us)
    tier = ev.placement.cp_tier
    assert (tier.bandwidth_Bps, tier.latency_s) == pytest.approx((bw, lat), rel=1e-12)
    att = [i for i, l in enumerate(ev.graph.layers) if l.op == "attention"]
    hand = sum(15 * max(0.0, lat + kv / bw - core["forward"][i] / 16)
               + 15 * max(0.0, lat + 2 * kv / bw - core["backward"][i] / 16) for i in att)
    assert hand > 0
    assert p.parallel["context_comm_s"] == pytest.approx(hand, rel=1e-9)
    _sums(p)


@pytest.mark.parametrize("kw, field", [(dict(devices=8, context_parallel=3), "context_parallel"),
                                       (dict(devices=6, context_parallel=3), "sequence length"),
                                       (dict(devices=2, context_parallel=2, sync="async"), "context_parallel")])
def test_context_parallel_errors(kw, field):
    with pytest.raises(InputError, match=field):
        perfmodel.predict("gpt2_small", "dgx-a100", batch=2, **kw, **GPT)


def test_context_parallel_needs_a_sequence_model():
    with pytest.raises(InputError, match="no attention layer"):
        perfmodel.predict("fcn5", "dgx1-v100", devices=2, context_parallel=2, layers=False)


# ---- activation offload ----------------------------------------------------------------------------------

def test_offload_time_by_hand():
    b = 8
    base = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=b, **GPT)
    off = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=b, offload_activations=True, **GPT)
    inputs = b * S * 8  # int64 token ids
    X = base.memory.activations_bytes - inputs
    copy = PCIE4_LAT + X / PCIE4_BPS
    F = base.stages["forward"]
    B = base.stages["backward_data"] + base.stages["backward_weight"]
    want = max(0.0, copy - F) + max(0.0, copy - B)
    assert want > 0
    assert off.breakdown["offload"] == pytest.approx(want, rel=1e-9)
    assert off.iteration_time_s == pytest.approx(base.iteration_time_s + want, rel=1e-9)
    assert off.parallel["offload_s"] == off.breakdown["offload"]
    _sums(off)


def test_offload_keeps_two_layers_on_the_device():
    from perfmodel.ops.base import graph_costs

    g = perfmodel.load_network("gpt2_small")
    off = perfmodel.predict(g, _unfused("a100-sxm4-40gb"), batch=8, offload_activations=True, **GPT)
    saved = sorted((c.saved_bytes for c in graph_costs(g, 8, 2)), reverse=True)
    assert off.memory.activations_bytes == pytest.approx(8 * S * 8 + saved[0] + saved[1], rel=1e-12)


def test_offload_shares_the_pcie_switch():
    kw = dict(batch=8, devices=8, **GPT)
    base = perfmodel.predict("gpt2_small", "dgx-a100", **kw)
    off = perfmodel.predict("gpt2_small", "dgx-a100", offload_activations=True, **kw)
    copy = PCIE4_LAT + (base.memory.activations_bytes - 8 * S * 8) / (PCIE4_BPS / 2)  # two GPUs per switch
    F, B = base.stages["forward"], base.stages["backward_data"] + base.stages["backward_weight"]
    assert off.breakdown["offload"] == pytest.approx(max(0.0, copy - F) + max(0.0, copy - B), rel=1e-9)


def test_offload_errors():
    with pytest.raises(InputError, match="offload_activations"):
        perfmodel.predict("fcn5", "i7-3820", batch=8, offload_activations=True, layers=False)


# ---- predict --json and --help ----------------------------------------------------------------------------

def test_cli_json_carries_the_large_model_setup():
    import json

    from typer.testing import CliRunner

    from perfmodel.cli import app

    r = CliRunner().invoke(app, ["predict", "gpt2_small", "-H", "dgx-a100-ib-hdr", "-n", "16", "-b", "2",
                                 "--dtype", "bf16", "--optimizer", "adam", "--sharding", "hybrid",
                                 "--context-parallel", "2", "--recompute", "selective", "--offload-activations",
                                 "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.output)
    par = d["parallel"]
    assert par["setup"] == {"zero": 0, "sharding": "hybrid", "sequence_parallel": False, "context_parallel": 2,
                            "virtual_stages": 1, "recompute": "selective", "offload_activations": True,
                            "expert_parallel": 1}
    assert par["plan"]["cp"] == 2 and par["plan"]["dp"] == 8
    assert par["sharding"]["sharded_over"] == 8 and set(par["sharding"]["per_tier"]) == {"in_node_s",
                                                                                          "across_nodes_s"}
    assert d["breakdown"]["offload"] == par["offload_s"] > 0
    assert sum(d["breakdown"].values()) == pytest.approx(d["iteration_time_s"], rel=1e-9)
    help_text = CliRunner().invoke(app, ["predict", "--help"], terminal_width=400).output
    for flag in ("--sharding", "--context-parallel", "--recompute", "--offload-activations"):
        line = next(x for x in help_text.splitlines() if flag in x)
        assert "not modelled" not in line


def test_one_device_json_echoes_a_large_model_option():
    p = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=2, recompute="selective", **GPT)
    assert p.parallel["setup"]["recompute"] == "selective" and p.parallel["plan"]["cp"] == 1
    assert p.hardware == "a100-sxm4-40gb" and p.devices == 1
    assert perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=2, **GPT).parallel is None


# ---- ZeRO-2 with a pipeline ---------------------------------------------------------------------------------

def test_zero2_with_pipeline_by_hand():
    """Each stage reduce-scatters its gradient buckets over the dp = 4 replicas and, after its optimizer step,
    all-gathers its updated bf16 parameters (ring: 3/4 n / 255 GB/s + 3 x 2 us on the DGX A100's NVLink); the step
    ends when the last stage's all-gather does."""
    kw = dict(batch=8, devices=8, plan={"dp": 4, "tp": 1, "pp": 2, "microbatches": 4}, zero=2, **GPT)
    ev = _ev("gpt2_small", "dgx-a100", **kw)
    p = perfmodel.predict("gpt2_small", "dgx-a100", **kw)
    stg, syn, t = ev.staged, ev.synced, ev.it.timing
    want = [3 / 4 * 2 * n / 255e9 + 3 * 2e-6 for n in stg.st_params]
    assert list(syn.after) == pytest.approx(want, rel=1e-12)
    assert p.parallel["sharding"]["after_step_gather_s"] == pytest.approx(want, rel=1e-12)
    ends = [t.last_backward_end_s[s] - stg.B[s] + syn.sched[s].end_s + syn.copy[s].time_s + syn.opt[s].time_s
            + want[s] for s in range(2)]
    assert p.iteration_time_s == pytest.approx(max(ends), rel=1e-12)
    # fp32 gradients of the fullest stage sharded over 4 replicas: 4 B x P_stage / 4
    assert any(p.memory.gradients_bytes == pytest.approx(4 * n / 4, rel=1e-12) for n in stg.st_params)
    _sums(p)
