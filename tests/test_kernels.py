"""GPU kernel model: formulas against hand-computed values, algorithm choice, monotonicity, data files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.kernels import (
    Achievable, GemmTile, GpuArch, SoftwareStack, arch_for_device, kernel_flops, kernel_time_s, list_archs,
    list_stacks, load_arch, load_stack,
)
from perfmodel.kernels.allreduce import Tier, bus_bandwidth_Bps, ring_allreduce_s
from perfmodel.kernels.conv import conv_time_s, fft, implicit_gemm, model_flops, winograd
from perfmodel.kernels.gemm import gemm_compute_s, gemm_time_s, k_per_cta, tile_efficiency, tile_time_s
from perfmodel.kernels.rnn import rnn_model_flops, rnn_time_s

# A toy GPU with round numbers: 10 SMs x 100 FLOPs/clock x 1 GHz = 1 TFLOP/s, 100 GB/s.
TOY = GpuArch(name="toy", family="test", source="test", sm_count=10, boost_clock="1 GHz",
              flops_per_clock_per_sm={"fp32": 128}, memory_bandwidth="100 GB/s", l2_cache="1 MiB")
T128 = GemmTile(m=128, n=128, threads=256, thread_m=8, thread_n=8, ctas_per_sm=1)
ONE = Achievable(compute={"gemm": 1.0, "gemm_tn": 1.0, "conv_fwd": 1.0, "conv_bwd_data": 1.0,
                          "conv_bwd_filter": 1.0, "winograd": 1.0, "fft": 1.0, "rnn": 1.0},
                 memory_bandwidth=1.0, kernel_overhead="0 us", rnn_step_overhead="0 us", rnn_memory_bandwidth=1.0)
STACK = SoftwareStack(name="toy-stack", libraries="test", source="test", gemm_tiles=(T128,), split_k=False,
                      achievable=ONE)
RATE_SM = 128e9  # FLOP/s of one toy SM


def test_tile_efficiency_is_the_shared_memory_bound():
    # 128 FLOPs/clock = 64 FMAs per clock per SM, 32 words per clock: 2 FMAs per loaded word needed.
    assert tile_efficiency(T128, TOY, "fp32") == 1.0  # 8x8 per thread: 64 FMAs / 16 words = 4 >= 2
    small = GemmTile(m=32, n=32, threads=64, thread_m=2, thread_n=2)
    assert tile_efficiency(small, TOY, "fp32") == pytest.approx(0.5)  # 4 FMAs / 4 words = 1 of the needed 2
    maxwell = load_arch("gm200-titan-x")  # 128 FMAs per clock: 4 per word needed
    assert tile_efficiency(GemmTile(m=32, n=32, threads=64, thread_m=4, thread_n=4), maxwell, "fp32") == 0.5


def test_one_tile_one_wave_by_hand():
    # M=N=128, K=1000: one CTA on one SM: 2*128*128*1000 FLOPs at 128 GFLOP/s (8 warps >= 4: full occupancy)
    t = tile_time_s(128, 128, 1000, 1, T128, RATE_SM, TOY, 1.0)
    assert t == pytest.approx(2 * 128 * 128 * 1000 / RATE_SM)


def test_wave_quantization_by_hand():
    # 11 CTAs on 10 SMs take two rounds; 10 CTAs take one.
    one = tile_time_s(128 * 10, 128, 1000, 1, T128, RATE_SM, TOY, 1.0)
    eleven = tile_time_s(128 * 11, 128, 1000, 1, T128, RATE_SM, TOY, 1.0)
    assert eleven == pytest.approx(2 * one)


def test_split_k_slices_and_reduction_by_hand():
    assert k_per_cta(1024, 4) == 256
    assert k_per_cta(300, 4) == 256  # a split never works on less than 256 of K
    assert k_per_cta(100, 4) == 100
    split = STACK.model_copy(update={"split_k": True})
    # M=N=128, K=4096: 1 CTA. With 8 splits: 8 CTAs of K=512 on 8 SMs, plus 2*8*128*128*4 bytes of partials.
    t8 = 2 * 128 * 128 * 512 / RATE_SM + 2 * 8 * 128 * 128 * 4 / 100e9
    best = gemm_compute_s(128, 128, 4096, "fp32", TOY, split)
    assert best == pytest.approx(t8)  # 8 splits beat 1 (4x longer), 4 and 16 (more waves or reduction)


def test_gemm_time_is_max_of_compute_and_dram_plus_overhead():
    st_ = STACK.model_copy(update={"achievable": ONE.model_copy(update={"kernel_overhead_s": 5e-6})})
    # thin GEMM M=128, N=1, K=1e6: DRAM 4*(128e6 + 1e6 + 128) bytes at 100 GB/s
    dram = 4 * (128 * 1e6 + 1e6 + 128) / 100e9
    comp = gemm_compute_s(128, 1, 1e6, "fp32", TOY, st_)
    assert gemm_time_s(128, 1, 1e6, "fp32", TOY, st_) == pytest.approx(5e-6 + max(dram, comp))


def test_pseudo_fp16_moves_half_the_bytes_at_fp32_math():
    slow = TOY.model_copy(update={"memory_bandwidth_Bps": 1e9})  # DRAM-bound: 0.5 s of traffic vs 0.256 s math
    fp32 = gemm_time_s(128, 1, 1e6, "fp32", slow, STACK)
    half = gemm_time_s(128, 1, 1e6, "fp16_io_fp32_math", slow, STACK)
    assert fp32 == pytest.approx(4 * (128e6 + 1e6 + 128) / 1e9)
    assert half == pytest.approx(2 * (128e6 + 1e6 + 128) / 1e9)
    big = dict(M=1280, N=1280, K=4096)
    assert gemm_compute_s(**big, dtype="fp16_io_fp32_math", arch=TOY, stack=STACK) == pytest.approx(
        gemm_compute_s(**big, dtype="fp32", arch=TOY, stack=STACK))


def test_conv_model_flops_by_hand():
    s = dict(N=1, C=3, H=5, W=5, K=2, R=3, S=3, pad_h=1, pad_w=1, stride_h=1, stride_w=1, groups=1)
    assert float(model_flops(s)) == 2 * 1 * 2 * 5 * 5 * 3 * 9  # 2700
    s2 = dict(s, stride_h=2, stride_w=2)  # 3x3 outputs
    assert float(model_flops(s2)) == 2 * 2 * 3 * 3 * 3 * 9


def test_implicit_gemm_executed_work_by_hand():
    s = dict(N=2, C=16, H=8, W=8, K=32, R=1, S=1, pad_h=0, pad_w=0, stride_h=2, stride_w=2, groups=1)
    _, fwd = implicit_gemm(s, "fwd", "fp32", TOY, STACK)
    _, bwd = implicit_gemm(s, "bwd_data", "fp32", TOY, STACK)
    assert float(fwd) == float(model_flops(s))  # 2*32*(2*4*4)*16
    assert float(bwd) == 4 * float(model_flops(s))  # a strided 1x1 backward-data visits all 8x8 pixels


def test_winograd_executed_work_and_applicability():
    s = dict(N=1, C=64, H=8, W=8, K=64, R=3, S=3, pad_h=1, pad_w=1, stride_h=1, stride_w=1, groups=1)
    _, ex2 = winograd(s, "fwd", "fp32", TOY, STACK, m=2, fused=True)
    assert float(ex2) == 2 * 16 * 64 * (4 * 4) * 64  # 16 GEMMs of 64 x (16 tiles) x 64
    assert float(model_flops(s)) / float(ex2) == pytest.approx(2.25)  # F(2x2,3x3): 36/16 fewer multiplies
    _, ex4 = winograd(s, "fwd", "fp32", TOY, STACK, m=4, fused=False)
    assert float(model_flops(s)) / float(ex4) == pytest.approx(4.0)  # F(4x4,3x3): 144/36
    t, _ = winograd(dict(s, stride_h=2, stride_w=2), "fwd", "fp32", TOY, STACK, m=2, fused=True)
    assert np.isinf(t)
    t, _ = fft(dict(s, stride_h=2, stride_w=2), "fwd", "fp32", TOY, STACK)
    assert np.isinf(t)


def test_choice_rule_matches_cudnn_on_typical_layers():
    arch, stack = load_arch("gp102-gtx-1080ti"), load_stack("cuda8-cudnn6")
    vgg = dict(N=16, C=128, H=28, W=28, K=128, R=3, S=3, pad_h=1, pad_w=1, stride_h=1, stride_w=1)
    one = dict(N=16, C=256, H=14, W=14, K=1024, R=1, S=1, pad_h=0, pad_w=0, stride_h=1, stride_w=1)
    assert str(conv_time_s(vgg, "fwd", "fp32", arch, stack)[1]).startswith("winograd")
    assert str(conv_time_s(one, "fwd", "fp32", arch, stack)[1]).startswith("implicit")


def test_rnn_by_hand_and_linear_in_timesteps():
    assert float(rnn_model_flops("lstm", 100, 8, 5)) == 2 * 4 * 100 * 100 * 8 * 5
    one = rnn_time_s("gru", "fwd", 256, 16, 1, "fp32", TOY, STACK)
    assert rnn_time_s("gru", "fwd", 256, 16, 7, "fp32", TOY, STACK) == pytest.approx(7 * one)
    # backward-weights is one GEMM [3H, B*T] x [B*T, H]
    assert rnn_time_s("gru", "bwd_weights", 256, 16, 7, "fp32", TOY, STACK) == pytest.approx(
        gemm_time_s(768, 256, 112, "fp32", TOY, STACK))
    with pytest.raises(ValueError):
        rnn_time_s("elman", "fwd", 1, 1, 1, "fp32", TOY, STACK)


def test_ring_allreduce_by_hand():
    intra, inter = Tier(name="a", bandwidth_Bps=1e9, alpha_s=1e-5), Tier(name="b", bandwidth_Bps=5e8, alpha_s=2e-5)
    assert ring_allreduce_s(8e6, 2, 1, intra) == pytest.approx(2 * (1e-5 + 4e6 / 1e9))
    # 16 GPUs on 2 nodes: every step waits for the slower inter-node hop
    assert ring_allreduce_s(16e6, 16, 2, intra, inter) == pytest.approx(30 * (2e-5 + 1e6 / 5e8))
    assert ring_allreduce_s(16e6, 1, 1, intra) == 0.0
    assert bus_bandwidth_Bps(8e6, 2, 0.008) == pytest.approx(1e9)


def test_public_entry_point_and_flops():
    arch, stack = "gp100-p100-pcie", "cuda8-cudnn6"
    g = kernel_time_s("gemm", {"M": 1024, "N": 1024, "K": 1024}, "fp32", arch, stack)
    assert isinstance(g, float) and g > 0
    many = kernel_time_s("gemm", {"M": np.array([512, 1024]), "N": 1024, "K": 1024}, "fp32", arch, stack)
    assert many.shape == (2,) and many[0] < many[1]
    conv = {"N": 8, "C": 64, "H": 56, "W": 56, "K": 64, "R": 3, "S": 3, "pad_h": 1, "pad_w": 1}
    for kind in ("conv_fwd", "conv_bwd_data", "conv_bwd_filter"):
        assert kernel_time_s(kind, conv, "fp32", arch, stack) > 0
    assert kernel_flops("conv_fwd", conv) == pytest.approx(2 * 8 * 64 * 56 * 56 * 64 * 9)
    assert kernel_time_s("rnn_fwd", {"cell": "lstm", "hidden": 512, "batch": 16, "timesteps": 10}, "fp32",
                         arch, stack) > 0
    with pytest.raises(ValueError):
        kernel_time_s("pooling", {}, "fp32", arch, stack)


def test_data_files_load_and_match_datasheet_peaks():
    assert {"gm200-titan-x", "gm200-m40", "gp102-gtx-1080ti", "gp100-p100-pcie"} <= set(list_archs())
    assert {"cuda75-cudnn5", "cuda8-cudnn6"} <= set(list_stacks())
    # peaks at the rated clock from hardware_datasheets.md: 1080 Ti 11.34, P100 PCIe 9.3, Titan X 6.6, A100 TF32 156
    rated = {n: load_arch(n).model_copy(update={"clock_factor": 1.0}) for n in list_archs()}
    assert rated["gp102-gtx-1080ti"].peak_flops("fp32") == pytest.approx(11.34e12, rel=0.01)
    assert rated["gp100-p100-pcie"].peak_flops("fp32") == pytest.approx(9.3e12, rel=0.01)
    assert rated["gm200-titan-x"].peak_flops("fp32") == pytest.approx(6.6e12, rel=0.01)
    assert rated["ga100-a100-sxm4"].peak_flops("tf32") == pytest.approx(156e12, rel=0.01)
    for a in map(load_arch, list_archs()):  # a fitted clock stays physical: Teslas never above their rated boost
        assert 0.6 <= a.clock_factor <= (1.3 if a.boost_above_rated else 1.0)
    assert arch_for_device("p100-pcie").name == "gp100-p100-pcie"
    assert arch_for_device("no-such-gpu") is None
    for name in list_stacks():
        s = load_stack(name)
        assert (s.gemm_tiles or s.target == "cpu") and s.source.strip()


def test_stack_rejects_unknown_algorithm():
    with pytest.raises(ValueError):
        SoftwareStack(name="x", libraries="x", source="x", gemm_tiles=(T128,), conv_algorithms_fwd=("magic",))


P100 = load_arch("gp100-p100-pcie")
CUDNN6 = load_stack("cuda8-cudnn6")
dims = st.integers(min_value=1, max_value=6000)


@settings(max_examples=60, deadline=None)
@given(dims, dims, dims, st.integers(min_value=1, max_value=500))
def test_gemm_time_never_drops_when_a_dimension_grows(M, N, K, dM):
    # within one kernel: a shape that grows past the stack's thin-GEMM limit leaves the slower thin kernel
    # (measured by DeepBench: tests/test_kernels_calls.py), so both shapes stay on one side of it
    thin = CUDNN6.thin_gemm_max_n
    base = gemm_time_s(M, N, K, "fp32", P100, CUDNN6)
    for grown in ((M + dM, N, K), (M, N + dM, K), (M, N, K + dM)):
        if (min(M, N) <= thin) != (min(grown[0], grown[1]) <= thin):
            continue
        assert gemm_time_s(*grown, "fp32", P100, CUDNN6) >= base * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64), st.sampled_from([1, 3, 5]), st.integers(8, 128), st.integers(7, 64), st.integers(1, 32))
def test_conv_time_never_drops_with_batch(n, r, c, hw, dn):
    s = dict(N=n, C=c, H=hw, W=hw, K=64, R=r, S=r, pad_h=r // 2, pad_w=r // 2, stride_h=1, stride_w=1)
    for phase in ("fwd", "bwd_data", "bwd_filter"):
        t0 = conv_time_s(s, phase, "fp32", P100, CUDNN6)[0]
        t1 = conv_time_s(dict(s, N=n + dn), phase, "fp32", P100, CUDNN6)[0]
        assert t1 >= t0 * (1 - 1e-12)


@settings(max_examples=40, deadline=None)
@given(st.floats(1e3, 1e9), st.floats(1.01, 10.0))
def test_allreduce_never_faster_for_more_bytes(size, grow):
    intra, inter = Tier(name="a", bandwidth_Bps=6e9, alpha_s=1e-5), Tier(name="b", bandwidth_Bps=4e9, alpha_s=1e-5)
    for gpus, nodes in ((2, 1), (8, 1), (16, 2)):
        assert ring_allreduce_s(size * grow, gpus, nodes, intra, inter) > ring_allreduce_s(size, gpus, nodes, intra, inter)
    assert math.isfinite(float(ring_allreduce_s(size, 32, 4, intra, inter)))


def test_bridge_maps_ops_work_items_to_kernel_times():
    from perfmodel.kernels.bridge import launch_free, work_times_s
    from perfmodel.ops.base import ConvShape, Work, gemm

    arch, stack = "gp100-p100-pcie", "cuda8-cudnn6"
    g = gemm("matmul", 512, 64, 1024, flops=10 * 2 * 512 * 64 * 1024, kernels=10)  # ten [512, 1024] x [1024, 64]
    conv = ConvShape(batch=8, c_in=64, c_out=128, in_size=(56, 56), out_size=(56, 56), kernel=(3, 3),
                     stride=(1, 1), padding=(1, 1))
    c = Work("conv", flops=2.0 * 8 * 128 * 56 * 56 * 64 * 9, shape=conv)
    plain = Work("memory", bytes_read=1e6)
    got = work_times_s([g, c, c, plain], ["forward", "forward", "backward_weight", "forward"], "fp32", arch, stack)
    free = launch_free(load_stack(stack))  # the engine's launch model replaces DeepBench's per-kernel overhead
    assert got[0] == pytest.approx(10 * kernel_time_s("gemm", {"M": 512, "N": 64, "K": 1024}, "fp32", arch, free))
    d = {"N": 8, "C": 64, "H": 56, "W": 56, "K": 128, "R": 3, "S": 3, "pad_h": 1, "pad_w": 1}
    assert got[1] == pytest.approx(kernel_time_s("conv_fwd", d, "fp32", arch, free))
    assert got[2] == pytest.approx(kernel_time_s("conv_bwd_filter", d, "fp32", arch, free))
    assert np.isnan(got[3])  # not a kernel the model knows: the engine keeps its own estimate


def test_bad_files_give_one_clean_error(tmp_path):
    from perfmodel.errors import HardwareError, NotFoundError

    with pytest.raises(NotFoundError):
        load_arch("no-such-arch")
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: gpu_arch\nname: x\nfamily: y\nsource: z\nsm_count: -3\nboost_clock: 1 GHz\n"
                   "flops_per_clock_per_sm: {fp32: 128}\nmemory_bandwidth: 1 GB/s\nl2_cache: 1 MiB\n")
    with pytest.raises(HardwareError, match="sm_count"):
        load_arch(str(bad))
    bad.write_text("kind: software_stack\nname: x\nlibraries: y\nsource: z\ngemm_tiles: []\n")
    with pytest.raises(HardwareError):
        load_stack(str(bad))


@pytest.mark.skipif(not __import__("perfmodel.kernels.deepbench", fromlist=["x"]).DEFAULT_CSV.is_file(),
                    reason="shared/published/deepbench_train_dev.csv is not next to this checkout")
def test_committed_deepbench_report_matches_the_model():
    """The committed report's in-sample medians are what the model gives today with its fitted parameters."""
    import json
    from pathlib import Path

    from perfmodel.kernels.deepbench import load_rows
    from perfmodel.kernels.fit import Context, predict
    from perfmodel.kernels.report import table

    rep = json.loads((Path(__file__).parents[1] / "validation/reports/deepbench-dev/report.json").read_text())
    ctx = Context.of(load_rows())
    assert len(ctx.rows) == rep["rows"] == 3030
    got = table(ctx.rows, predict(ctx, rep["fitted_params"]), ctx.measured)
    for cls, s in rep["in_sample"]["per_class"].items():
        assert got["per_class"][cls]["median"] == pytest.approx(s["median"], abs=1e-6), cls


