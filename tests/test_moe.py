"""Mixture of experts: the moe op's expert FLOPs and capacity factor, and expert parallelism
(perfmodel/parallel/experts.py) against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from perfmodel.errors import InputError
from perfmodel.graph import NetworkBuilder, load_network
from perfmodel.graph.spec import MoE
from perfmodel.ops import op_cost
from perfmodel.ops.moe import expert_flops_per_token, expert_slots
from perfmodel.parallel import collectives as C
from perfmodel.parallel import experts as X

D, E, F, K, T = 64, 8, 256, 2, 16  # width, experts, expert hidden, top_k, tokens per sample


def small(capacity=None, gated=False):
    """input [T, D] -> dense -> moe -> loss: a network small enough to hand-compute."""
    b = NetworkBuilder("tiny-moe")
    b.input("x", shape=[T, D])
    b.dense("proj", units=D)  # so that the moe layer's input needs a gradient (backward_data is costed)
    b.moe("moe", experts=E, top_k=K, hidden=F, gated=gated, capacity_factor=capacity)
    b.mse("loss")
    return b.build()


def _moe_layer(g):
    return next(l for l in g.layers if l.op == "moe")


def _gemm_flops(cost, stage):
    return sum(w.flops for w in cost.stage(stage) if w.efficiency_key.startswith("matmul/moe"))


# ---------------------------------------------------------------- the op


def test_expert_flops_per_token_of_mixtral():
    # top_k 2 x 2 FLOPs x 3 matrices x 4096 x 14336 = 704,643,072
    layer = _moe_layer(load_network("mixtral_8x7b"))
    assert expert_flops_per_token(4096, layer.spec) == 2 * 2 * 3 * 4096 * 14336 == 704_643_072


@pytest.mark.parametrize("capacity", [None, 1.25, 2.0])
def test_expert_gemm_flops_scale_with_top_k_and_capacity(capacity):
    g = small(capacity)
    c = op_cost(_moe_layer(g), 3, 4)
    tokens = 3 * T
    cf = 1.0 if capacity is None else capacity
    hand = tokens * K * cf * 2 * 2 * D * F  # up + down projections
    assert _gemm_flops(c, "forward") == pytest.approx(hand)
    assert _gemm_flops(c, "backward_data") == pytest.approx(hand)
    assert _gemm_flops(c, "backward_weight") == pytest.approx(hand)
    assert c.extra["expert_slots"] == pytest.approx(tokens * K * cf)
    assert expert_flops_per_token(D, _moe_layer(g).spec) * tokens == pytest.approx(hand)


def test_capacity_factor_leaves_router_and_parameters_alone():
    a, b = op_cost(_moe_layer(small()), 2, 4), op_cost(_moe_layer(small(1.5)), 2, 4)
    def router(c):
        return [w.flops for w in c.forward if w.family == "matrix" and not w.efficiency_key.startswith("matmul/moe")]

    assert router(a) == router(b) == [2 * 2 * T * D * E]
    assert a.params == b.params == D * E + E * 2 * D * F
    assert b.saved_bytes > a.saved_bytes


def test_capacity_factor_is_checked():
    with pytest.raises(ValueError, match="capacity_factor"):
        MoE(name="m", experts=8, top_k=1, hidden=4, capacity_factor=0)
    with pytest.raises(ValueError, match="capacity_factor"):
        MoE(name="m", experts=8, top_k=1, hidden=4, capacity_factor="1.25")


# ---------------------------------------------------------------- expert parallelism, pure functions


def test_dispatch_bytes_and_all_to_all_time_by_hand():
    layer = _moe_layer(small(1.25))
    n = X.dispatch_bytes(layer, 4, 2)  # 4 samples x 16 tokens x top-2 x 1.25 x 64 wide x 2 bytes
    assert n == 4 * 16 * 2 * 1.25 * 64 * 2 == 20480
    bw, lat = 100e9, 2e-6
    one_tier = (C.Tier(8, bw, lat),)
    assert X.all_to_all_s(n, one_tier) == pytest.approx(7 / 8 * n / bw + 7 * lat)
    # two nodes of 4: an all-to-all per tier; the network tier is shared by the node's 4 ranks
    two = (C.Tier(4, bw, lat), C.Tier(2, 50e9, 5e-6, shared=True))
    hand = 3 / 4 * n / bw + 3 * lat + 1 / 2 * n / (50e9 / 4) + 1 * 5e-6
    assert X.all_to_all_s(n, two) == pytest.approx(hand)


def test_expert_comm_per_layer_is_two_all_to_alls_each_way():
    g = small()
    tiers = (C.Tier(8, 100e9, 1e-6),)
    f, b = X.expert_comm(g, 2, 2, 8, tiers)
    layer = _moe_layer(g)
    one = 7 / 8 * (2 * T * K * D * 2) / 100e9 + 7e-6
    assert f[layer.index] == pytest.approx(2 * one) and b[layer.index] == pytest.approx(2 * one)
    assert f.sum() == f[layer.index]
    f1, b1 = X.expert_comm(g, 2, 2, 1, tiers)
    assert not f1.any() and not b1.any()


def test_expert_params_per_rank():
    g = small(gated=True)
    layer = _moe_layer(g)
    params = np.array([op_cost(l, 1, 4).params for l in g.layers])
    router, experts = X.split_params(layer)
    assert (router, experts) == (D * E, E * 3 * D * F)
    per_rank, expert = X.expert_rank_params(g, params, 4)
    assert per_rank[layer.index] == D * E + 2 * 3 * D * F  # router + 8/4 experts
    assert expert[layer.index] == 2 * 3 * D * F and expert.sum() == expert[layer.index]
    assert (per_rank == params).sum() == len(params) - 1


def test_sync_bytes_scale_only_the_experts():
    p, e = np.array([10, 100]), np.array([0, 80])
    assert list(X.sync_bytes(p, e, 0.25, 4)) == [40, (20 + 80 * 0.25) * 4]
    assert list(X.sync_bytes(p, e, 1.0, 4)) == [40, 400]


def test_expert_sync_ratio_of_ring_all_reduces():
    bw = 100e9

    def ring(p):
        return lambda n: C.ring_allreduce(n, p, bw, 0.0)

    assert X.expert_sync_ratio(1e9, ring(16), ring(2)) == pytest.approx((2 * 1 / 2) / (2 * 15 / 16))
    assert X.expert_sync_ratio(1e9, ring(8), ring(1)) == 0.0  # every replica holds its own experts
    assert X.expert_sync_ratio(0.0, ring(8), ring(2)) == 0.0


@pytest.mark.parametrize("ep, dp, per, layout", [
    (8, 8, 8, ((8, 1), (1, 1))),  # one node: the experts spread over all its replicas
    (4, 16, 8, ((4, 1), (2, 2))),  # groups of 4 inside a node; replicas of an expert: 2 per node x 2 nodes
    (16, 32, 8, ((8, 2), (1, 2))),  # a group over 2 nodes; 2 replicas of each expert, on 2 nodes
])
def test_ep_layout(ep, dp, per, layout):
    assert X.ep_layout(ep, dp, per) == layout


def test_active_parameters_of_the_zoo_models():
    for name, total, active in (("mixtral_8x7b", 46_702_792_704, 12_879_925_248),
                                ("switch_base_8", 619_339_008, 222_977_280)):
        g = load_network(name)
        params = [op_cost(l, 1, 4).params for l in g.layers]
        assert sum(params) == total
        assert X.active_params(g, params) == active


@pytest.mark.parametrize("kw, match", [
    (dict(ep=3), "divide the data-parallel degree"),
    (dict(ep=2, dp=8, sharding="hybrid"), "hybrid"),
    (dict(ep=2, dp=8, sync="async"), "sync"),
    (dict(ep=2, dp=8, allreduce="ps"), "ps"),
    (dict(ep=16, dp=16), "divide the 8 experts"),
    (dict(ep=4, dp=12, per=6), "replicas on a node"),
    (dict(ep=2, dp=8, cp=2), "context_parallel"),
])
def test_expert_parallel_rules(kw, match):
    g = small()
    ep, dp, per = kw.pop("ep"), kw.pop("dp", 8), kw.pop("per", 8)
    with pytest.raises(InputError, match=match) as e:
        X.check_expert_parallel(g, ep, dp, per, **kw)
    assert "expert_parallel" in str(e.value)


def test_expert_parallel_needs_moe_layers():
    with pytest.raises(InputError, match="no"):
        X.check_expert_parallel(load_network("gpt2_small"), 2, 8, 8)
    X.check_expert_parallel(load_network("gpt2_small"), 1, 8, 8)  # ep = 1: nothing to check
