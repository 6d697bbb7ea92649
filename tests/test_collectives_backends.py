"""Collective libraries as data (hardware/backends.py, hardware_profiles/backends/*.yaml) and their costs
(parallel/collectives.py: via-all-reduce, staging_works, backend_time, dp_backend_fns), hand-computed."""

from __future__ import annotations

import math

import pytest

import perfmodel.parallel.collectives as C
from perfmodel.engine.rates import device_rates
from perfmodel.errors import HardwareError, InputError
from perfmodel.hardware import Device, Efficiency, EfficiencyCurve, ThreadScaling, backend_for, hardware_from_dict
from perfmodel.hardware.traits import DeviceTraits
from perfmodel.parallel.sharding import zero_sync

FLAT = EfficiencyCurve(points=[[1.0, 1.0], [1e12, 1.0]])
BW_MEM = 1e10  # B/s of the synthetic device's memory
OVERHEAD = 1e-6  # s per kernel


def _device(**traits) -> Device:
    return Device(name="syn", type="cpu", source="test", peak_flops={"fp32": 1e11}, memory_bandwidth=BW_MEM,
                  memory=8e9, kernel_overhead=OVERHEAD, cores=1, efficiency=Efficiency(matrix=FLAT, conv=FLAT,
                                                                                        memory=FLAT),
                  thread_scaling=ThreadScaling(serial_fraction=0.0, hyperthread_penalty=0.0,
                                               per_core_bandwidth=BW_MEM),
                  **({"traits": DeviceTraits(**traits)} if traits else {}))


def test_via_allreduce_reduce_scatter_moves_a_whole_allreduce():
    # n = 1 MB, p = 4, 1 GB/s, 10 us: 2 * 3/4 * 1e-3 + 2 * 3 * 1e-5 = 1.56e-3 s, twice the ring reduce-scatter
    f = C.formula("reduce-scatter", "via-all-reduce")
    assert f(1e6, 4, 1e9, 1e-5) == pytest.approx(1.56e-3)
    assert C.reduce_scatter(1e6, 4, 1e9, 1e-5) == pytest.approx(0.78e-3)
    assert f(0, 4, 1e9, 1e-5) == 0.0 and f(1e6, 1, 1e9, 1e-5) == 0.0


def test_device_types_pick_their_backend_from_data():
    gloo, nccl = backend_for("cpu"), backend_for("gpu")
    assert gloo.name == "gloo" and nccl.name == "nccl"
    assert backend_for("accelerator") is None  # no profile claims it: the plain formulas
    assert gloo.competes_with_compute and not nccl.competes_with_compute
    assert gloo.impl("reduce-scatter").algorithm == "via-all-reduce"
    for b in (gloo, nccl):  # every algorithm a profile names is registered
        for coll, impl in b.collectives.items():
            assert C.formula(coll, impl.algorithm)


def test_gloo_staging_bytes():
    # reduce-scatter of 1 MB over 2 ranks: clone (1 MB read + 1 MB written into a new 1 MB buffer), then the
    # rank's chunk copied out (0.5 MB + 0.5 MB)
    ws = C.staging_works(backend_for("cpu"), "reduce-scatter", 1e6, 2)
    assert [(w.bytes_read, w.bytes_written, w.allocs) for w in ws] == [(1e6, 1e6, (1e6,)), (5e5, 5e5, (0.0,))]
    ag = C.staging_works(backend_for("cpu"), "all-gather", 1e6, 4)  # flat output primed with 1/4, then copied out
    assert [(w.bytes_read, w.bytes_written, w.allocs) for w in ag] == [(2.5e5, 2.5e5, (1e6,)), (1e6, 1e6, (0.0,))]
    assert C.staging_works(backend_for("gpu"), "all-gather", 1e6, 4) == ()


def test_backend_time_adds_staging_as_memory_work():
    r = device_rates(_device(), "fp32", 1)
    gloo = backend_for("cpu")
    # reduce-scatter: ring all-reduce 1e6/1e9 + 2e-5 = 1.02e-3; staging 3e6 B / 1e10 B/s + 2 kernels x 1 us
    assert C.backend_time(gloo, "reduce-scatter", 1e6, 2, 1e9, 1e-5, r) == pytest.approx(1.02e-3 + 3.02e-4)
    # all-gather: ring 0.5e6/1e9 + 1e-5 = 5.1e-4; staging (1e6 + 2e6) B / 1e10 + 2 us
    assert C.backend_time(gloo, "all-gather", 1e6, 2, 1e9, 1e-5, r) == pytest.approx(5.1e-4 + 3.02e-4)
    assert C.backend_time(gloo, "all-gather", 1e6, 2, 1e9, 1e-5) == pytest.approx(5.1e-4)  # no rates: no staging
    assert C.backend_time(gloo, "all-gather", 1e6, 1, 1e9, 1e-5, r) == 0.0


