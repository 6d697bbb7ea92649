"""cuDNN 5/6 backward-filter split of N*P*Q: hand-computed values on a toy GPU, monotone in batch."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfmodel.kernels import Achievable, GemmTile, GpuArch, SoftwareStack, load_arch, load_stack
from perfmodel.kernels.conv import implicit_gemm
from perfmodel.kernels.gemm import gemm_compute_s, k_per_cta

# 10 SMs x 128 FLOPs/clock x 1 GHz: 128 GFLOP/s per SM; 100 GB/s of DRAM
TOY = GpuArch(name="toy", family="test", source="test", sm_count=10, boost_clock="1 GHz",
              flops_per_clock_per_sm={"fp32": 128}, memory_bandwidth="100 GB/s", l2_cache="1 MiB")
T128 = GemmTile(m=128, n=128, threads=256, thread_m=8, thread_n=8, ctas_per_sm=1)
ONE = Achievable(compute={c: 1.0 for c in ("gemm", "gemm_tn", "conv_fwd", "conv_bwd_data", "conv_bwd_filter",
                                           "winograd", "fft", "rnn")},
                 memory_bandwidth=1.0, kernel_overhead="0 us", rnn_step_overhead="0 us", rnn_memory_bandwidth=1.0)
STACK = SoftwareStack(name="toy", libraries="test", source="test", gemm_tiles=(T128,), split_k=True,
                      achievable=ONE, conv_algorithms_bwd_filter=("implicit_gemm",))
CUDNN = STACK.model_copy(update={"conv_bwd_filter_splits": (8,)})
RATE_SM = 128e9


def test_slices_of_any_length_when_the_kernel_always_splits():
    assert k_per_cta(392, 8) == 256  # the general rule: no slice under 256 of K
    assert k_per_cta(392, 8, min_k=1) == 49  # cuDNN 5/6 backward-filter: 392 / 8 slices


def test_forced_split_by_hand():
    # M=N=128, K=392: 8 CTAs of 49 k-steps on 8 SMs, plus 8 fp32 partial 128x128 filters written and read back
    t8 = 2 * 128 * 128 * 49 / RATE_SM + 2 * 8 * 128 * 128 * 4 / 100e9
    assert gemm_compute_s(128, 128, 392, "fp32", TOY, STACK, splits=(8,)) == pytest.approx(t8)
    # the general choice: slices of >= 256, so at best 2 CTAs of 256 steps plus 2 partial filters
    t2 = 2 * 128 * 128 * 256 / RATE_SM + 2 * 2 * 128 * 128 * 4 / 100e9
    assert gemm_compute_s(128, 128, 392, "fp32", TOY, STACK) == pytest.approx(t2)


def test_backward_filter_takes_the_stack_splits_by_hand():
    # 1x1 conv, N=8, C=128, 7x7, K=128: dW GEMM M=K=128, N=C=128, K=N*P*Q=392
    s = dict(N=8, C=128, H=7, W=7, K=128, R=1, S=1, pad_h=0, pad_w=0, stride_h=1, stride_w=1)
    t, flops = implicit_gemm(s, "bwd_filter", "fp32", TOY, CUDNN)
    comp = 2 * 128 * 128 * 49 / RATE_SM + 2 * 8 * 128 * 128 * 4 / 100e9
    dram = 4 * (8 * 128 * 49 * 2 + 128 * 128) / 100e9  # image and gradient read, filters written once
    assert t == pytest.approx(max(comp, dram))
    assert flops == 2 * 128 * 128 * 392
    # forward and backward-data never take the backward-filter split
    assert implicit_gemm(s, "fwd", "fp32", TOY, CUDNN)[0] == implicit_gemm(s, "fwd", "fp32", TOY, STACK)[0]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 64), st.integers(8, 512), st.integers(7, 64), st.integers(1, 64))
def test_forced_split_backward_filter_never_drops_with_batch(n, c, hw, dn):
    s = dict(N=n, C=c, H=hw, W=hw, K=64, R=1, S=1, pad_h=0, pad_w=0, stride_h=1, stride_w=1)
    cudnn6 = load_stack("cuda8-cudnn6")
    arch = load_arch("gm200-m40")
    assert implicit_gemm(dict(s, N=n + dn), "bwd_filter", "fp32", arch, cudnn6)[0] >= implicit_gemm(
        s, "bwd_filter", "fp32", arch, cudnn6)[0] * (1 - 1e-12)


def test_cudnn5_and_6_stacks_always_split_backward_filter():
    assert load_stack("cuda8-cudnn6").conv_bwd_filter_splits == (8, 16, 32, 64)
    assert load_stack("cuda75-cudnn5").conv_bwd_filter_splits == (8, 16, 32, 64)
    assert load_stack("pytorch-cuda12").conv_bwd_filter_splits == ()  # current cuDNN: the general choice


def test_winograd_backward_kernels_have_their_own_fraction_by_hand():
    from perfmodel.kernels.conv import winograd

    # 3x3 pad 1 on a 14x14 image, C=K=128, N=1, F(2x2, 3x3): 16 GEMMs of (128 channels, 49 tiles, 128 filters),
    # one 128x128 CTA each: 16 CTAs on 10 SMs = 2 rounds of 2*128*128*128 FLOPs at 128 GFLOP/s (compute-bound)
    s = dict(N=1, C=128, H=14, W=14, K=128, R=3, S=3, pad_h=1, pad_w=1, stride_h=1, stride_w=1)
    half = STACK.model_copy(update={"achievable": ONE.model_copy(update={"compute": {
        **ONE.compute, "winograd_bwd_data": 0.5}})})
    t_bd = winograd(s, "bwd_data", "fp32", TOY, half, 2, True)[0]
    assert t_bd == pytest.approx(2 * 2 * 128 * 128 * 128 / (RATE_SM * 0.5))
    assert winograd(s, "fwd", "fp32", TOY, half, 2, True)[0] == pytest.approx(2 * 2 * 128 * 128 * 128 / RATE_SM)
    # a stack without the backward classes (pytorch-cuda12, older files) uses the forward's fraction
    assert ONE.fraction("winograd_bwd_filter") == ONE.fraction("winograd") == 1.0
    over = ONE.model_copy(update={"by_dtype": {"fp16_io_fp32_math": {"winograd": 0.25}}})
    assert over.fraction("winograd_bwd_data", "fp16_io_fp32_math") == 0.25  # the dtype's forward Winograd value
    assert over.fraction("winograd_bwd_data", "fp32") == 1.0
