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