def test_allocated_staging_buffer_pays_fresh_pages():
    # fresh pages from 1 MB at 1 ns/B: the clone's new 2 MB buffer adds 2e6 x 1e-9 = 2e-3 s
    plain = device_rates(_device(), "fp32", 1)
    fresh = device_rates(_device(fresh_buffer_bytes=1e6, fresh_buffer_s_per_byte=1e-9), "fp32", 1)
    gloo = backend_for("cpu")
    a = C.backend_time(gloo, "reduce-scatter", 2e6, 2, 1e9, 1e-5, plain)
    b = C.backend_time(gloo, "reduce-scatter", 2e6, 2, 1e9, 1e-5, fresh)
    assert b - a == pytest.approx(2e-3)


def test_nccl_is_the_ring_formulas():
    ag, rs = C.backend_fns(backend_for("gpu"), 8, 1e11, 5e-6, device_rates(_device(), "fp32", 1))
    for n in (1e3, 1e6, 1e9):
        assert ag(n) == pytest.approx(C.ring_allreduce(n, 8, 1e11, 5e-6) / 2)
        assert rs(n) == pytest.approx(C.reduce_scatter(n, 8, 1e11, 5e-6))


def test_dp_backend_fns_only_for_flat_groups():
    flat = {"algorithm": "ring", "ranks": 2, "bandwidth_Bps": 1e9, "latency_s": 1e-5}
    ag, rs = C.dp_backend_fns("cpu", flat)
    assert rs(1e6) == pytest.approx(1.02e-3)
    assert C.dp_backend_fns("cpu", {**flat, "ranks": 1}) is None
    assert C.dp_backend_fns("cpu", {"algorithm": "hierarchical", "ranks": 16}) is None
    assert C.dp_backend_fns("accelerator", flat) is None


def test_more_bandwidth_is_never_slower():
    r = device_rates(_device(), "fp32", 1)
    for name in ("cpu", "gpu"):
        b = backend_for(name)
        for coll in b.collectives:
            for n in (0.0, 4096.0, 1e6, 3e8):
                times = [C.backend_time(b, coll, n, 4, bw, 1e-5, r) for bw in (1e8, 1e9, 1e10, 1e11)]
                assert all(x >= y for x, y in zip(times, times[1:])), (name, coll, n, times)


def test_zero3_without_overlap_prices_units_with_the_backend():
    # two units of 1 MB and 2 MB, 2 ranks: 2 all-gathers and 1 reduce-scatter each, all exposed
    ag, rs = C.dp_backend_fns("cpu", {"ranks": 2, "bandwidth_Bps": 1e9, "latency_s": 1e-5})
    fn, extra, _ = zero_sync(3, lambda n: C.ring_allreduce(n, 2, 1e9, 1e-5), [1e6, 2e6], [1e-3, 1e-3], 1,
                          overlap=False, backend=(ag, rs))
    # all-gather n: n/2e9 + 1e-5; reduce-scatter n: n/1e9 + 2e-5
    want = 2 * ((0.5e-3 + 1e-5) + (1e-3 + 1e-5)) + (1e-3 + 2e-5) + (2e-3 + 2e-5)
    assert extra == pytest.approx(want) and fn(5e6) == 0.0
    _, ring, _ = zero_sync(3, lambda n: C.ring_allreduce(n, 2, 1e9, 1e-5), [1e6, 2e6], [1e-3, 1e-3], 1, overlap=False)
    assert ring == pytest.approx(want - 1.5e-3 - 2e-5)  # the ring reduce-scatter moves half the bytes


def test_bad_backend_profiles_name_the_field():
    base = {"kind": "backend", "name": "x", "source": "t", "progress": "host-thread",
            "collectives": {"all-reduce": {"algorithm": "ring", "source": "t"}}}
    with pytest.raises(HardwareError, match="collectives"):
        hardware_from_dict({**base, "collectives": {"allreduce": {"algorithm": "ring", "source": "t"}}})
    with pytest.raises(HardwareError, match="progress"):
        hardware_from_dict({**base, "progress": "sometimes"})
    with pytest.raises(HardwareError, match="read"):
        hardware_from_dict({**base, "collectives": {"all-gather": {"algorithm": "ring", "source": "t", "staging": [
            {"what": "x", "read": -1, "written": 1}]}}})
    b = hardware_from_dict(base)
    with pytest.raises(InputError, match="collectives.*all-gather"):
        b.impl("all-gather")
    odd = hardware_from_dict({**base, "collectives": {"all-gather": {"algorithm": "magic", "source": "t"}}})
    with pytest.raises(InputError, match="magic"):
        C.backend_time(odd, "all-gather", 1e6, 2, 1e9, 1e-5)
    assert math.isfinite(C.backend_time(b, "all-reduce", 1e6, 2, 1e9, 1e-5))
