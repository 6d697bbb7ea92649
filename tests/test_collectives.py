"""Collective formulas against their closed forms (alpha-beta model)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.errors import InputError
from perfmodel.parallel import collectives as C

N = 100e6  # bytes
BW = 10e9  # bytes/s
A = 5e-6  # s


@pytest.mark.parametrize("p", [2, 3, 4, 8, 16, 64])
def test_ring_allreduce_closed_form(p):
    assert C.ring_allreduce(N, p, BW, A) == pytest.approx(2 * (p - 1) / p * N / BW + 2 * (p - 1) * A, rel=1e-12)


def test_ring_allreduce_numbers():
    # 100 MB over 8 ranks at 10 GB/s, 5 us: 2*7/8*0.01 + 14*5e-6
    assert C.ring_allreduce(100e6, 8, 10e9, 5e-6) == pytest.approx(0.0175 + 70e-6)


@pytest.mark.parametrize("p", [2, 3, 5, 8, 64])
def test_tree_allreduce_closed_form(p):
    expect = 2 * (p - 1) / p * N / BW + 2 * math.ceil(math.log2(p)) * A
    assert C.tree_allreduce(N, p, BW, A) == pytest.approx(expect, rel=1e-12)


def test_tree_beats_ring_on_latency_at_scale():
    assert C.tree_allreduce(1e3, 1024, BW, A) < C.ring_allreduce(1e3, 1024, BW, A)


@pytest.mark.parametrize("p", [2, 4, 8, 32])
def test_halving_doubling_power_of_two(p):
    expect = 2 * (p - 1) / p * N / BW + 2 * math.log2(p) * A
    assert C.halving_doubling_allreduce(N, p, BW, A) == pytest.approx(expect, rel=1e-12)


def test_halving_doubling_non_power_of_two_adds_fold_steps():
    # p = 6 -> p' = 4, plus one exchange before and one after
    expect = 2 * 3 / 4 * N / BW + 2 * 2 * A + 2 * (N / BW + A)
    assert C.halving_doubling_allreduce(N, 6, BW, A) == pytest.approx(expect, rel=1e-12)


def test_hierarchical_closed_form():
    k, m = 8, 4
    bw_in, a_in, bw_net, a_net = 150e9, 2e-6, 12.5e9, 1e-6
    expect = (2 * (k - 1) / k * N / bw_in + 2 * (k - 1) * a_in
              + 2 * (m - 1) / m * (N / k) / (bw_net / k) + 2 * (m - 1) * a_net)
    assert C.hierarchical_allreduce(N, k, m, bw_in, a_in, bw_net, a_net) == pytest.approx(expect, rel=1e-12)


def test_hierarchical_degenerate_cases():
    # one node: reduce-scatter + all-gather = ring all-reduce
    assert C.hierarchical_allreduce(N, 8, 1, BW, A, 1e9, 1e-6) == pytest.approx(C.ring_allreduce(N, 8, BW, A))
    # one rank per node: ring across nodes at the network bandwidth
    assert C.hierarchical_allreduce(N, 1, 4, BW, A, 1e9, 1e-6) == pytest.approx(C.ring_allreduce(N, 4, 1e9, 1e-6))


def test_parameter_server_single_dedicated():
    w = 8
    # the server receives w gradients and sends w parameter copies
    assert C.parameter_server(N, w, 1, BW, A) == pytest.approx(2 * w * N / BW + 2 * A)


def test_parameter_server_sharded_dedicated():
    w, s = 8, 4
    assert C.parameter_server(N, w, s, BW, A) == pytest.approx(2 * max(N / BW, w * N / (s * BW)) + 2 * A)
    # enough servers: the worker's own NIC is the bottleneck
    assert C.parameter_server(N, 4, 8, BW, A) == pytest.approx(2 * N / BW + 2 * A)


def test_parameter_server_colocated_equals_ring_bandwidth():
    w = 8
    expect = 2 * (w - 1) / w * N / BW + 2 * A
    assert C.parameter_server(N, w, w, BW, A, colocated=True) == pytest.approx(expect)
    # single co-located server: busiest NIC receives (w-1) n
    assert C.parameter_server(N, w, 1, BW, A, colocated=True) == pytest.approx(2 * (w - 1) * N / BW + 2 * A)


def test_allgather_reducescatter_broadcast_p2p():
    p = 8
    assert C.all_gather(N, p, BW, A) == pytest.approx((p - 1) / p * N / BW + (p - 1) * A)
    assert C.reduce_scatter(N, p, BW, A) == pytest.approx((p - 1) / p * N / BW + (p - 1) * A)
    # ring all-reduce = reduce-scatter + all-gather
    assert C.reduce_scatter(N, p, BW, A) + C.all_gather(N, p, BW, A) == pytest.approx(C.ring_allreduce(N, p, BW, A))
    big = min(3 * (A + N / BW), 2 * 7 / 8 * N / BW + (3 + 7) * A)
    assert C.broadcast(N, p, BW, A) == pytest.approx(big)
    assert C.broadcast(8, p, BW, A) == pytest.approx(3 * (A + 8 / BW))  # small: binomial tree
    assert C.point_to_point(N, 2, BW, A) == pytest.approx(A + N / BW)


def test_one_rank_or_no_bytes_costs_nothing():
    for name, fn in C.ALLREDUCE.items():
        assert fn(N, 1, BW, A) == 0.0, name
        assert fn(0, 8, BW, A) == 0.0, name
    assert C.all_gather(N, 1, BW, A) == 0.0


def test_registry_and_errors():
    assert set(C.ALLREDUCE) == {"ring", "tree", "halving-doubling"}
    assert {"all-gather", "reduce-scatter", "broadcast", "p2p", "all-reduce"} <= set(C.COLLECTIVES)
    with pytest.raises(InputError, match="unknown all-reduce"):
        C.allreduce("butterfly", N, 4, BW, A)
    with pytest.raises(InputError, match="bandwidth"):
        C.ring_allreduce(N, 4, 0, A)
    with pytest.raises(InputError, match="ranks"):
        C.ring_allreduce(N, 0, BW, A)


@settings(max_examples=60, deadline=None)
@given(n=st.floats(1, 1e10), p=st.integers(2, 512), bw=st.floats(1e8, 1e12), a=st.floats(0, 1e-4),
       f=st.floats(1.01, 10))
def test_more_bandwidth_never_slower(n, p, bw, a, f):
    for fn in C.ALLREDUCE.values():
        assert fn(n, p, bw * f, a) <= fn(n, p, bw, a)
    assert C.parameter_server(n, p, 2, bw * f, a) <= C.parameter_server(n, p, 2, bw, a)
    assert C.hierarchical_allreduce(n, 4, p, bw * f, a, bw * f, a) <= C.hierarchical_allreduce(n, 4, p, bw, a, bw, a)


# ---------------------------------------------------------------- registry and composition over tiers

def test_cli_choices_come_from_the_registry():
    assert C.allreduce_choices() == ("ring", "tree", "halving-doubling", "hierarchical", "ps")
    assert set(C.ALGORITHMS) >= {"all-reduce", "all-gather", "reduce-scatter", "all-to-all", "broadcast", "p2p"}


def test_a_new_algorithm_is_one_registered_function():
    @C.algorithm("all-reduce", "test-one-shot")
    def one_shot(n, p, bw, alpha):  # every rank sends its whole buffer to every other rank
        return (p - 1) * n / bw + alpha

    try:
        assert "test-one-shot" in C.allreduce_choices()
        tiers = (C.Tier(4, 10e9, 1e-6),)
        assert C.collective_time("all-reduce", 1e6, tiers, "test-one-shot") == pytest.approx(3 * 1e-4 + 1e-6)
        assert C.allreduce("test-one-shot", 1e6, 4, 10e9, 1e-6) == pytest.approx(3 * 1e-4 + 1e-6)
        from perfmodel.prediction import predict  # the options, the CLI choices and the model take it as is

        one_shot = predict("resnet50", "dgx1-v100", devices=8, allreduce="test-one-shot").parallel
        ring = predict("resnet50", "dgx1-v100", devices=8, allreduce="ring").parallel
        assert one_shot["algorithm"] == one_shot["tiers"]["data"]["algorithm"] == "test-one-shot"
        assert one_shot["gradient_sync_s"] > ring["gradient_sync_s"]  # 7 full copies vs 2 x 7/8 of one
    finally:
        del C.ALGORITHMS["all-reduce"]["test-one-shot"]
    assert "test-one-shot" not in C.allreduce_choices()


def test_hierarchical_allreduce_over_three_tiers_hand_computed():
    # 96 MB; 4 GPUs at 100 GB/s, 1 us; 2 boards at 50 GB/s, 2 us; 3 nodes on a 20 GB/s NIC shared by 8 GPUs, 5 us
    tiers = (C.Tier(4, 100e9, 1e-6), C.Tier(2, 50e9, 2e-6), C.Tier(3, 20e9, 5e-6, shared=True))
    rs0 = 3 / 4 * 96e6 / 100e9 + 3 * 1e-6  # reduce-scatter of 96 MB in 4, and the all-gather back
    rs1 = 1 / 2 * 24e6 / 50e9 + 1 * 2e-6  # then of the 24 MB shard in 2
    ar2 = 2 * 2 / 3 * 12e6 / (20e9 / 8) + 2 * 2 * 5e-6  # ring all-reduce of 12 MB over 3 nodes at 2.5 GB/s each
    expect = 2 * rs0 + 2 * rs1 + ar2
    assert expect == pytest.approx(0.001446 + 0.000484 + 0.00642)
    assert C.collective_time("all-reduce", 96e6, tiers, "hierarchical") == pytest.approx(expect, rel=1e-12)


def test_hierarchical_two_tiers_is_the_node_then_network_formula():
    k, m, bw_in, a_in, bw_net, a_net = 8, 4, 150e9, 2e-6, 50e9, 5e-6
    tiers = (C.Tier(k, bw_in, a_in), C.Tier(m, bw_net, a_net, shared=True))
    assert C.hierarchical_time("all-reduce", N, tiers) == pytest.approx(
        C.hierarchical_allreduce(N, k, m, bw_in, a_in, bw_net, a_net), rel=1e-12)
    # a per-rank (not shared) network tier is not divided among the 8 GPUs
    own = (C.Tier(k, bw_in, a_in), C.Tier(m, bw_net, a_net))
    assert C.hierarchical_time("all-reduce", N, own) == pytest.approx(
        2 * (7 / 8 * N / bw_in + 7 * a_in) + 2 * 3 / 4 * (N / 8) / bw_net + 2 * 3 * a_net, rel=1e-12)


def test_per_tier_algorithms():
    tiers = (C.Tier(4, 100e9, 1e-6), C.Tier(8, 10e9, 5e-6, shared=True))
    rs = 3 / 4 * N / 100e9 + 3 * 1e-6
    tree_outer = C.tree_allreduce(N / 4, 8, 10e9 / 4, 5e-6)
    assert C.hierarchical_time("all-reduce", N, tiers, ("ring", "tree")) == pytest.approx(2 * rs + tree_outer)
    # tree has no reduce-scatter form: the inner phases run as ring
    assert C.hierarchical_time("all-reduce", N, tiers, ("tree", "ring")) == pytest.approx(
        2 * rs + C.ring_allreduce(N / 4, 8, 10e9 / 4, 5e-6))
    hd = C.hierarchical_time("all-reduce", N, tiers, ("halving-doubling", "ring"))
    assert hd == pytest.approx(C.halving_doubling_allreduce(N, 4, 100e9, 1e-6)
                               + C.ring_allreduce(N / 4, 8, 10e9 / 4, 5e-6))


def test_reduce_scatter_all_gather_and_all_to_all_over_tiers():
    tiers = (C.Tier(4, 100e9, 1e-6), C.Tier(2, 10e9, 5e-6, shared=True))
    rs = (3 / 4 * N / 100e9 + 3e-6) + (1 / 2 * (N / 4) / (10e9 / 4) + 5e-6)
    assert C.hierarchical_time("reduce-scatter", N, tiers) == pytest.approx(rs, rel=1e-12)
    assert C.hierarchical_time("all-gather", N, tiers) == pytest.approx(rs, rel=1e-12)
    # all-to-all: the whole buffer once per tier
    a2a = (3 / 4 * N / 100e9 + 3e-6) + (1 / 2 * N / (10e9 / 4) + 5e-6)
    assert C.hierarchical_time("all-to-all", N, tiers) == pytest.approx(a2a, rel=1e-12)
    assert C.all_to_all(N, 8, BW, A) == pytest.approx(7 / 8 * N / BW + 7 * A)
    assert C.halving_reduce_scatter(N, 8, BW, A) + C.doubling_all_gather(N, 8, BW, A) == pytest.approx(
        C.halving_doubling_allreduce(N, 8, BW, A))


def test_flat_algorithms_run_at_the_slowest_tier():
    tiers = (C.Tier(8, 150e9, 2e-6), C.Tier(4, 50e9, 5e-6, shared=True))
    assert C.collective_time("all-reduce", N, tiers, "ring") == pytest.approx(C.ring_allreduce(N, 32, 50e9, 5e-6))
    assert C.collective_time("all-gather", N, tiers) == pytest.approx(C.all_gather(N, 32, 50e9, 5e-6))
    one_per_node = (C.Tier(1, 150e9, 9e-6), C.Tier(4, 50e9, 5e-6, shared=True))  # the 1-rank tier carries nothing
    assert C.collective_time("all-reduce", N, one_per_node, "tree") == pytest.approx(C.tree_allreduce(N, 4, 50e9, 5e-6))
    assert C.collective_time("p2p", N, tiers) == pytest.approx(5e-6 + N / 50e9)


def test_tier_errors():
    tiers = (C.Tier(4, BW, A),)
    with pytest.raises(InputError, match="unknown collective"):
        C.collective_time("gossip", N, tiers)
    with pytest.raises(InputError, match="unknown all-reduce algorithm 'butterfly'"):
        C.collective_time("all-reduce", N, tiers, "butterfly")
    with pytest.raises(InputError, match="1 tiers need 1 algorithms, got 2"):
        C.hierarchical_time("all-reduce", N, tiers, ("ring", "ring"))
    with pytest.raises(InputError, match="no hierarchical form"):
        C.hierarchical_time("broadcast", N, tiers)


def test_system_tiers_of_a_dgx1_cluster():
    from perfmodel.hardware import load_hardware, resolve_system

    s = resolve_system(load_hardware("dgx1-v100-ib-edr"))
    inner, net = C.system_tiers(s, 8, 4, groups_per_node=2)
    assert (inner.ranks, inner.bandwidth_Bps, inner.latency_s, inner.shared) == (8, 150e9 * 0.9, 2e-6, False)
    # 4 EDR NICs x 100 Gb/s x 0.9, shared by two groups on the node
    assert (net.ranks, net.latency_s, net.shared) == (4, 1e-6, True)
    assert net.bandwidth_Bps == pytest.approx(4 * 12.5e9 * 0.9 / 2, rel=1e-12)
    assert C.system_tiers(s, 8, 1) == (inner,)
    # the hierarchical all-reduce over them: 8 GPUs each run a 4-node ring on an eighth of the node's share
    t = C.collective_time("all-reduce", N, (inner, net), "hierarchical")
    assert t == pytest.approx(2 * (7 / 8 * N / 135e9 + 7 * 2e-6) + 2 * 3 / 4 * (N / 8) / (22.5e9 / 8) + 6e-6)
