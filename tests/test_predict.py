"""predict(): totals, breakdown, memory footprint and property-based invariants."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import perfmodel
from perfmodel.hardware.schema import ThreadScaling
from perfmodel.memory import memory_footprint
from perfmodel.optimizers import optimizer_work

from conftest import small_cnn, small_mlp
from test_pipeline_properties import faster

CNN = small_cnn()
MLP = small_mlp()


def test_breakdown_and_stages_add_up(cnn, v100, cpu):
    for hw in (v100, cpu):
        p = perfmodel.predict(cnn, hw, batch=8)
        assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-9)
        assert sum(p.stages.values()) == pytest.approx(p.iteration_time_s, rel=1e-9)
        assert sum(r.time_s["total"] for r in p.layers) + p.stages["optimizer"] == pytest.approx(
            p.iteration_time_s, rel=1e-9)
        assert p.throughput_samples_per_s == pytest.approx(8 / p.iteration_time_s)


def test_first_layer_has_no_backward_data(cnn, v100):
    p = perfmodel.predict(cnn, v100, batch=4)
    c1 = next(r for r in p.layers if r.name == "c1")
    assert c1.time_s["backward_data"] == 0 and c1.flops["backward_data"] == 0
    c2 = next(r for r in p.layers if r.name == "c2")
    assert c2.flops["backward_data"] > 0


def test_optimizer_step_is_memory_bound_over_params():
    w = optimizer_work("adam", 1000, 2, gpu=True)
    # PyTorch's default (foreach / for-loop) Adam runs 7 elementwise passes: lerp_ (2 read, 1 write),
    # mul_ (1, 1), addcmul_ (2, 1), sqrt (1, 1), div (1, 1), add_ (1, 1), addcdiv_ (3, 1): 18 fp32 values
    assert w.bytes == 18 * 4 * 1000 and w.kernels == 7
    assert optimizer_work("sgd", 1000, 2, gpu=False).bytes == 3 * 4 * 1000


def test_memory_footprint_by_hand(mlp, v100):
    params = 256 * 512 + 512 + 512 * 10 + 10
    m = memory_footprint(mlp, v100, batch=16, dtype="fp32", optimizer="adam")
    assert m.weights_bytes == 4 * params
    assert m.gradients_bytes == 4 * params
    assert m.optimizer_bytes == 8 * params
    assert m.total_bytes == pytest.approx(
        m.weights_bytes + m.gradients_bytes + m.optimizer_bytes + m.activations_bytes + m.workspace_bytes
        + v100.runtime_reserved_bytes)


def test_largest_batch_fits_and_next_does_not(v100):
    g = perfmodel.load_network("resnet50")
    m = memory_footprint(g, v100, batch=1)
    assert m.max_batch > 1
    assert memory_footprint(g, v100, batch=m.max_batch).fits
    assert not memory_footprint(g, v100, batch=m.max_batch + 1).fits


def test_not_fitting_is_reported(v100):
    p = perfmodel.predict("resnet50", v100, batch=4096, layers=False)
    assert not p.memory.fits
    assert any("does not fit" in w for w in p.warnings)


def test_mixed_precision_faster_on_tensor_cores(v100):
    p32 = perfmodel.predict("resnet50", v100, batch=64, layers=False)
    p16 = perfmodel.predict("resnet50", v100, batch=64, dtype="fp16", layers=False)
    assert p16.iteration_time_s < p32.iteration_time_s


def test_to_dict_has_stable_keys(cnn, v100):
    d = perfmodel.predict(cnn, v100, batch=2).to_dict()
    for k in ("iteration_time_s", "throughput_samples_per_s", "breakdown", "memory", "layers", "assumptions",
              "bottleneck", "utilization"):
        assert k in d
    assert "total_bytes" in d["memory"] and "fits" in d["memory"]


# ---------------------------------------------------------------- properties

devices = st.sampled_from(["v100-sxm2", "a100-sxm4-80gb", "i7-3820", "xeon-e5-2630v3-2s", "k80"])
nets = st.sampled_from([CNN, MLP])
batches = st.integers(min_value=1, max_value=256)
factors = st.floats(min_value=1.0, max_value=16.0)
PROP = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROP
@given(net=nets, dev=devices, batch=batches)
def test_times_finite_nonnegative_and_breakdown_sums(net, dev, batch):
    p = perfmodel.predict(net, dev, batch=batch)
    assert math.isfinite(p.iteration_time_s) and p.iteration_time_s > 0
    assert all(math.isfinite(v) and v >= 0 for v in p.breakdown.values())
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-9)
    for r in p.layers:
        assert all(math.isfinite(v) and v >= 0 for v in r.time_s.values())


@PROP
@given(net=nets, dev=devices, batch=batches, f=factors)
def test_more_bandwidth_never_slower(net, dev, batch, f):
    d = perfmodel.load_hardware(dev)
    faster = d.model_copy(update={"memory_bandwidth_Bps": d.memory_bandwidth_Bps * f})
    if d.is_cpu and d.thread_scaling.per_core_bandwidth_Bps:
        ts = d.thread_scaling.model_copy(update={"per_core_bandwidth_Bps": d.thread_scaling.per_core_bandwidth_Bps * f})
        faster = faster.model_copy(update={"thread_scaling": ts})
    t0 = perfmodel.predict(net, d, batch=batch, layers=False).iteration_time_s
    t1 = perfmodel.predict(net, faster, batch=batch, layers=False).iteration_time_s
    assert t1 <= t0 * (1 + 1e-12)


@PROP
@given(net=nets, dev=devices, batch=batches, f=factors)
def test_more_peak_flops_never_slower(net, dev, batch, f):
    d = perfmodel.load_hardware(dev)
    faster = d.model_copy(update={"peak_flops": {k: v * f for k, v in d.peak_flops.items()}})
    t0 = perfmodel.predict(net, d, batch=batch, layers=False).iteration_time_s
    t1 = perfmodel.predict(net, faster, batch=batch, layers=False).iteration_time_s
    assert t1 <= t0 * (1 + 1e-12)


@PROP
@given(net=nets, dev=st.sampled_from(["i7-3820", "xeon-e5-2630v3-2s"]), batch=batches,
       serial=st.floats(0.0, 0.5), data=st.data())
def test_more_threads_up_to_physical_cores_never_slower(net, dev, batch, serial, data):
    d = perfmodel.load_hardware(dev)
    d = d.model_copy(update={"thread_scaling": d.thread_scaling.model_copy(update={"serial_fraction": serial})})
    n = data.draw(st.integers(1, d.cores - 1))
    t_n = perfmodel.predict(net, d, batch=batch, threads=n, layers=False).iteration_time_s
    t_n1 = perfmodel.predict(net, d, batch=batch, threads=n + 1, layers=False).iteration_time_s
    assert t_n1 <= t_n * (1 + 1e-12)


def test_threads_past_physical_cores_do_not_help(cpu):
    t = {n: perfmodel.predict("fcn5", cpu, batch=64, threads=n, layers=False).iteration_time_s for n in (4, 8)}
    assert t[8] >= t[4]


# ---- TrainingSetup: every option once, checked, named in errors -----------------------------------

def test_setup_defaults_and_field_checks():
    from perfmodel.prediction import DEFAULTS, SETUP_FIELDS, make_setup

    s = make_setup()
    assert s.batch_or_default == 32 and s.dtype == "fp32" and s.optimizer == "sgd" and s.zero == 0
    assert set(DEFAULTS) == set(SETUP_FIELDS)
    for bad, field in ((dict(batch=0), "batch"), (dict(straggler_cv=float("nan")), "straggler_cv"),
                       (dict(straggler_cv=-1.0), "straggler_cv"), (dict(dtype="fp7"), "dtype"),
                       (dict(zero=4), "zero"), (dict(recompute="some"), "recompute"), (dict(devices=0), "devices"),
                       (dict(bucket_bytes=float("inf")), "bucket_bytes"), (dict(optimizer="lion"), "optimizer")):
        with pytest.raises(perfmodel.InputError, match=field):
            make_setup(**bad)
    with pytest.raises(perfmodel.InputError, match="unknown option"):
        make_setup(warp=9)


def test_expert_parallel_without_experts_is_refused():  # every issue-14 option is modelled (tests/test_moe*.py)
    with pytest.raises(perfmodel.InputError, match="expert_parallel=2 needs a network with mixture-of-experts"):
        perfmodel.predict("fcn5", "dgx1-v100", devices=2, expert_parallel=2)


def test_predict_takes_a_setup_object_or_keywords():
    from perfmodel.prediction import make_setup

    s = make_setup(batch=16, devices=4)
    a = perfmodel.predict("fcn5", "dgx1-v100", s, layers=False)
    b = perfmodel.predict("fcn5", "dgx1-v100", batch=16, devices=4, layers=False)
    assert a.iteration_time_s == b.iteration_time_s and a.devices == 4


# ---- recompute and ZeRO-1 in predict ---------------------------------------------------------------

def test_full_recompute_adds_the_forward_of_every_block_but_the_last():
    from perfmodel.parallel.stages import recompute_info

    g = perfmodel.load_network("gpt2_small")
    base = perfmodel.predict(g, "a100-sxm4-40gb", batch=8, dtype="bf16", optimizer="adam")
    rc = perfmodel.predict(g, "a100-sxm4-40gb", batch=8, dtype="bf16", optimizer="adam", recompute="full")
    mask = recompute_info(g).layers
    # hand sum: the forward times of the recomputed layers, from the rows of the plain prediction
    extra = sum(r.time_s["forward"] for r, on in zip(base.layers, mask) if on)
    assert extra > 0
    assert rc.iteration_time_s == pytest.approx(base.iteration_time_s + extra, rel=1e-12)
    assert rc.breakdown["recompute"] == pytest.approx(extra, rel=1e-12)
    assert sum(rc.breakdown.values()) == pytest.approx(rc.iteration_time_s, rel=1e-12)
    assert rc.memory.activations_bytes < base.memory.activations_bytes / 3
    assert rc.memory.weights_bytes == base.memory.weights_bytes


def test_zero1_shards_the_optimizer_state_over_data_parallel_replicas():
    a = perfmodel.predict("gpt2_small", "dgx-a100", batch=4, devices=8, optimizer="adam", layers=False)
    z = perfmodel.predict("gpt2_small", "dgx-a100", batch=4, devices=8, optimizer="adam", zero=1, layers=False)
    from perfmodel.ops.base import graph_costs

    params = sum(c.params for c in graph_costs(perfmodel.load_network("gpt2_small"), 1, 4))
    assert z.memory.optimizer_bytes == pytest.approx(a.memory.optimizer_bytes / 8, rel=1e-12)
    assert a.memory.optimizer_bytes == 2 * 4 * params  # Adam: two fp32 moments per parameter
    assert z.memory.total_bytes == pytest.approx(a.memory.total_bytes - a.memory.optimizer_bytes * 7 / 8, rel=1e-12)
    # the reduce-scatter + all-gather moves the all-reduce's bytes; each rank updates 1/8 of the parameters
    from perfmodel.compute import work_time
    from perfmodel.engine.rates import device_rates
    from perfmodel.hardware.traits import device_traits
    from perfmodel.optimizers import optimizer_work

    dev = perfmodel.load_hardware("a100-sxm4-40gb")  # the device of dgx-a100
    tensors = sum(int(c.extra.get("param_tensors", 2 if c.params else 0))
                  for c in graph_costs(perfmodel.load_network("gpt2_small"), 1, 4))
    step = optimizer_work("adam", -(-params // 8), tensors, style=device_traits(dev).optimizer_kernels)
    shard = work_time(step, device_rates(dev, "fp32"), "optimizer").time_s
    assert z.stages["optimizer"] == pytest.approx(shard, rel=1e-12)
    assert z.iteration_time_s == pytest.approx(a.iteration_time_s - a.stages["optimizer"] + shard, rel=1e-12)
    assert z.parallel["zero"] == 1


# ---- issue-14 options keep the invariants (hybrid sharding, selective recomputation, context parallelism, offload)

LARGE = st.fixed_dictionaries({
    "recompute": st.sampled_from(["none", "selective", "full"]), "sharding": st.sampled_from(["none", "full", "hybrid"]),
    "context_parallel": st.sampled_from([1, 2, 4]), "offload_activations": st.booleans(),
    "sequence_parallel": st.booleans(), "zero": st.sampled_from([0, 1, 2])})
LARGE_PROP = settings(max_examples=12, deadline=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])


@LARGE_PROP
@given(opts=LARGE, link=st.sampled_from([2.0, 10.0]))
def test_large_options_finite_sum_and_faster_links_never_slower(opts, link):
    if opts["offload_activations"] and opts["recompute"] == "full":
        opts = {**opts, "recompute": "selective"}  # offload with full recomputation is refused (test_large_options)
    kw = dict(batch=2, devices=16, dtype="bf16", optimizer="adam", layers=False, **opts)
    p = perfmodel.predict("gpt2_small", "dgx-a100-ib-hdr", **kw)
    assert math.isfinite(p.iteration_time_s) and p.iteration_time_s > 0
    assert all(math.isfinite(v) and v >= 0 for v in p.breakdown.values())
    assert sum(p.breakdown.values()) == pytest.approx(p.iteration_time_s, rel=1e-9)
    fast = perfmodel.predict("gpt2_small", faster("dgx-a100-ib-hdr", link=link), **kw)
    assert fast.iteration_time_s <= p.iteration_time_s * (1 + 1e-9)


@pytest.mark.parametrize("opt", [dict(sharding="hybrid"), dict(sharding="full"), dict(zero=3), dict(zero=2),
                                 dict(context_parallel=1), dict(recompute="none")])
def test_large_options_on_one_device_are_the_single_device_path(opt):
    base = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=4, dtype="bf16", optimizer="adam", layers=False)
    p = perfmodel.predict("gpt2_small", "a100-sxm4-40gb", batch=4, dtype="bf16", optimizer="adam", layers=False, **opt)
    assert p.iteration_time_s == pytest.approx(base.iteration_time_s, rel=1e-12)
    assert p.memory.total_bytes == pytest.approx(base.memory.total_bytes, rel=1e-12)
