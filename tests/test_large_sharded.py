"""Issue 14 combinations once refused: ZeRO-3 / FSDP with a pipeline (torchtitan's FSDP2 + PP), activation offload
with full recomputation (Megatron-LM offloads the checkpointed layer inputs).

Figures worked by hand from GPT-2 small (networks/gpt2_small.yaml) on the DGX A100 profile: NVLink3 ring of the
dp = 4 replicas of a stage at 255 GB/s and 2 us per step, so an all-gather or reduce-scatter of n bytes takes
3/4 n / 255e9 + 3 x 2e-6 s; bf16 compute (2 B parameters gathered), fp32 gradients (4 B), Adam (8 B of state and
4 B of fp32 master weights per parameter).
"""

from __future__ import annotations

import pytest

import perfmodel
from perfmodel.parallel.predict import evaluate
from perfmodel.parallel.sharding import forward_gathers, pipelined_terms, pipelined_zero3
from perfmodel.prediction import make_setup

GPT = dict(dtype="bf16", optimizer="adam", layers=False)
PIPE = dict(batch=8, devices=8, plan={"dp": 4, "tp": 1, "pp": 2, "microbatches": 4}, **GPT)


def _ev(net: str, hw: str, **kw):
    return evaluate(perfmodel.load_network(net), perfmodel.load_hardware(hw),
                    make_setup(**{k: v for k, v in kw.items() if k != "layers"}))


def _ring4(n: float) -> float:
    """All-gather or reduce-scatter of n bytes over 4 ranks of the DGX A100's NVLink."""
    return 3 / 4 * n / 255e9 + 3 * 2e-6 if n > 0 else 0.0


S_A100 = 0.189  # pytorch-cuda12's overlap compute_slowdown (Lee et al. 2025): compute beside a gather 1.189x as long


def _stage_gathers(params, stg) -> tuple[float, float]:
    """(exposed, compute slowdown) seconds of every stage's prefetched bf16 forward gathers, added up."""
    out = [forward_gathers([_ring4(2.0 * n) for n in params[a:e]], stg.f_l[a:e], S_A100) for a, e in stg.ranges]
    return sum(x for x, _ in out), sum(y for _, y in out)


# ---- the pure functions ------------------------------------------------------------------------------------

def test_pipelined_terms_by_hand():
    """P = 100 parameters, bf16 + Adam: weights 4P + 2P (master + AMP copy), gradients 4P, state 8P; over dp = 4 the
    weights and state shard, the gathered stage adds 2P and the fp32 gradients stay whole."""
    t = {"weights_bytes": 600.0, "gradients_bytes": 400.0, "optimizer_bytes": 800.0, "activations_bytes": 5.0}
    out = pipelined_terms(t, 4, 200.0)
    assert out == {"weights_bytes": 150.0 + 200.0, "gradients_bytes": 400.0, "optimizer_bytes": 200.0,
                   "activations_bytes": 5.0}
    assert pipelined_terms(t, 1, 200.0)["weights_bytes"] == 600.0  # one rank: nothing sharded, nothing gathered


def test_pipelined_zero3_by_hand():
    """Two stages [0, 2) and [2, 3): per unit a gather of 1 s units and a scatter of 2 s; stage 0 computes 1 s per
    unit: gather 0 (1 s) is exposed, gather 1 hides behind unit 0 -> 1 s; stage 1: its one gather, 1 s."""
    extra, after, _ = pipelined_zero3(lambda n: n, lambda n: 2 * n, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0],
                                   [1.0, 1.0, 3.0], [(0, 2), (2, 3)])
    assert extra == 2.0 and after == (4.0, 2.0)
    extra, after, _ = pipelined_zero3(lambda n: n, lambda n: 2 * n, [1.0, 0.0, 1.0], [1.0, 0.0, 1.0],
                                   [1.0, 1.0, 3.0], [(0, 2), (2, 3)], overlap=False)
    assert extra == 2.0 and after == (2.0, 2.0)  # a layer without parameters communicates nothing


# ---- FSDP + PP in predict ----------------------------------------------------------------------------------

def test_fsdp_with_pipeline_time_by_hand():
    """Every stage all-gathers its bf16 parameters once (at its first forward, prefetching unit by unit; the stages'
    exposed gathers add up) and reduce-scatters its fp32 gradients once after its last backward, before its
    optimizer step; no gradient bucket is all-reduced."""
    ev = _ev("gpt2_small", "dgx-a100", sharding="full", **PIPE)
    p = perfmodel.predict("gpt2_small", "dgx-a100", sharding="full", **PIPE)
    stg, syn, t = ev.staged, ev.synced, ev.it.timing
    params = ev.ranks.params
    scatter = [sum(_ring4(4.0 * n) for n in params[a:e]) for a, e in stg.ranges]
    assert list(syn.after) == pytest.approx(scatter, rel=1e-12)
    assert p.parallel["sharding"]["after_backward_scatter_s"] == pytest.approx(scatter, rel=1e-12)
    exposed, slow = _stage_gathers(params, stg)
    assert p.parallel["sharding"]["exposed_gather_s"] == pytest.approx(exposed, rel=1e-12)
    assert p.parallel["overlap_used"]["slowdown_s"]["fsdp_prefetch"] == pytest.approx(slow, rel=1e-12) and slow > 0
    assert exposed >= _ring4(2.0 * 50257 * 768)  # the embedding's gather opens stage 0 with nothing to hide behind
    assert all(s.comm_s == 0.0 and s.end_s == pytest.approx(s.backward_s, rel=1e-12) for s in syn.sched)
    ends = [t.last_backward_end_s[s] + syn.copy[s].time_s + syn.opt[s].time_s + scatter[s] for s in range(2)]
    assert p.iteration_time_s == pytest.approx(max(ends) + exposed + slow, rel=1e-12)
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)


