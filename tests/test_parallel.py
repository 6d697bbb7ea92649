"""Parallel model: invariants, buckets, pipeline, tensor parallelism, sync modes, placement errors."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perfmodel import load_network, predict
from perfmodel.errors import InputError
from perfmodel.hardware import Cluster, Link, Node, load_hardware, resolve_system
from perfmodel.ops import op_cost
from perfmodel.parallel.data_parallel import (DDP_FIRST_BUCKET_BYTES, make_buckets, replica_batch, sync_schedule)
from perfmodel.parallel.pipeline import inflight_microbatches, partition, schedule_time
from perfmodel.parallel.sync_modes import async_throughput, expected_max_normal, straggler_delay
from perfmodel.parallel.tensor import tensor_parallel_layout
from perfmodel.result import BREAKDOWN_PARTS

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _sums(p):
    assert set(p.breakdown) == set(BREAKDOWN_PARTS)
    assert all(v >= -1e-15 for v in p.breakdown.values()), p.breakdown
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-12, abs=1e-15)


# ---------------------------------------------------------------------------------------------
# invariants


@SETTINGS
@given(net=st.sampled_from(["fcn5", "autoencoder", "lstm32", "alexnet"]), batch=st.integers(1, 64),
       dtype=st.sampled_from(["fp32", "fp16"]), sync=st.sampled_from(["sync", "async", "mixed"]),
       allreduce=st.sampled_from(["ring", "tree", "halving-doubling", "hierarchical", "ps"]),
       overlap=st.booleans(), cv=st.floats(0, 0.3), mbs=st.sampled_from([None, 1, 4]))
def test_one_device_any_plan_equals_single_device(net, batch, dtype, sync, allreduce, overlap, cv, mbs):
    single = predict(net, "v100-sxm2", batch=batch, dtype=dtype, layers=False)
    plan = {"dp": 1, "tp": 1, "pp": 1}
    if mbs:
        plan["microbatches"] = mbs
    p = predict(net, "v100-sxm2", batch=batch, dtype=dtype, plan=plan, sync=sync, allreduce=allreduce,
                overlap=overlap, straggler_cv=cv, layers=False)
    assert p.devices == 1 and p.batch == single.batch
    assert p.iteration_time_s == pytest.approx(single.iteration_time_s, rel=1e-12)
    for k in BREAKDOWN_PARTS:
        assert p.breakdown[k] == pytest.approx(single.breakdown[k], rel=1e-9, abs=1e-15), k
    assert p.memory.total_bytes == single.memory.total_bytes
    assert p.parallel["scaling_efficiency"] == pytest.approx(1.0)
    _sums(p)


def test_one_device_on_a_node_equals_single_device():
    single = predict("resnet50", "v100-sxm2", batch=64, layers=False)
    p = predict("resnet50", "dgx1-v100", batch=64, devices=1, layers=False)
    assert p.iteration_time_s == pytest.approx(single.iteration_time_s, rel=1e-12)


@pytest.mark.parametrize("extra", [{}, {"microbatches": 8}, {"schedule": "gpipe"}])
def test_one_stage_pipeline_equals_no_pipeline(extra):
    ref = predict("bert_base", "dgx-a100", batch=16, devices=8, dtype="bf16", layers=False)
    p = predict("bert_base", "dgx-a100", batch=16, dtype="bf16", plan={"dp": 8, "tp": 1, "pp": 1, **extra},
                layers=False)
    assert p.iteration_time_s == pytest.approx(ref.iteration_time_s, rel=1e-12)
    assert p.breakdown["bubble"] == 0.0


def _scaled_cluster(f_net: float, f_fabric: float) -> Cluster:
    net = load_hardware("ethernet-25g")
    fab = load_hardware("nvlink2")
    node = load_hardware("dgx1-v100")
    node = node.model_copy(update={"fabric": fab.model_copy(update={"bandwidth_Bps": fab.bandwidth_Bps * f_fabric})})
    return Cluster(name=f"test-{f_net}-{f_fabric}", source="test", node=node, nodes=8,
                   network=net.model_copy(update={"bandwidth_Bps": net.bandwidth_Bps * f_net}), nics_per_node=1)


PLANS = [{"dp": 16}, {"dp": 4, "tp": 4}, {"dp": 2, "tp": 2, "pp": 4, "microbatches": 4}, {"dp": 2, "tp": 4, "pp": 2},
         {"dp": 8, "tp": 1, "pp": 2, "microbatches": 2}]


@SETTINGS
@given(plan=st.sampled_from(PLANS), f_net=st.floats(1.0, 20.0), f_fab=st.floats(1.0, 20.0),
       allreduce=st.sampled_from(["ring", "tree", "hierarchical", "ps", "halving-doubling"]),
       overlap=st.booleans())
def test_more_link_bandwidth_never_slower(plan, f_net, f_fab, allreduce, overlap):
    base = predict("gpt2_small", _scaled_cluster(1.0, 1.0), batch=8, plan=plan, dtype="fp16", allreduce=allreduce,
                   overlap=overlap, layers=False)
    fast = predict("gpt2_small", _scaled_cluster(f_net, f_fab), batch=8, plan=plan, dtype="fp16",
                   allreduce=allreduce, overlap=overlap, layers=False)
    assert fast.iteration_time_s <= base.iteration_time_s * (1 + 1e-9)
    _sums(base)
    _sums(fast)


@SETTINGS
@given(net=st.sampled_from(["resnet50", "fcn5", "gpt2_small"]), devices=st.sampled_from([2, 8, 16, 64]),
       hw=st.sampled_from(["dgx1-v100-eth10g", "dgx1-v100-ib-edr"]), sync=st.sampled_from(["sync", "mixed", "async"]),
       allreduce=st.sampled_from(["ring", "hierarchical", "ps", "tree"]), bucket=st.sampled_from([None, 1e6, 1e8]),
       k=st.integers(1, 3))
def test_overlap_never_slower(net, devices, hw, sync, allreduce, bucket, k):
    kw = dict(batch=16, devices=devices, sync=sync, allreduce=allreduce, bucket_bytes=bucket, grad_accumulation=k,
              dtype="fp16", layers=False)
    on = predict(net, hw, overlap=True, **kw)
    off = predict(net, hw, overlap=False, **kw)
    assert on.iteration_time_s <= off.iteration_time_s * (1 + 1e-12)
    _sums(on)
    _sums(off)
    assert on.parallel["hidden_communication_s"] >= off.parallel["hidden_communication_s"] == 0.0


def test_breakdown_and_parallel_keys():
    p = predict("resnet50", "dgx1-v100-eth100g", batch=64, devices=32, straggler_cv=0.05, dataset_size=2e12,
                layers=False)
    _sums(p)
    assert p.devices == 32 and p.batch == 64 * 32
    for key in ("exposed_communication_s", "hidden_communication_s", "bubble_s", "straggler_s", "io_s",
                "host_to_device_s", "plan", "algorithm", "scaling_efficiency", "staleness"):
        assert key in p.parallel, key
    assert p.parallel["exposed_communication_s"] == p.breakdown["communication"]
    assert p.hidden["communication"] == p.parallel["hidden_communication_s"]
    assert p.breakdown["straggler"] > 0
    assert 0 < p.parallel["scaling_efficiency"] <= 1
    d = p.to_dict(layers=False)
    assert d["parallel"]["plan"]["dp"] == 32


# ---------------------------------------------------------------------------------------------
# data parallel


def test_buckets_reverse_order_and_caps():
    bwd = [1.0, 2.0, 3.0, 4.0]
    grads = [30e6, 0.0, 10e6, 0.5e6]
    bk = make_buckets(bwd, grads, bucket_bytes=25e6)
    # reverse order: layer 3 first (0.5 MB, first bucket capped at 1 MiB), then layer 2, then layer 0 alone
    assert [b.layers for b in bk] == [(3,), (2,), (0,)]
    assert bk[0].bytes == 0.5e6 and bk[0].ready_s == 4.0
    assert bk[1].ready_s == 7.0
    assert bk[2].ready_s == 10.0
    assert DDP_FIRST_BUCKET_BYTES == 1024 * 1024


def test_sync_schedule_overlap_and_exposed():
    bk = make_buckets([1.0, 1.0, 1.0], [10.0, 10.0, 10.0], bucket_bytes=10.0, first_bucket_bytes=10.0)
    on = sync_schedule(bk, 3.0, lambda n: 0.5, overlap=True)
    off = sync_schedule(bk, 3.0, lambda n: 0.5, overlap=False)
    # buckets ready at 1, 2, 3: the last ends at 3.5 -> 0.5 s exposed, 1.0 s hidden
    assert on.exposed_s == pytest.approx(0.5) and on.hidden_s == pytest.approx(1.0)
    assert off.exposed_s == pytest.approx(1.5) and off.hidden_s == 0.0
    slow = sync_schedule(bk, 3.0, lambda n: 2.0, overlap=True)  # communication-bound: queue behind each other
    assert slow.end_s == pytest.approx(1.0 + 3 * 2.0)


def test_weak_and_strong_scaling():
    assert replica_batch(64, 8, 1, "weak") == 64
    assert replica_batch(512, 8, 2, "strong") == 32
    with pytest.raises(InputError, match="divisible"):
        replica_batch(100, 8, 1, "strong")
    weak = predict("resnet50", "dgx1-v100", batch=32, devices=8, layers=False)
    strong = predict("resnet50", "dgx1-v100", batch=256, devices=8, scaling="strong", layers=False)
    assert weak.batch == strong.batch == 256
    assert weak.iteration_time_s == pytest.approx(strong.iteration_time_s, rel=1e-12)
    assert strong.parallel["per_device_batch"] == 32


def test_gradient_accumulation_syncs_once():
    p1 = predict("resnet50", "dgx1-v100-eth10g", batch=32, devices=16, overlap=False, layers=False)
    p4 = predict("resnet50", "dgx1-v100-eth10g", batch=32, devices=16, overlap=False, grad_accumulation=4, layers=False)
    assert p4.batch == 4 * p1.batch
    # same exposed all-reduce, four times the compute
    assert p4.breakdown["communication"] == pytest.approx(p1.breakdown["communication"], rel=1e-9)
    assert p4.breakdown["compute"] == pytest.approx(4 * p1.breakdown["compute"], rel=1e-6)
    assert p4.throughput_samples_per_s > p1.throughput_samples_per_s


def test_ring_vs_hierarchical_vs_ps_on_slow_network():
    kw = dict(batch=64, devices=64, dtype="fp16", layers=False)
    ring = predict("resnet50", "dgx1-v100-eth10g", allreduce="ring", **kw)
    hier = predict("resnet50", "dgx1-v100-eth10g", allreduce="hierarchical", **kw)
    ps = predict("resnet50", "dgx1-v100-eth10g", allreduce="ps", **kw)
    assert hier.iteration_time_s <= ring.iteration_time_s * (1 + 1e-9)
    assert ps.iteration_time_s > ring.iteration_time_s  # one server NIC carries every node's gradients
    sharded = predict("resnet50", "dgx1-v100-eth10g", allreduce="ps", ps_servers=8, ps_colocated=True, **kw)
    assert sharded.iteration_time_s < ps.iteration_time_s


def test_p2p_vs_through_host():
    host = predict("resnet50", "pcie-8x-gtx1080", batch=32, devices=8, layers=False, overlap=False)
    p2p = predict("resnet50", "pcie-8x-gtx1080", batch=32, devices=8, layers=False, overlap=False, p2p=True)
    assert p2p.breakdown["communication"] < host.breakdown["communication"]
    s = resolve_system(load_hardware("pcie-8x-gtx1080"))
    link = load_hardware("pcie3-x16").effective_bandwidth_Bps
    assert s.fabric_bandwidth_Bps == pytest.approx(link / 4)  # 4 GPUs share the switch uplink through host memory
    assert s.with_p2p(True).fabric_bandwidth_Bps == pytest.approx(link)


# ---------------------------------------------------------------------------------------------
# pipeline


def test_partition_balances_contiguously():
    assert partition([1, 1, 1, 1], 2) == ((0, 2), (2, 4))
    cuts = partition([5, 1, 1, 1, 1, 1], 2)
    assert cuts == ((0, 1), (1, 6))
    cuts = partition([1, 2, 3, 4, 5, 6, 7, 8, 9], 3)
    sums = [sum(range(a + 1, b + 1)) for a, b in cuts]
    assert max(sums) == 17  # optimal: [1..5]=15, [6,7]=13, [8,9]=17
    assert partition([1.0] * 3, 3) == ((0, 1), (1, 2), (2, 3))
    with pytest.raises(InputError, match="stages"):
        partition([1.0, 1.0], 3)


@pytest.mark.parametrize("pp,m", [(2, 1), (4, 4), (4, 16), (8, 8)])
def test_bubble_fraction_equal_stages(pp, m):
    for sched in ("1f1b", "gpipe"):
        t = schedule_time([1.0] * pp, [2.0] * pp, [0.0] * (pp - 1), m, sched)
        assert t.total_s == pytest.approx((m + pp - 1) * 3.0)
        assert t.bubble_fraction == pytest.approx((pp - 1) / (m + pp - 1))
        assert t.exposed_transfer_s == 0.0


def test_pipeline_transfers_and_gpipe_vs_1f1b():
    t = schedule_time([1.0, 2.0], [2.0, 4.0], [0.5], 4, "1f1b")
    # (m-1) * max cycle + sum c + 2 * transfers
    assert t.total_s == pytest.approx(3 * 6.0 + 9.0 + 1.0)
    assert t.exposed_transfer_s == pytest.approx(1.0)
    assert t.critical_stage == 1
    assert t.bubble_s == pytest.approx(t.total_s - 4 * 6.0 - 1.0)
    g = schedule_time([2.0, 1.0], [1.0, 2.0], [0.0], 4, "gpipe")
    o = schedule_time([2.0, 1.0], [1.0, 2.0], [0.0], 4, "1f1b")
    assert g.total_s >= o.total_s
    assert inflight_microbatches("1f1b", 4, 8, 0) == 4 and inflight_microbatches("1f1b", 4, 8, 3) == 1
    assert inflight_microbatches("gpipe", 4, 8, 3) == 8


def test_pipeline_predictions():
    p = predict("gpt2_small", "dgx-a100", batch=16, dtype="bf16", plan={"dp": 1, "pp": 4, "microbatches": 8},
                layers=False)
    _sums(p)
    assert p.breakdown["bubble"] > 0
    assert len(p.parallel["stages"]) == 4
    assert sum(s["count"] for s in p.parallel["stages"]) == len(load_network("gpt2_small").layers)
    more = predict("gpt2_small", "dgx-a100", batch=16, dtype="bf16", plan={"dp": 1, "pp": 4, "microbatches": 16},
                   layers=False)
    assert more.parallel["bubble_fraction"] < p.parallel["bubble_fraction"]
    # activation memory: 1F1B holds at most pp micro-batches, GPipe all of them
    g = predict("gpt2_small", "dgx-a100", batch=16, dtype="bf16",
                plan={"dp": 1, "pp": 4, "microbatches": 16, "schedule": "gpipe"}, layers=False)
    assert g.memory.activations_bytes > more.memory.activations_bytes


def test_pipeline_across_nodes_uses_network():
    p = predict("gpt2_small", "dgx1-v100-eth10g", batch=8, dtype="fp16",
                plan={"dp": 1, "tp": 4, "pp": 4, "microbatches": 4}, layers=False)
    tiers = p.parallel["tiers"]["pipeline"]
    assert sum("across nodes" in t for t in tiers) == 1  # 4 x 4 = 16 devices on 2 nodes: one boundary crosses
    assert "in node" in p.parallel["tiers"]["tensor"]


# ---------------------------------------------------------------------------------------------
# tensor parallelism


def test_megatron_two_allreduces_per_transformer_layer():
    g = load_network("bert_base")
    costs = tuple(op_cost(l, 8, 4) for l in g.layers)
    lay = tensor_parallel_layout(g, costs, 4)
    by = dict(zip((l.name for l in g.layers), lay))
    layer0 = [n for n in by if n.startswith("layer.0.")]
    fwd = sum(1 for n in layer0 if by[n].fwd_allreduce_bytes > 0)
    bwd = sum(1 for n in layer0 if by[n].bwd_allreduce_bytes > 0)
    assert (fwd, bwd) == (2, 2)
    assert by["layer.0.intermediate"].role == "column" and by["layer.0.output"].role == "row"
    assert by["layer.0.gelu"].role == "elementwise"
    assert by["word_embeddings"].role == "vocab" and by["token_type_embeddings"].role == "replicated"
    assert all(t.fwd_allreduce_bytes == 0 for t in tensor_parallel_layout(g, costs, 1))


def test_tensor_parallel_splits_work_and_params():
    one = predict("gpt2_small", "dgx-a100", batch=8, dtype="bf16", plan={"dp": 1, "tp": 1}, layers=False)
    four = predict("gpt2_small", "dgx-a100", batch=8, dtype="bf16", plan={"dp": 1, "tp": 4}, layers=False)
    assert four.memory.weights_bytes < 0.5 * one.memory.weights_bytes
    assert four.parallel["tensor_parallel_comm_s"] > 0
    assert four.breakdown["compute"] < one.breakdown["compute"]
    _sums(four)
    cnn = predict("resnet50", "dgx-a100", batch=8, plan={"dp": 1, "tp": 2}, layers=False)
    assert any("replicated" in w for w in cnn.warnings)


# ---------------------------------------------------------------------------------------------
# sync modes


def test_expected_max_normal():
    assert expected_max_normal(1) == 0.0
    assert expected_max_normal(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-9)
    assert expected_max_normal(3) == pytest.approx(3 / (2 * math.sqrt(math.pi)), rel=1e-9)
    assert expected_max_normal(5) == pytest.approx(1.162964, abs=1e-5)
    assert expected_max_normal(1000) == pytest.approx(3.241436, abs=1e-4)
    vals = [expected_max_normal(n) for n in (2, 4, 8, 64, 512)]
    assert vals == sorted(vals)
    assert straggler_delay(0.2, 0.1, 2) == pytest.approx(0.2 * 0.1 / math.sqrt(math.pi))
    assert straggler_delay(0.2, 0.0, 64) == 0.0


def test_async_throughput_bounds():
    r = async_throughput(8, 0.2, 100e6, 10e9)
    assert r["worker_bound_updates_per_s"] == pytest.approx(40)
    assert r["server_bound_updates_per_s"] == pytest.approx(10e9 / 100e6)  # full duplex: 1 gradient per direction
    assert r["bound"] == "workers" and r["staleness"] == 7 and r["updates_per_s"] < 40
    # MVA by hand, 2 workers, D = 1e8 / 1e10 = 0.01 s per station, Z = 0.2 - 2 D = 0.18 s:
    # 1 worker: Q = D / 0.2 = 0.05; 2 workers: R = 0.18 + 2 x 0.01 x 1.05 = 0.201 s -> 2 / 0.201 updates/s
    assert async_throughput(1, 0.2, 100e6, 10e9)["updates_per_s"] == pytest.approx(5.0)
    assert async_throughput(2, 0.2, 100e6, 10e9)["updates_per_s"] == pytest.approx(2 / 0.201)
    r = async_throughput(200, 0.1, 100e6, 10e9)
    assert r["bound"] == "servers" and r["updates_per_s"] == pytest.approx(100, rel=1e-2) and r["updates_per_s"] < 100


def test_sync_async_mixed_predictions():
    kw = dict(batch=64, devices=32, dtype="fp16", layers=False)
    s = predict("resnet50", "dgx1-v100-ib-edr", **kw)
    a = predict("resnet50", "dgx1-v100-ib-edr", sync="async", **kw)
    m = predict("resnet50", "dgx1-v100-ib-edr", sync="mixed", **kw)
    for p in (s, a, m):
        _sums(p)
    assert s.parallel["staleness"] is None
    assert a.parallel["staleness"] == 31 and m.parallel["staleness"] == 3
    assert a.parallel["async"]["bound"] in ("workers", "servers")
    straggly = predict("resnet50", "dgx1-v100-ib-edr", straggler_cv=0.1, **kw)
    assert straggly.breakdown["straggler"] > 0 and straggly.iteration_time_s > s.iteration_time_s


# ---------------------------------------------------------------------------------------------
# hardware topology and errors


def test_node_profiles_and_summary():
    s = resolve_system(load_hardware("k80-server"))
    assert s.devices_per_node == 4 and s.groups == ((0, 1), (2, 3))
    assert resolve_system(load_hardware("dgx1-v100-ib-edr")).max_devices == 256
    assert "nvlink2" in load_hardware("dgx1-v100").summary()
    assert "infiniband-edr" in load_hardware("dgx1-v100-ib-edr").summary()
    for name in ("dgx1-v100", "dgx-a100", "dgx-h100", "pcie-8x-gtx1080", "k80-server", "cpu-xeon-e5-2630v3",
                 "dgx1-v100-eth10g", "dgx1-v100-eth25g", "dgx1-v100-eth100g", "dgx1-v100-ib-edr", "dgx-a100-ib-hdr",
                 "dgx-h100-ib-ndr", "cpu-cluster-eth10g"):
        h = load_hardware(name)
        assert h.source and h.kind in ("node", "cluster")
        resolve_system(h)


def test_bad_node_profile():
    from perfmodel.errors import HardwareError
    from perfmodel.hardware import hardware_from_dict

    with pytest.raises(HardwareError, match="pcie_groups"):
        hardware_from_dict({"kind": "node", "name": "x", "source": "t", "device": "v100-sxm2", "devices": 2,
                            "host_memory": "64 GB", "pcie_groups": [{"devices": [0], "link": "pcie3-x16"}]})
    with pytest.raises(HardwareError, match="fabric"):
        hardware_from_dict({"kind": "node", "name": "x", "source": "t", "device": "v100-sxm2", "devices": 2,
                            "host_memory": "64 GB", "fabric_type": "nvlink"})


@pytest.mark.parametrize("kw,match", [
    (dict(hardware="dgx1-v100", devices=8, plan={"dp": 2, "tp": 2, "pp": 1}), "devices"),
    (dict(hardware="dgx1-v100-ib-edr", plan={"dp": 1, "tp": 16}), "inside a node"),
    (dict(hardware="dgx1-v100", devices=16), "has 8"),
    (dict(hardware="dgx1-v100-ib-edr", devices=512), "has 256"),
    (dict(hardware="dgx1-v100-ib-edr", devices=16, nodes=64), "has 32"),
    (dict(hardware="dgx1-v100-ib-edr", devices=12), "whole nodes"),
    (dict(hardware="dgx1-v100", devices=8, allreduce="butterfly"), "allreduce"),
    (dict(hardware="dgx1-v100", devices=8, sync="lazy"), "sync"),
    (dict(hardware="dgx1-v100", plan={"dp": 1, "pp": 2, "microbatches": 3}), "divisible"),
    (dict(hardware="dgx1-v100", plan={"dp": 2, "tp": 2, "pp": 2}, sync="async"), "data-parallel"),
    (dict(hardware="dgx1-v100", plan={"dp": 2, "zz": 2}), "unknown key"),
    (dict(hardware="dgx1-v100", plan={"dp": 0}), "plan.dp"),
    (dict(hardware="dgx1-v100", devices=8, straggler_cv=-1.0), "straggler_cv"),
    (dict(hardware="v100-sxm2", devices=2, dataset_size=1e15), "storage"),
])
def test_impossible_plans_give_clear_errors(kw, match):
    kw = dict(kw)
    hw = kw.pop("hardware")
    with pytest.raises(InputError, match=match):
        predict("resnet50", hw, batch=8, layers=False, **kw)


def test_too_many_pipeline_stages():
    with pytest.raises(InputError, match="pipeline stages"):
        predict("lstm32", "dgx-a100", batch=8, plan={"dp": 1, "pp": 8}, layers=False)


def test_cpu_cluster():
    p = predict("fcn5", "cpu-cluster-eth10g", batch=64, devices=8, threads=16, layers=False)
    _sums(p)
    assert p.breakdown["host_to_device"] == 0.0  # CPUs read host memory directly
    assert p.parallel["tiers"]["data"]["nodes"] == 8


def test_cpu_processes_measured_memory_speed_scales_bandwidth_and_elementwise_rates():
    """With a measured memory_speed each process gets that fraction of a lone process's bandwidth, per-core
    bandwidth and calibrated elementwise rates (without one: 1/per of the bandwidth); a slower memory is never
    faster end to end."""
    from perfmodel.hardware import load_hardware
    from perfmodel.hardware.topology import Node
    from perfmodel.parallel.predict import cpu_process_share as _cpu_process_share

    dev = load_hardware("amd-epyc-2c-kvm")
    d, f, t = _cpu_process_share(dev, 2, 1, 1.0, 0.5)
    assert f == 1.0 and t == 1
    assert d.memory_bandwidth_Bps == pytest.approx(dev.memory_bandwidth_Bps * 0.5)
    assert d.thread_scaling.per_core_bandwidth_Bps == pytest.approx(dev.thread_scaling.per_core_bandwidth_Bps * 0.5)
    assert d.efficiency.elementwise["relu"] == pytest.approx(dev.efficiency.elementwise["relu"] * 0.5)
    d0, _, _ = _cpu_process_share(dev, 2, 1, 1.0, None)
    assert d0.memory_bandwidth_Bps == pytest.approx(dev.memory_bandwidth_Bps / 2)
    assert d0.efficiency.elementwise == dev.efficiency.elementwise
    link = load_hardware("local-gloo-loopback", kind="link")
    times = []
    for ms in (1.0, 0.8, 0.5):
        node = Node(name="n", source="test", device=dev, devices=2, host_memory=8e9, fabric_type="loopback",
                    fabric=link, process_speed=1.0, memory_speed=ms)
        times.append(predict("lstm64", node, batch=16, devices=2, threads=1).iteration_time_s)
    assert times[0] < times[1] < times[2]


def test_tensor_parallelism_must_divide_the_attention_heads():
    with pytest.raises(InputError, match="tp=8 does not divide the 12 heads"):
        predict("gpt2_small", "dgx-a100", batch=8, plan={"dp": 1, "tp": 8, "pp": 1})
    assert predict("gpt2_small", "dgx-a100", batch=8, plan={"dp": 2, "tp": 4, "pp": 1}).iteration_time_s > 0
