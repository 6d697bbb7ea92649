"""Megatron sequence parallelism: Korthikanti et al. 2022 activation formulas by hand (GPT-3 175B)."""

import pytest

from perfmodel.errors import InputError
from perfmodel.parallel.collectives import Tier, collective_time
from perfmodel.parallel.sequence import layer_activation_bytes, sp_collective_s, sp_split_bytes

S, H, A, T = 2048, 12288, 96, 8  # GPT-3 175B, t = 8 (Korthikanti Table 3)
SBH = S * H  # b = 1


def test_gpt3_175b_per_layer():
    # 5as/(ht) = 5*96*2048/(12288*8) = 10
    assert layer_activation_bytes(S, 1, H, A, T) == pytest.approx(SBH * (10 + 3 + 10))  # 578,813,952 B
    assert layer_activation_bytes(S, 1, H, A, T) == 578_813_952
    assert layer_activation_bytes(S, 1, H, A, T, sequence_parallel=True) == pytest.approx(SBH * 14.25)
    assert layer_activation_bytes(S, 1, H, A, T, True, "selective") == pytest.approx(SBH * 34 / 8)
    assert layer_activation_bytes(S, 1, H, A, T, False, "selective") == pytest.approx(SBH * 13)
    assert layer_activation_bytes(S, 1, H, A, T, False, "full") == pytest.approx(2 * SBH)
    assert layer_activation_bytes(S, 1, H, A, T, True, "full") == pytest.approx(2 * SBH / 8)


def test_no_parallelism_is_34_plus_5as_over_h():
    # Korthikanti eq. 1: sbh(34 + 5as/h); s=4, b=2, h=8, a=2 -> 64 * (34 + 5) = 2496
    assert layer_activation_bytes(4, 2, 8, 2) == pytest.approx(64 * 39)
    assert layer_activation_bytes(4, 2, 8, 2, 1, True) == pytest.approx(64 * 39)  # SP changes nothing at t=1


def test_sp_saves_about_half_at_gpt3_scale():
    # paper: SP + selective recomputation cut activation memory ~5x vs tensor parallel alone
    ratio = layer_activation_bytes(S, 1, H, A, T) / layer_activation_bytes(S, 1, H, A, T, True, "selective")
    assert ratio == pytest.approx(23 / 4.25)  # 5.41
    with pytest.raises(InputError):
        layer_activation_bytes(S, 1, H, A, T, recompute="some")


def test_sp_collectives_replace_all_reduce_at_equal_ring_volume():
    tiers = (Tier(8, 300e9, 1e-6),)
    n = 2 * SBH  # one fp16 activation
    ring = collective_time("all-reduce", n, tiers, "ring")
    assert sp_collective_s(n, tiers, "ring") == pytest.approx(ring)
    assert sp_collective_s(n, tiers, "ring") == pytest.approx(2 * (7 / 8 * n / 300e9 + 7e-6))
    assert sp_split_bytes(800.0, 8, True) == 100.0 and sp_split_bytes(800.0, 8, False) == 800.0


def test_sequence_split_picks_norm_dropout_residual_left_whole():
    from perfmodel.parallel.sequence import sequence_split

    ops = ["layernorm", "dense", "dropout", "add", "gelu"]
    assert sequence_split(ops, [False, True, False, False, True], 4, True) == [True, False, True, True, False]
    assert sequence_split(ops, [False] * 5, 4, False) == [False] * 5
    assert sequence_split(ops, [False] * 5, 1, True) == [False] * 5


def test_predict_sequence_parallel_gpt2_small_tp4_by_hand():
    import perfmodel

    kw = dict(batch=4, devices=4, plan={"dp": 1, "tp": 4, "pp": 1, "microbatches": 1}, dtype="bf16",
              optimizer="adam", layers=False)
    a = perfmodel.predict("gpt2_small", "dgx-a100", **kw)
    b = perfmodel.predict("gpt2_small", "dgx-a100", sequence_parallel=True, **kw)
    sbh = 4 * 1024 * 768
    # 25 dropouts (1-byte masks, sbh each) and 25 layer norms (bf16 input 2 sbh + fp32 mean/rstd 8 sb) kept whole by
    # tensor parallelism; SP keeps 1/4 of each on a rank
    saved = 25 * sbh + 25 * (2 * sbh + 8 * 4 * 1024)
    assert a.memory.activations_bytes - b.memory.activations_bytes == pytest.approx(saved * 3 / 4)
    assert b.breakdown["communication"] == pytest.approx(a.breakdown["communication"])  # RS + AG = ring all-reduce
    assert b.iteration_time_s < a.iteration_time_s  # norm / dropout work split over the 4 ranks
    one = perfmodel.predict("gpt2_small", "dgx-a100", batch=4, devices=1, sequence_parallel=True, layers=False,
                            dtype="bf16", optimizer="adam")
    assert one.iteration_time_s == perfmodel.predict("gpt2_small", "dgx-a100", batch=4, layers=False, dtype="bf16",
                                                     optimizer="adam").iteration_time_s  # no-op without tp