def test_fsdp_with_pipeline_memory_by_hand():
    """Fullest stage of P parameters: fp32 master + bf16 copy sharded over 4 (6P / 4), the stage gathered in bf16
    (2P), fp32 gradients whole (4P), Adam state sharded (8P / 4)."""
    ev = _ev("gpt2_small", "dgx-a100", sharding="full", **PIPE)
    m = perfmodel.predict("gpt2_small", "dgx-a100", sharding="full", **PIPE).memory
    P = next(n for n in ev.staged.st_params if m.gradients_bytes == pytest.approx(4.0 * n, rel=1e-12))
    assert m.weights_bytes == pytest.approx(6 * P / 4 + 2 * P, rel=1e-12)
    assert m.optimizer_bytes == pytest.approx(8 * P / 4, rel=1e-12)
    z2 = perfmodel.predict("gpt2_small", "dgx-a100", zero=2, **PIPE).memory
    assert z2.gradients_bytes == pytest.approx(4 * P / 4, rel=1e-12)  # ZeRO-2 keeps its gradients sharded


def test_fsdp_with_pipeline_communicates_once_per_step():
    """8 micro-batches: still one gather and one reduce-scatter per unit and step (torchtitan: no reshard after
    forward, gradient sync on the last backward only); ZeRO-3 without a pipeline gathers again per micro-step."""
    b = _ev("gpt2_small", "dgx-a100", sharding="full", **{**PIPE, "batch": 16,
                                                           "plan": {**PIPE["plan"], "microbatches": 8}})
    params, stg = b.ranks.params, b.staged
    assert list(b.synced.after) == pytest.approx([sum(_ring4(4.0 * n) for n in params[a:e]) for a, e in stg.ranges],
                                                 rel=1e-12)
    once, slow = _stage_gathers(params, stg)
    assert b.large["sharding"]["exposed_gather_s"] == pytest.approx(once, rel=1e-12)
    assert b.it.overlap["slowdown_s"]["fsdp_prefetch"] == pytest.approx(slow, rel=1e-12)
    flat = dict(batch=2, devices=4, **GPT)
    one = _ev("gpt2_small", "dgx-a100", sharding="full", **flat).large["sharding"]["exposed_gather_s"]
    four = _ev("gpt2_small", "dgx-a100", sharding="full", grad_accumulation=4, **flat)
    assert four.large["sharding"]["exposed_gather_s"] == pytest.approx(4 * one, rel=1e-12)


def test_fsdp_hybrid_and_zero3_with_pipeline():
    """zero=3 is FSDP full; hybrid on one node (4 replicas per node) shards over the same 4 ranks: same figures."""
    full = perfmodel.predict("gpt2_small", "dgx-a100", sharding="full", **PIPE)
    z3 = perfmodel.predict("gpt2_small", "dgx-a100", zero=3, **PIPE)
    hyb = perfmodel.predict("gpt2_small", "dgx-a100", sharding="hybrid", **PIPE)
    assert z3.iteration_time_s == full.iteration_time_s and z3.memory.total_bytes == full.memory.total_bytes
    assert hyb.iteration_time_s == pytest.approx(full.iteration_time_s, rel=1e-12)
    assert hyb.memory.total_bytes == full.memory.total_bytes
    assert hyb.parallel["sharding"]["per_tier"]["across_nodes_s"] == 0.0


def test_fsdp_hybrid_with_pipeline_across_nodes():
    """Two nodes of 8, dp = 8 (4 per node), pp = 2: hybrid shards over the 4 replicas of a node and all-reduces the
    1/4 shard of the gradients across the 2 nodes after the reduce-scatter; full shards over all 8."""
    kw = dict(batch=8, devices=16, plan={"dp": 8, "tp": 1, "pp": 2, "microbatches": 4}, **GPT)
    hyb = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", sharding="hybrid", **kw)
    full = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", sharding="full", **kw)
    assert hyb.parallel["sharding"]["sharded_over"] == 4 and full.parallel["sharding"]["sharded_over"] == 8
    assert hyb.parallel["sharding"]["per_tier"]["across_nodes_s"] > 0
    assert hyb.memory.optimizer_bytes == pytest.approx(2 * full.memory.optimizer_bytes, rel=1e-12)
    assert sum(hyb.breakdown.values()) == pytest.approx(hyb.iteration_time_s, rel=1e-12)


