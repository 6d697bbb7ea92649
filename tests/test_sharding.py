"""ZeRO / FSDP sharding: the ZeRO paper's 7.5B example, collective volumes, prefetch overlap by hand."""

import pytest

from perfmodel.errors import InputError
from perfmodel.parallel.collectives import Tier, collective_time
from perfmodel.parallel.sharding import (backward_exposed_s, forward_exposed_s, shard_groups, shard_terms,
                                         zero_bytes_per_rank, zero_comm_bytes, zero_comm_s)

PSI = 7.5e9  # ZeRO paper Figure 1: 7.5B parameters, Nd = 64, K = 12


@pytest.mark.parametrize("stage, gb", [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figure_1(stage, gb):
    got = zero_bytes_per_rank(PSI, stage, 64).total_bytes / 1e9
    assert round(got, 1) == gb


def test_zero_terms_by_hand():
    z = zero_bytes_per_rank(100, 2, 4)  # 2*100 params, 2*100/4 grads, 12*100/4 state
    assert (z.params_bytes, z.gradients_bytes, z.optimizer_bytes) == (200, 50, 300)
    with pytest.raises(InputError):
        zero_bytes_per_rank(100, 4, 4)


def test_shard_terms_divides_per_stage():
    t = {"weights_bytes": 800.0, "gradients_bytes": 400.0, "optimizer_bytes": 800.0, "activations_bytes": 50.0,
         "workspace_bytes": 10.0, "reserved_bytes": 5.0}
    assert shard_terms(t, 0, 8) == t
    assert shard_terms(t, 1, 8)["optimizer_bytes"] == 100.0 and shard_terms(t, 1, 8)["gradients_bytes"] == 400.0
    s2 = shard_terms(t, 2, 8)
    assert (s2["gradients_bytes"], s2["weights_bytes"]) == (50.0, 800.0)
    s3 = shard_terms(t, 3, 8, gathered_bytes=30.0)
    assert s3["weights_bytes"] == 800.0 / 8 + 30.0 and s3["activations_bytes"] == 50.0
    assert shard_terms(t, 3, 1, gathered_bytes=30.0)["weights_bytes"] == 800.0  # nothing to gather alone


def test_shard_groups():
    assert shard_groups("none", 16, 8) == (1, 16)
    assert shard_groups("full", 16, 8) == (16, 1)
    assert shard_groups("hybrid", 16, 8) == (8, 2)
    with pytest.raises(InputError):
        shard_groups("hybrid", 12, 8)


def test_comm_volume_stage3_is_one_and_a_half_all_reduces():
    tiers = (Tier(8, 100e9, 0.0),)
    n = 1e9
    ar = collective_time("all-reduce", n, tiers, "ring")  # 2 * 7/8 * n/bw = 17.5 ms
    assert ar == pytest.approx(2 * 7 / 8 * n / 100e9)
    assert zero_comm_bytes(n, n, 0) == [("all-reduce", n)]
    assert zero_comm_s(n, n, 2, tiers, "ring") == pytest.approx(ar)
    assert zero_comm_s(n, n, 3, tiers, "ring") == pytest.approx(1.5 * ar)


def test_forward_prefetch_by_hand():
    # gathers 2,2,2 and computes 3,1,3: AG0 ends 2; C0 2..5; AG1 ends 4; C1 5..6; AG2 ends 6; C2 6..9 -> 9 - 7 = 2
    assert forward_exposed_s([2, 2, 2], [3, 1, 3]) == pytest.approx(2.0)
    assert forward_exposed_s([1, 1], [5, 5]) == pytest.approx(1.0)  # only the first gather shows


def test_backward_prefetch_by_hand():
    # stream AG0 0..1, AG1 1..2, C0 1..4, RS0 4..5, AG2 5..6, C1 4..8, RS1 8..9, C2 8..12, RS2 12..13
    assert backward_exposed_s([1, 1, 1], [1, 1, 1], [3, 4, 4]) == pytest.approx(13 - 11)
    # communication-bound: AG0 0..4, AG1 4..8, C0 4..5, RS0 8..12, C1 8..9, RS1 12..16 -> 16 - 2
    assert backward_exposed_s([4, 4], [4, 4], [1, 1]) == pytest.approx(14.0)
    assert backward_exposed_s([], [], []) == 0.0


def test_zero_sync_by_hand():
    from perfmodel.parallel.sharding import zero_stage, zero_sync

    def ar(n):  # a ring all-reduce on 4 ranks at 1 B/s, no latency: 1.5 n
        return 1.5 * n

    fn, extra, _ = zero_sync(1, ar, [2, 4], [1, 1], 3)
    assert fn is ar and extra == 0.0
    fn, extra, _ = zero_sync(2, ar, [2, 4], [1, 1], 3)
    assert fn(4) == 3.0 and extra == pytest.approx(0.75 * 6)  # all-gather of 6 B after the step
    fn, extra, _ = zero_sync(3, ar, [2, 0, 4], [1, 5, 1], 2)
    # gathers 1.5, 0, 3 ; forward: AG0 ends 1.5, C0 1.5..2.5, C1 2.5..7.5, AG2 ends 4.5, C2 7.5..8.5 -> 1.5 per pass
    assert fn is ar and extra == pytest.approx(2 * 1.5)
    assert zero_stage(0, "full") == 3 and zero_stage(2, "none") == 2 and zero_stage(1, "hybrid") == 1


# ---- wired into predict (GPT-2 small on a DGX A100, 8-way data parallel, bf16 + Adam) ----
GPT2 = dict(batch=4, devices=8, optimizer="adam", dtype="bf16", layers=False)
PSI_GPT2 = 124_439_808  # parameters of networks/gpt2_small.yaml (Adam state 8 B each = 995,518,464 B)
BW, ALPHA = 255e9, 2e-6  # dgx-a100 NVLink ring: bandwidth and latency of the profile


def _ring_all_gather_s(n: float) -> float:  # (p-1)/p n/bw + (p-1) alpha, p = 8
    return 7 / 8 * n / BW + 7 * ALPHA


def test_predict_zero2_zero3_memory_by_hand():
    import perfmodel

    base = perfmodel.predict("gpt2_small", "dgx-a100", **GPT2)
    assert base.memory.optimizer_bytes == 8 * PSI_GPT2
    z2 = perfmodel.predict("gpt2_small", "dgx-a100", zero=2, **GPT2).memory
    assert (z2.weights_bytes, z2.gradients_bytes, z2.optimizer_bytes) == (6 * PSI_GPT2, 4 * PSI_GPT2 / 8,
                                                                          8 * PSI_GPT2 / 8)
    z3 = perfmodel.predict("gpt2_small", "dgx-a100", zero=3, **GPT2).memory
    largest_two = 50257 * 768 + (768 * 3072 + 3072)  # token embedding + one MLP dense, gathered in bf16
    assert z3.weights_bytes == pytest.approx(6 * PSI_GPT2 / 8 + 2 * largest_two)
    assert z3.total_bytes == pytest.approx(z2.total_bytes - 6 * PSI_GPT2 * 7 / 8 + 2 * largest_two)
    full = perfmodel.predict("gpt2_small", "dgx-a100", sharding="full", **GPT2)
    assert full.memory.total_bytes == z3.total_bytes


def test_predict_zero2_time_by_hand_without_overlap():
    import perfmodel

    base = perfmodel.predict("gpt2_small", "dgx-a100", overlap=False, **GPT2)
    z2 = perfmodel.predict("gpt2_small", "dgx-a100", overlap=False, zero=2, **GPT2)
    # reduce-scatter buckets = half of the all-reduce buckets, plus the all-gather of 2 Psi bf16 bytes
    want = base.breakdown["communication"] / 2 + _ring_all_gather_s(2 * PSI_GPT2)
    assert z2.breakdown["communication"] == pytest.approx(want, rel=1e-9)
    assert z2.iteration_time_s == pytest.approx(sum(z2.breakdown.values()), rel=1e-12)


def test_predict_zero3_adds_the_exposed_forward_gathers():
    import perfmodel
    from perfmodel.parallel.predict import evaluate
    from perfmodel.parallel.sharding import forward_gathers
    from perfmodel.prediction import make_setup

    kw = {k: v for k, v in GPT2.items() if k != "layers"}
    base = perfmodel.predict("gpt2_small", "dgx-a100", **GPT2)
    z3 = perfmodel.predict("gpt2_small", "dgx-a100", zero=3, **GPT2)
    ev = evaluate(perfmodel.load_network("gpt2_small"), perfmodel.load_hardware("dgx-a100"), make_setup(**kw))
    gathers = [_ring_all_gather_s(2 * p) if p else 0.0 for p in ev.ranks.params]
    # the A100 stack's overlap law: compute beside a prefetched gather runs 1.189 times as long
    extra, slow = forward_gathers(gathers, ev.staged.f_l, 0.189)
    assert _ring_all_gather_s(2 * 50257 * 768) <= extra <= sum(gathers)  # the first (embedding) gather shows
    assert 0 < slow <= 0.189 * sum(gathers)  # only compute while a gather is in flight slows
    used = z3.parallel["overlap_used"]
    assert used["slowdown_s"]["fsdp_prefetch"] == pytest.approx(slow, rel=1e-12)
    assert used["hidden_s"]["fsdp_prefetch"] == pytest.approx(sum(gathers) - extra, rel=1e-12)
    # plus each rank updating 1/8 of the parameters (the optimizer step of the sharded state)
    assert z3.iteration_time_s == pytest.approx(base.iteration_time_s + extra + slow - base.stages["optimizer"]
                                                + z3.stages["optimizer"], rel=1e-9)
    assert z3.stages["optimizer"] < base.stages["optimizer"] / 4
    assert isinstance(z3.iteration_time_s, float)


def test_not_modelled_combinations_still_raise():
    import perfmodel

    with pytest.raises(InputError, match="ZeRO stage 3 .* sync='async' is not modelled"):
        perfmodel.predict("gpt2_small", "dgx-a100", zero=3, sync="async", **GPT2)
    # expert_parallel is modelled (tests/test_moe_predict.py) but needs moe layers, which GPT-2 has none of
    with pytest.raises(InputError, match="expert_parallel=2 needs a network with mixture-of-experts"):
        perfmodel.predict("gpt2_small", "dgx-a100", expert_parallel=2, **GPT2)