def test_fft_executed_work_by_hand():
    # one 8x8 image, one channel, one 3x3 filter; a 32-point tile holds it: 32 x 17 = 544 frequency bins
    s = dict(N=1, C=1, H=8, W=8, K=1, R=3, S=3, pad_h=1, pad_w=1, stride_h=1, stride_w=1, groups=1)
    t, executed = fft(s, "fwd", "fp32", TOY, STACK.model_copy(update={"fft_tile": 32}))
    products = 8 * 544  # one complex multiply-add per bin
    transforms = 3 * 5 * 32 * 32 * 5  # input, filter and output planes: 5 n log2 n each
    assert float(executed) == products + transforms
    moved = 3 * 2 * 8 * 544 + 4 * (64 + 9 + 64)  # spectra written and read + the real tensors once
    assert float(t) == pytest.approx(products / 1.28e12 + moved / 100e9)


def test_writeback_replaces_only_its_marked_block(tmp_path):
    from perfmodel.kernels.writeback import MARK, _replace_block

    f = tmp_path / "x.yaml"
    f.write_text("name: x\nnotes: kept\n")
    _replace_block(f, ["clock_factor: 1.1"])
    _replace_block(f, ["clock_factor: 0.9"])  # regenerated, not appended twice
    assert f.read_text() == f"name: x\nnotes: kept\n{MARK}\nclock_factor: 0.9\n"
