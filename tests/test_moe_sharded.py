"""Expert parallelism with ZeRO / FSDP sharding: dense state sharded over the dp replicas, each expert's over the
dp / ep replicas that hold it (perfmodel/parallel/experts.py), against hand-computed memory and communication.

Switch-Base-8 (networks/switch_base_8.yaml, 619,339,008 parameters, 452,984,832 of them in experts) in bf16 with
Adam: 4 B fp32 master + 2 B bf16 copy of weights, 4 B fp32 gradients, 8 B of Adam state per parameter.
"""

from __future__ import annotations

import pytest

import perfmodel
from perfmodel.hardware.loader import load_hardware
from perfmodel.hardware.topology import resolve_system
from perfmodel.parallel import experts as X
from perfmodel.parallel.predict import evaluate
from perfmodel.prediction import make_setup

SWITCH_PARAMS, SWITCH_EXPERTS = 619_339_008, 452_984_832
KW = dict(dtype="bf16", optimizer="adam")


def _switch(**kw):
    return perfmodel.predict("switch_base_8", kw.pop("hw", "dgx-h100"), layers=False, **{**KW, **kw})


def _per_rank(ep: int, dp: int) -> tuple[int, int, float]:
    """(parameters on a rank, expert parameters on it, parameters whose state it keeps with ZeRO over dp)."""
    e = SWITCH_EXPERTS // ep
    p = SWITCH_PARAMS - SWITCH_EXPERTS + e
    return p, e, (p - e) / dp + e / (dp // ep)


def test_state_shards_by_hand():
    # 100 parameters, 60 in experts, dp = 8, ep = 4: 40 / 8 + 60 / 2 = 35 kept, so 100 / 35 ranks in effect
    assert X.state_shards(100, 60, 8, 4) == pytest.approx(100 / 35, rel=1e-15)
    assert X.state_shards(100, 0, 8, 4) == 8.0  # no expert on it: over all dp
    assert X.state_shards(100, 100, 8, 8) == 1.0  # every expert once per group: nothing to shard them over
    assert X.state_shards(0, 0, 8, 4) == 1.0


@pytest.mark.parametrize("zero", [1, 2, 3])
def test_zero_with_experts_memory_by_hand(zero):
    """dp = 8, ep = 4 on one DGX H100: every expert on 2 ranks, so its state shards over 2, the rest over 8."""
    p, e, kept = _per_rank(4, 8)
    base = _switch(devices=8, batch=2, expert_parallel=4).memory
    z = _switch(devices=8, batch=2, expert_parallel=4, zero=zero)
    m = z.memory
    assert base.optimizer_bytes == pytest.approx(8 * p, rel=1e-12)
    assert m.optimizer_bytes == pytest.approx(8 * kept, rel=1e-12)
    assert m.gradients_bytes == pytest.approx(4 * (kept if zero >= 2 else p), rel=1e-12)
    if zero < 3:
        assert m.weights_bytes == pytest.approx(6 * p, rel=1e-12)
    else:  # plus the two largest layers of the rank gathered in bf16 (current and prefetched)
        ev = evaluate(perfmodel.load_network("switch_base_8"), load_hardware("dgx-h100"),
                      make_setup(devices=8, batch=2, expert_parallel=4, zero=3, **KW))
        top2 = sorted(ev.ranks.params)[-2:]
        assert m.weights_bytes == pytest.approx(6 * kept + 2 * sum(top2), rel=1e-12)
    assert z.parallel["sharding"]["experts_sharded_over"] == 2 and z.parallel["sharding"]["sharded_over"] == 8
    assert sum(z.breakdown.values()) == pytest.approx(z.iteration_time_s, rel=1e-12)


@pytest.mark.parametrize("plan", [None, {"dp": 4, "pp": 2, "microbatches": 2}])
def test_zero3_never_gathers_experts_no_rank_shares(plan):
    """dp = ep: each expert lives on one rank, so its state is not sharded and stage 3 gathers only the rest: without a
    pipeline the two largest such layers (bf16), with one the stage's other parameters (pipelined_terms)."""
    ep = 4 if plan else 8
    kw = dict(devices=8, batch=4 if plan else 2, expert_parallel=ep, zero=3, plan=plan)
    ev = evaluate(perfmodel.load_network("switch_base_8"), load_hardware("dgx-h100"), make_setup(**kw, **KW))
    m = _switch(**kw).memory
    rest = ev.ranks.params - ev.ranks.expert_params
    dp = 4 if plan else 8
    if plan is None:
        p, e, kept = _per_rank(8, 8)
        assert m.weights_bytes == pytest.approx(6 * kept + 2 * float(sum(sorted(rest)[-2:])), rel=1e-12)
    else:
        fits = [6 * ((P - E) / dp + E) + 2 * float(rest[a:b].sum())
                for P, E, (a, b) in ((P, float(ev.ranks.expert_params[a:b].sum()), (a, b))
                                     for P, (a, b) in zip(ev.staged.st_params, ev.staged.ranges))]
        assert any(m.weights_bytes == pytest.approx(w, rel=1e-12) for w in fits)


def test_zero2_gathers_only_replicated_parameters_when_each_expert_lives_once():
    """dp = ep = 8 on one node: an expert has no replica (expert_sync_ratio 0), so the all-gather of the updated
    parameters after the optimizer step moves only the dense bf16 parameters: a ring over 8 ranks of NVLink."""
    p, e, _ = _per_rank(8, 8)
    z = _switch(devices=8, batch=2, expert_parallel=8, zero=2)
    s = resolve_system(load_hardware("dgx-h100"), devices=8)
    n = 2.0 * (p - e)
    hand = 7 / 8 * n / s.fabric_bandwidth_Bps + 7 * s.fabric_latency_s
    assert z.parallel["experts"]["expert_sync_ratio"] == 0.0
    assert z.parallel["sharding"]["after_step_gather_s"] == pytest.approx([hand], rel=1e-12)


def test_fsdp_with_experts_and_a_pipeline_adds_up():
    kw = dict(devices=8, batch=4, expert_parallel=4, plan={"dp": 4, "pp": 2, "microbatches": 2})
    p = _switch(sharding="full", **kw)
    plain = _switch(**kw)
    assert p.parallel["sharding"]["stage"] == 3 and p.parallel["sharding"]["experts_sharded_over"] == 1
    assert len(p.parallel["sharding"]["after_backward_scatter_s"]) == 2
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12)
    assert p.memory.optimizer_bytes < plain.memory.optimizer_bytes


def test_mixtral_with_expert_parallel_fits_80gb_when_sharded():
    """Mixtral 8x7B on 64 H100-80GB (8 DGX H100), ep = 8, full recomputation: unsharded every rank keeps 1/8 of the
    experts' weights, gradients and Adam state (about 130 GB); with ZeRO-3 each expert's state shards over its 8
    replicas and the step fits."""
    kw = dict(hw="dgx-h100-ib-ndr", devices=64, batch=1, expert_parallel=8, recompute="full")
    plain = perfmodel.predict("mixtral_8x7b", kw.pop("hw"), layers=False, **KW, **kw)
    z3 = perfmodel.predict("mixtral_8x7b", "dgx-h100-ib-ndr", layers=False, zero=3, **KW, **kw)
    assert not plain.memory.fits and z3.memory.fits
    assert z3.memory.capacity_bytes == pytest.approx(80e9, rel=0.1)
    saved = (plain.memory.weights_bytes + plain.memory.gradients_bytes + plain.memory.optimizer_bytes) - \
        (z3.memory.weights_bytes + z3.memory.gradients_bytes + z3.memory.optimizer_bytes)
    assert saved > 100e9
