"""The kernel model inside the engine: which work items take kernel times, hand-computed values on a toy GPU,
fused attention, the launch model, caching and the profile data that switches it on."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

import perfmodel
from perfmodel.compute import device_rates, work_time
from perfmodel.graph import network_from_dict
from perfmodel.hardware import load_hardware
from perfmodel.hardware.schema import Device, Efficiency, EfficiencyCurve
from perfmodel.kernels import list_archs, list_stacks, load_arch, load_stack
from perfmodel.kernels.attention import flash_times_s
from perfmodel.kernels.bridge import launch_free, row_kernel_times
from perfmodel.kernels.conv import conv_time_s
from perfmodel.kernels.rnn import step_s
from perfmodel.ops.base import ConvShape, GemmShape, Work, gemm

# Toy GPU: 10 SMs x 128 FLOPs/clock x 1 GHz (128 GFLOP/s per SM, 1.28 TFLOP/s), 100 GB/s; one 128x128 tile,
# one CTA of 8 warps per SM, every fraction 1, no CTA prologue: a GEMM's time is waves x tile FLOPs / SM rate.
ARCH = {"kind": "gpu_arch", "name": "toy", "family": "test", "source": "test", "sm_count": 10,
        "boost_clock": "1 GHz", "flops_per_clock_per_sm": {"fp32": 128}, "memory_bandwidth": "100 GB/s",
        "l2_cache": "1 MiB"}
ONES = {k: 1.0 for k in ("gemm", "gemm_tn", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "winograd", "fft", "rnn")}
STACK = {"kind": "software_stack", "name": "toy-stack", "libraries": "test", "source": "test",
         "gemm_tiles": [{"m": 128, "n": 128, "threads": 256, "thread_m": 8, "thread_n": 8, "ctas_per_sm": 1}],
         "conv_algorithms_fwd": ["implicit_gemm"], "conv_algorithms_bwd_data": ["implicit_gemm"],
         "conv_algorithms_bwd_filter": ["implicit_gemm"], "split_k": False, "fused_attention": True,
         "attention_block": 128, "attention_fraction_fwd": 0.5, "attention_fraction_bwd": 0.25,
         "achievable": {"compute": ONES, "memory_bandwidth": 1.0, "kernel_overhead": "50 us",
                        "rnn_step_overhead": "0 us", "rnn_memory_bandwidth": 1.0}}
RATE_SM = 128e9


@pytest.fixture()
def toy(tmp_path):
    """(device with the toy arch and stack, the same device without them)."""
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(ARCH))
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(STACK))
    flat = Efficiency(matrix=EfficiencyCurve(max=0.5, half=0), conv=EfficiencyCurve(max=0.5, half=0),
                      memory=EfficiencyCurve(max=1.0, half=0))
    base = dict(name="toy", type="gpu", source="test", peak_flops={"fp32": 1.28e12}, memory_bandwidth=100e9,
                memory=16e9, kernel_overhead=5e-6, efficiency=flat)
    dev = Device(**base, gpu_arch=str(tmp_path / "arch.yaml"), software_stack=str(tmp_path / "stack.yaml"))
    return dev, Device(**base)


def test_gemm_work_takes_the_tile_and_wave_time(toy):
    dev, plain = toy
    # [128, 1024] x [1024, 1280]: 10 CTAs on 10 SMs, one wave of 2 x 128 x 128 x 1024 FLOPs per SM
    w = gemm("matmul", 128, 1280, 1024, flops=2 * 128 * 1280 * 1024, bytes_read=1.0, bytes_written=1.0)
    assert work_time(w, device_rates(dev, "fp32")).time_s == pytest.approx(2 * 128 * 128 * 1024 / RATE_SM)
    # 1,290 x 1280: 11 x 10 = 110 CTAs, 11 waves (wave quantization), vs the curve: flops / (peak x 0.5)
    w2 = gemm("matmul", 1290, 1280, 1024, flops=2 * 1290 * 1280 * 1024)
    assert work_time(w2, device_rates(dev, "fp32")).time_s == pytest.approx(11 * 2 * 128 * 128 * 1024 / RATE_SM)
    assert work_time(w2, device_rates(plain, "fp32")).time_s == pytest.approx(2 * 1290 * 1280 * 1024 / 0.64e12)


def test_a_work_of_several_kernels_counts_them_by_flops(toy):
    dev, _ = toy
    one = 2 * 128 * 128 * 1024 / RATE_SM
    two = gemm("matmul", 128, 1280, 1024, flops=2 * 2 * 128 * 1280 * 1024, kernels=2)  # a matmul backward
    assert work_time(two, device_rates(dev, "fp32")).time_s == pytest.approx(2 * one)


def test_stack_overhead_is_replaced_by_the_launch_model(toy):
    dev, _ = toy
    # a 128 x 128 x 8 GEMM: 2 x 128 x 128 x 8 / 128e9 = 2.05 us of compute; DRAM 4 x (1024 + 1024 + 16384) B
    # / 100 GB/s = 0.74 us; the stack's 50 us DeepBench overhead is dropped, the device's 5 us launch
    # overlaps: max(2.05 us, 5 us)
    w = gemm("matmul", 128, 128, 8, flops=2 * 128 * 128 * 8)
    t = work_time(w, device_rates(dev, "fp32"))
    assert t.time_s == pytest.approx(5e-6)
    assert t.overhead_s == pytest.approx(5e-6 - 2 * 128 * 128 * 8 / RATE_SM)
    assert launch_free(load_stack(dev.software_stack)).achievable.kernel_overhead_s == 0.0


def test_convolution_passes_and_transposed_convolution(toy):
    dev, _ = toy
    arch, stack = load_arch(dev.gpu_arch), launch_free(load_stack(dev.software_stack))
    shape = ConvShape(batch=4, c_in=64, c_out=128, in_size=(16, 16), out_size=(16, 16), kernel=(3, 3),
                      stride=(1, 1), padding=(1, 1))
    d = {"N": 4, "C": 64, "K": 128, "H": 16, "W": 16, "R": 3, "S": 3, "stride_h": 1, "stride_w": 1,
         "pad_h": 1, "pad_w": 1, "groups": 1}
    flops = 2.0 * 4 * 128 * 16 * 16 * 64 * 9
    t, fused = row_kernel_times([shape] * 3, ["conv"] * 3, [0, 1, 2], [0, 0, 0], [flops] * 3, "fp32", arch, stack)
    for got, phase in zip(t, ("fwd", "bwd_data", "bwd_filter")):
        assert got == pytest.approx(float(conv_time_s(d, phase, "fp32", arch, stack)[0]))
    assert not fused.any()
    # fwd: implicit GEMM M = K = 128, N = 4 x 16 x 16 = 1024, K = 576: 8 CTAs, one wave of 2 x 128^2 x 576
    assert t[0] == pytest.approx(2 * 128 * 128 * 576 / RATE_SM)
    # a transposed convolution 128 -> 64 channels, 16x16 -> 16x16, runs that convolution's passes swapped
    tr = ConvShape(batch=4, c_in=128, c_out=64, in_size=(16, 16), out_size=(16, 16), kernel=(3, 3),
                   stride=(1, 1), padding=(1, 1), transposed=True)
    tt, _ = row_kernel_times([tr] * 3, ["conv/transposed"] * 3, [0, 1, 2], [0, 0, 0], [flops] * 3, "fp32",
                             arch, stack)
    assert tt == pytest.approx(t[[1, 0, 2]])


def test_unsupported_and_shapeless_work_keeps_the_curves(toy):
    dev, plain = toy
    grouped = ConvShape(batch=4, c_in=64, c_out=64, in_size=(16, 16), out_size=(16, 16), kernel=(3, 3),
                        stride=(1, 1), padding=(1, 1), groups=64)
    for w in (Work("conv", flops=1e9, bytes_read=1e6, shape=grouped), Work("memory", flops=1e6, bytes_read=1e8)):
        assert work_time(w, device_rates(dev, "fp32")).time_s == work_time(w, device_rates(plain, "fp32")).time_s


def test_recurrent_gemm_is_one_step_per_kernel(toy):
    dev, _ = toy
    arch, stack = load_arch(dev.gpu_arch), launch_free(load_stack(dev.software_stack))
    # ops: T = 32 steps of [batch 64, h 256] x [256, 4h 1024]; kernel model: weights [1024, 256] x [256, 64]
    shape = GemmShape(64, 1024, 256)
    t, _ = row_kernel_times([shape], ["rnn/gemm/recurrent"], [0], [0], [32 * 2.0 * 64 * 1024 * 256], "fp32",
                            arch, stack)
    assert t[0] == pytest.approx(32 * float(step_s(1024, 64, 256, "fp32", arch, stack)))
    # compute: 8 x 1 CTAs, one wave of 2 x 128 x 128 x 256 FLOPs (65.5 us), above the weights' 13.8 us of DRAM
    assert t[0] == pytest.approx(32 * 2 * 128 * 128 * 256 / RATE_SM)


def test_an_unfused_recurrent_cell_launches_its_kernels(toy, tmp_path):
    dev, _ = toy
    (tmp_path / "unfused.yaml").write_text(yaml.safe_dump({**STACK, "rnn_cell_kernels": 12}))
    unfused = dev.model_copy(update={"software_stack": str(tmp_path / "unfused.yaml")})
    # 32 steps of a tiny fused gate kernel: 32 launches of 5 us (the kernel itself is 0.1 us of DRAM traffic)
    cell = Work("memory", flops=1e3, bytes_read=5e3, bytes_written=5e3, kernels=32, efficiency_key="elementwise/rnn-cell")
    assert work_time(cell, device_rates(dev, "fp32")).time_s == pytest.approx(32 * 5e-6)
    assert work_time(cell, device_rates(unfused, "fp32")).time_s == pytest.approx(12 * 32 * 5e-6)
    other = Work("memory", flops=1e3, bytes_read=5e3, bytes_written=5e3, kernels=32, efficiency_key="elementwise/add")
    assert work_time(other, device_rates(unfused, "fp32")).time_s == pytest.approx(32 * 5e-6)


def test_flash_attention_time_by_hand(toy):
    dev, _ = toy
    arch, stack = load_arch(dev.gpu_arch), launch_free(load_stack(dev.software_stack))
    # T = 512, d_h = 64, 8 (sample, head) pairs: 8 x 4 = 32 CTAs of 128 query rows, 4 waves on 10 SMs
    fwd, bwd = flash_times_s(512, 64, 8, "fp32", arch, stack)
    assert fwd == pytest.approx(4 * 2 * 2 * 128 * 512 * 64 / (RATE_SM * 0.5))
    assert bwd == pytest.approx(4 * 2 * 5 * 128 * 512 * 64 / (RATE_SM * 0.25))


ATTN = {"name": "attn", "layers": [{"op": "input", "name": "x", "shape": [512, 256]},
                                   {"op": "attention", "name": "a", "heads": 4, "dropout": 0.1}]}


def test_fused_attention_absorbs_scores_softmax_dropout_and_context(toy):
    dev, plain = toy
    g = network_from_dict(ATTN)
    fused = perfmodel.predict(g, dev, batch=2).layers[1]
    unfused = perfmodel.predict(g, plain, batch=2).layers[1]
    assert fused.time_s["forward"] != unfused.time_s["forward"]
    arch, stack = load_arch(dev.gpu_arch), launch_free(load_stack(dev.software_stack))
    fwd_flash, _ = flash_times_s(512, 64, 8, "fp32", arch, stack)
    # QKV [1024, 256] x [256, 768]: 8 x 6 = 48 CTAs, 5 waves; out-proj [1024, 256] x [256, 256]: 16 CTAs, 2
    qkv, out = 5 * 2 * 128 * 128 * 256 / RATE_SM, 2 * 2 * 128 * 128 * 256 / RATE_SM
    bias = 1 + 1 / (2 * 256)  # the projections' bias adds m x n FLOPs (counted as GEMM work)
    assert fused.time_s["forward"] == pytest.approx((qkv + out) * bias + fwd_flash, rel=1e-6)


def test_kernel_times_are_computed_once_per_table():
    g = perfmodel.load_network("resnet50")
    perfmodel.predict(g, "v100-sxm2", batch=8)
    tables = [t for t in g.__dict__["_engine_tables"].values()]
    cached = [t[1].__dict__.get("_kernel_times") for t in tables]
    assert any(cached)
    before = {k: v[2] for c in cached if c for k, v in c.items()}
    perfmodel.predict(g, "v100-sxm2", batch=8, layers=False)
    after = {k: v[2] for c in (t[1].__dict__.get("_kernel_times") for t in g.__dict__["_engine_tables"].values())
             if c for k, v in c.items()}
    assert all(after[k] is before[k] for k in before)


def test_every_gpu_profile_names_an_arch_that_lists_it_and_a_stack():
    from perfmodel.hardware import list_hardware

    gpus = list_hardware("gpu")
    assert len(gpus) >= 10
    for d in gpus:
        assert d.gpu_arch in list_archs() and d.software_stack in list_stacks(), d.name
        assert d.name in load_arch(d.gpu_arch).devices, d.name


def test_kernel_model_moves_whole_networks_the_physical_way():
    # Winograd makes 3x3 stride-1 convolutions faster than direct FLOPs at the curve's efficiency allow:
    # VGG-16 on a V100 is faster with the kernel model than with the same profile's curves
    v100 = load_hardware("v100-sxm2", kind="device")
    curves = v100.model_copy(update={"software_stack": None})
    k = perfmodel.predict("vgg16", v100, batch=32, layers=False).iteration_time_s
    c = perfmodel.predict("vgg16", curves, batch=32, layers=False).iteration_time_s
    assert k < c
    assert np.isfinite(k)
