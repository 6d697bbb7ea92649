"""Data flow: the worked PCIe example of the issue, storage vs RAM, shared PCIe groups, prefetch."""

import pytest

from perfmodel import predict
from perfmodel.dataflow import (HOST_RAM_CACHE_FRACTION, IO_QUEUE_DEPTH, data_flow, input_bytes_per_sample,
                                pcie_refill_scenarios, ram_hit_fraction, shared_link_refill)
from perfmodel.errors import InputError
from perfmodel.hardware import load_hardware


def test_worked_example_four_gpus_share_one_pcie4_x16():
    """4 GPUs behind one PCIe 4.0 x16 (31.5 GB/s, efficiency 1.0) each refill 8 GB per iteration.

    0.254 s per GPU, 1.016 s for all four; a GPU computing 0.5 s then waits for the other three
    refills (0.762 s), computing during 65.6% of that wait.
    """
    r = shared_link_refill(bytes_per_device=8e9, devices_per_link=4, link_bandwidth_Bps=31.5e9, compute_s=0.5,
                           efficiency=1.0)
    assert r.per_device_s == pytest.approx(0.254, abs=5e-4)
    assert r.all_devices_s == pytest.approx(1.016, abs=5e-4)
    assert r.wait_for_others_s == pytest.approx(0.762, abs=5e-4)
    assert r.compute_share_of_wait == pytest.approx(0.656, abs=5e-4)
    # the steady-state period is set by the shared link: each GPU computes 0.5 s of every 1.016 s
    assert r.period_s == pytest.approx(1.016, abs=5e-4)
    assert r.utilization == pytest.approx(0.5 / 1.016, rel=1e-3)


def test_worked_example_what_changes():
    sc = pcie_refill_scenarios()
    base = sc["pcie4, 4 devices share one x16"]
    # prefetching alone does not help: the shared link is saturated (1.016 s of refills per iteration)
    assert sc["pcie4 shared + prefetch"].period_s == pytest.approx(base.period_s)
    # PCIe 5.0 halves every refill: 0.127 s each, 0.508 s for four
    p5 = sc["pcie5, 4 devices share one x16"]
    assert p5.per_device_s == pytest.approx(0.127, abs=5e-4)
    assert p5.all_devices_s == pytest.approx(0.508, abs=5e-4)
    assert p5.period_s == pytest.approx(0.127 + 0.5, abs=5e-4)  # own refill + compute
    assert sc["pcie5 shared + prefetch"].period_s == pytest.approx(0.508, abs=5e-4)  # link-bound, nearly all compute
    # a switch (own x16 uplink) per GPU: no waiting for the others
    sw = sc["pcie4, one switch per device"]
    assert sw.wait_for_others_s == 0.0
    assert sw.period_s == pytest.approx(0.254 + 0.5, abs=5e-4)
    assert sc["pcie4 switch per device + prefetch"].utilization == pytest.approx(1.0)
    for r in sc.values():
        assert r.utilization <= 1.0
        assert r.utilization >= base.utilization - 1e-12


def test_ram_vs_storage():
    assert ram_hit_fraction(None, 512e9) == 1.0
    assert ram_hit_fraction(100e9, 512e9) == 1.0
    assert ram_hit_fraction(1.2e12, 512e9) == pytest.approx(HOST_RAM_CACHE_FRACTION * 512e9 / 1.2e12)


def test_data_flow_prefetch_hides_up_to_the_step():
    nvme = load_hardware("nvme-pcie4")
    kw = dict(node_samples=256, group_bytes=2e9, group_link_Bps=12.6e9, bytes_per_sample=110e3, storage=nvme,
              dataset_bytes=10e12, host_memory_bytes=512e9)
    on = data_flow(compute_s=0.2, prefetch=True, **kw)
    off = data_flow(compute_s=0.2, prefetch=False, **kw)
    # without prefetch the samples are read one at a time: every access latency adds up (IO_QUEUE_DEPTH with it)
    miss = 1 - HOST_RAM_CACHE_FRACTION * 512e9 / 10e12
    assert off.io_s - on.io_s == pytest.approx(256 * miss * nvme.latency_s * (1 - 1 / (IO_QUEUE_DEPTH * nvme.disks)))
    assert on.io_s > 0
    assert off.exposed_io_s == off.io_s and off.exposed_host_to_device_s == off.host_to_device_s
    assert on.exposed_io_s + on.exposed_host_to_device_s == pytest.approx(max(0.0, max(on.io_s, on.host_to_device_s) - 0.2))
    assert on.exposed_io_s + on.exposed_host_to_device_s <= off.exposed_io_s + off.exposed_host_to_device_s