# ---- activation offload with full recomputation ------------------------------------------------------------

PCIE4_BPS, PCIE4_LAT = 31.5e9 * 0.80, 6e-6  # the A100's PCIe 4.0 x16 host link at 80 % efficiency, 6 us
BSH2 = 8 * 1024 * 768 * 2  # one block's input at batch 8, bf16


def _unfused(name: str):
    """The device without its kernel-level model: attention runs unfused and keeps its core."""
    return perfmodel.load_hardware(name).model_copy(update={"gpu_arch": None, "software_stack": None})


def test_offload_with_full_recompute_time_by_hand():
    """GPT-2 small at batch 8: the 12 checkpointed block inputs (8 x 1024 x 768 x 2 B each) and the saved tensors of
    the last, not recomputed segment (ln_f, head, loss) go to the host over PCIe; exposed = copy - F and copy - B
    (B with the recomputed forward), each at least 0."""
    kw = dict(batch=8, recompute="full", **GPT)
    ev = _ev("gpt2_small", "a100-sxm4-40gb", **kw)
    base = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", **kw)
    off = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", offload_activations=True, **kw)
    X = base.memory.activations_bytes - 8 * 1024 * 8  # all kept bytes but the int64 token ids
    assert X > 12 * BSH2
    copy = PCIE4_LAT + X / PCIE4_BPS
    F, B = ev.staged.F[0], ev.staged.B[0]
    want = max(0.0, copy - F) + max(0.0, copy - B)
    assert off.breakdown["offload"] == pytest.approx(want, rel=1e-9)
    assert off.iteration_time_s == pytest.approx(base.iteration_time_s + want, rel=1e-9)
    assert sum(off.breakdown.values()) == pytest.approx(off.iteration_time_s, rel=1e-12)


def test_offload_with_full_recompute_memory_by_hand():
    """On the device: the token ids, two checkpoints in transit (8 x 1024 x 768 x 2 B each) and, once, the larger of
    the last segment's saved tensors (ln_f, head, loss) and the largest checkpointed segment (re-materialised)."""
    from perfmodel.ops.base import graph_costs
    from perfmodel.recompute import segments

    g = perfmodel.load_network("gpt2_small")
    off = perfmodel.predict(g, _unfused("a100-sxm4-40gb"), batch=8, offload_activations=True, recompute="full", **GPT)
    saved = [c.saved_bytes for c in graph_costs(g, 8, 2)]
    segs = segments(g, "auto")
    big = max(sum(saved[i] for i in s) for s in segs)
    assert off.memory.activations_bytes == pytest.approx(8 * 1024 * 8 + 2 * BSH2 + big, rel=1e-12)
    plain = perfmodel.predict(g, _unfused("a100-sxm4-40gb"), batch=8, recompute="full", **GPT)
    assert off.memory.activations_bytes < plain.memory.activations_bytes


# ---- properties ------------------------------------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_sizes = st.lists(st.floats(min_value=0.0, max_value=1e9), min_size=1, max_size=12)


@settings(max_examples=60, deadline=None)
@given(_sizes, st.lists(st.floats(min_value=0.0, max_value=10.0), min_size=12, max_size=12),
       st.integers(min_value=1, max_value=4), st.floats(min_value=1e9, max_value=1e12))
def test_pipelined_zero3_properties(sizes, fwd, stages, bw):
    """Exposed gathers lie between 0 and all gathers; overlap=False exposes them all; each stage's reduce-scatters
    are its units' sum; splitting the layers into more stages never hides more."""
    n = len(sizes)
    cuts = sorted({round(n * k / stages) for k in range(stages + 1)})
    ranges = list(zip(cuts[:-1], cuts[1:]))
    fn = lambda x: x / bw + 1e-6  # noqa: E731
    extra, after, _ = pipelined_zero3(fn, fn, sizes, sizes, fwd[:n], ranges)
    total = sum(fn(x) for x in sizes if x > 0)
    assert -1e-12 <= extra <= total + 1e-9
    assert pipelined_zero3(fn, fn, sizes, sizes, fwd[:n], ranges, overlap=False)[0] == pytest.approx(total)
    assert sum(after) == pytest.approx(total)
    assert extra + 1e-9 >= pipelined_zero3(fn, fn, sizes, sizes, fwd[:n], [(0, n)])[0]


@settings(max_examples=80, deadline=None)
@given(st.integers(min_value=1, max_value=10**9), st.floats(min_value=0.0, max_value=1.0),
       st.sampled_from([(8, 1), (8, 2), (8, 8), (64, 8), (16, 4)]))
def test_state_shards_properties(params, expert_share, dp_ep):
    """Between the expert-data-parallel group (dp / ep) and dp: experts shard over fewer ranks than dense state."""
    from perfmodel.parallel.experts import state_shards

    dp, ep = dp_ep
    s = state_shards(params, params * expert_share, dp, ep)
    assert dp // ep - 1e-9 <= s <= dp + 1e-9
    if expert_share == 0.0:
        assert s == pytest.approx(dp)