def test_data_flow_needs_storage_when_dataset_exceeds_ram():
    with pytest.raises(InputError, match="storage"):
        data_flow(compute_s=0.1, node_samples=64, group_bytes=0, group_link_Bps=1, bytes_per_sample=1e5, storage=None,
                  dataset_bytes=1e13, host_memory_bytes=1e11)


def test_raid0_reads_faster_than_one_disk():
    hdd = load_hardware("hdd")
    kw = dict(compute_s=0.0, node_samples=512, group_bytes=0, group_link_Bps=1, bytes_per_sample=110e3,
              dataset_bytes=1e13, host_memory_bytes=1e11, prefetch=True)
    one = data_flow(storage=hdd, **kw)
    four = data_flow(storage=hdd.raid0(4), **kw)
    assert four.io_s < one.io_s / 3
    # one read at a time (no prefetch): the stripe adds bandwidth, but every access latency is still waited for
    miss = 1 - HOST_RAM_CACHE_FRACTION * 1e11 / 1e13
    serial = data_flow(storage=hdd.raid0(4), **{**kw, "prefetch": False})
    assert serial.io_s == pytest.approx(512 * miss * (110e3 / hdd.raid0(4).effective_read_Bps + hdd.latency_s))


def test_input_bytes_per_sample_resnet50():
    from perfmodel import load_network

    assert input_bytes_per_sample(load_network("resnet50"), "fp32") == 3 * 224 * 224 * 4


def test_predict_shared_pcie_groups_and_dataset():
    # pcie-8x-gtx1080: 4 GPUs per switch uplink; without prefetch the 4 copies share it
    p = predict("resnet50", "pcie-8x-gtx1080", batch=32, devices=8, prefetch=False, layers=False)
    per_gpu = 32 * 3 * 224 * 224 * 4
    link = load_hardware("pcie3-x16").effective_bandwidth_Bps
    assert p.breakdown["host_to_device"] == pytest.approx(4 * per_gpu / link, rel=1e-9)
    # dgx1-v100 pairs GPUs per switch: half the copy time per group
    q = predict("resnet50", "dgx1-v100", batch=32, devices=8, prefetch=False, layers=False)
    assert q.breakdown["host_to_device"] == pytest.approx(2 * per_gpu / link, rel=1e-9)
    # a dataset larger than RAM read from one HDD vs from RAM
    slow = predict("resnet50", "dgx1-v100", batch=64, devices=8, dataset_size=1.2e12, storage="hdd", layers=False)
    fast = predict("resnet50", "dgx1-v100", batch=64, devices=8, dataset_size=1e11, storage="hdd", layers=False)
    assert slow.breakdown["io"] > 0 and fast.breakdown["io"] == 0
    assert slow.parallel["dataset_in_ram_fraction"] < 1 and fast.parallel["dataset_in_ram_fraction"] == 1
    raid = predict("resnet50", "dgx1-v100", batch=64, devices=8, dataset_size=1.2e12, storage="hdd", raid0=4,
                   layers=False)
    assert raid.iteration_time_s < slow.iteration_time_s
    nopf = predict("resnet50", "dgx1-v100", batch=64, devices=8, dataset_size=1.2e12, storage="hdd", prefetch=False,
                   layers=False)
    assert nopf.iteration_time_s >= slow.iteration_time_s
    for pr in (p, q, slow, fast, raid, nopf):
        assert sum(pr.breakdown.values()) == pytest.approx(pr.iteration_time_s, rel=1e-12)
