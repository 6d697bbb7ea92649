"""Plan search: the fast evaluator agrees with predict() on every plan, the best plan beats a brute-force
enumeration, plans that do not fit are dropped, objective=cost ranks by cost, recomputation follows
perfmodel.recompute, and the GPT-3 175B search on 1024 GPUs stays fast."""

from __future__ import annotations

import itertools
import json
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from perfmodel import load_hardware, load_network, predict
from perfmodel.compute import device_rates
from perfmodel.errors import InputError
from perfmodel.planning.explain import TIE_REL
from perfmodel.hardware.schema import EfficiencyCurve
from perfmodel.ops import DTYPE_BYTES, STAGES
from perfmodel.ops.base import graph_costs
from perfmodel.engine.worktime import curve_at
from perfmodel.planning.search import PLAN_PARTS, evaluate_plan, microbatch_options, plan_search, pp_options, tp_options
from perfmodel.recompute import recompute_extra_time, recompute_memory
from perfmodel.step import stage_time, step_profile

TINY_GPT = """
name: tiny-gpt
description: a 4-layer GPT for plan-search tests (width 256, 8 heads, 128 tokens, vocab 4096)
source: test
blocks:
  decoder_layer:
    params: {heads: 8, ffn: 1024, width: 256, eps: 1.0e-5, dropout: 0.1}
    layers:
      - {op: layernorm, name: ln_1, eps: $eps}
      - {op: attention, name: attn, heads: $heads, causal: true, dropout: $dropout}
      - {op: dropout, name: attn_dropout, p: $dropout}
      - {op: add, name: attn_residual, inputs: [attn_dropout, $input]}
      - {op: layernorm, name: ln_2, eps: $eps}
      - {op: dense, name: mlp_fc, units: $ffn}
      - {op: gelu, name: mlp_gelu}
      - {op: dense, name: mlp_proj, units: $width}
      - {op: add, name: mlp_residual, inputs: [mlp_proj, attn_residual]}
layers:
  - {op: input, name: input_ids, shape: [128], dtype: int64}
  - {op: embedding, name: wte, vocab: 4096, dim: 256}
  - {op: positional_embedding, name: wpe, max_len: 128}
  - {block: decoder_layer, name: h, repeat: 4}
  - {op: layernorm, name: ln_f, eps: 1.0e-5}
  - {op: dense, name: lm_head, units: 4096, bias: false, share_params_with: wte}
  - {op: softmax_cross_entropy, name: loss}
"""

TWO_NODES = "dgx-a100-ib-hdr"  # DGX A100 nodes (8 GPUs on NVSwitch) over 8 x HDR InfiniBand
REL = 1e-9
# the data x tensor x pipeline space without the large-model options (what _brute_force enumerates)
PLAIN = dict(zero=0, sharding="none", sequence_parallel=False, virtual_stages=1, offload_activations=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    p = tmp_path_factory.mktemp("net") / "tiny_gpt.yaml"
    p.write_text(TINY_GPT)
    return load_network(p)


def _key(r):
    return (r.devices, r.dp, r.tp, r.pp, r.microbatch, r.microbatches, r.recompute, r.dtype, r.schedule)


# ---------------------------------------------------------------------------------------------
# the vectorised efficiency curve


def test_curve_at_equals_efficiency_curve():
    sizes = np.array([0.0, 1.0, 3e4, 1e6, 5e7, 2e9, 1e13])
    for c in (EfficiencyCurve(max=0.8, half=1e6),
              EfficiencyCurve(points=((1e4, 0.1), (1e6, 0.5), (1e9, 0.9)))):
        got = curve_at(c, sizes)
        for s, g in zip(sizes, got):
            assert g == pytest.approx(c.at(float(s)), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# agreement with predict() and the brute-force enumeration


def _brute_force(graph, hw, devices, global_batch, dtypes, optimizer="adam"):
    """Every plan of the documented search space, each predicted with perfmodel.predict (parallel path)."""
    out = {}
    for tp in (1, 2, 4, 8):
        for pp in (1, 2, 4):  # divisors of the 4 blocks
            if devices % (tp * pp) or 8 % tp or graph["h.0.attn"].spec.heads % tp:
                continue
            dp = devices // (tp * pp)
            if global_batch % dp:
                continue
            per = global_batch // dp
            mbs = sorted({x for x in (1, 2, 4, 8, 16, 32, 64, 128, 256) if per % x == 0} | {per})
            for mb, dtype in itertools.product(mbs, dtypes):
                n = per // mb
                for sched in (("1f1b", "gpipe") if pp > 1 else (None,)):
                    plan = {"dp": dp, "tp": tp, "pp": pp}
                    if pp > 1:
                        plan.update(microbatches=n, schedule=sched)
                        kw = {"batch": mb * n}
                    else:
                        kw = {"batch": mb, "grad_accumulation": n}
                    p = predict(graph, hw, dtype=dtype, optimizer=optimizer, devices=devices, plan=plan,
                                layers=False, **kw)
                    out[(devices, dp, tp, pp, mb, n, "none", dtype, sched)] = p
    return out


@pytest.mark.parametrize("hw,devices,batch", [("dgx-a100", 8, 32), (TWO_NODES, 16, 64)])
def test_best_plan_beats_brute_force_and_agrees_with_predict(tiny, hw, devices, batch):
    dtypes = ["bf16", "tf32"]
    brute = _brute_force(tiny, hw, devices, batch, dtypes)
    mems = sorted(p.memory.total_bytes for p in brute.values())
    limit = mems[len(mems) // 2]  # half the plans do not fit
    res = plan_search(tiny, hw, devices=devices, global_batch=batch, memory_limit=limit, top=None,
                      recompute=["none"], dtypes=dtypes, **PLAIN)
    fitting = {k: p for k, p in brute.items() if p.memory.total_bytes <= limit}
    assert 0 < len(fitting) < len(brute)
    # the search returns exactly the plans that fit, and agrees with predict on each
    assert {_key(r) for r in res.plans} == set(fitting)
    assert res.fitting == len(fitting)
    assert res.dropped_memory + res.pruned_static_memory == len(brute) - len(fitting)
    for r in res.plans:
        p = fitting[_key(r)]
        assert r.iteration_time_s == pytest.approx(p.iteration_time_s, rel=REL)
        assert r.memory_bytes == pytest.approx(p.memory.total_bytes, rel=REL)
        assert r.model_flops == pytest.approx(p.flops["forward"] + p.flops["backward"], rel=REL)
        comm = r.breakdown["tensor_comm"] + r.breakdown["pipeline_comm"] + r.breakdown["data_comm"]
        assert comm == pytest.approx(p.breakdown["communication"], rel=1e-6, abs=1e-12)
        for k in ("compute", "memory", "overhead", "bubble", "straggler", "host_to_device", "io"):
            assert r.breakdown[k] == pytest.approx(p.breakdown[k], rel=1e-6, abs=1e-12), k
        assert sum(r.breakdown.values()) == pytest.approx(r.iteration_time_s, rel=1e-12)
        assert r.fits and r.memory_bytes <= limit
    # the best plan is at least as good as every plan of the enumeration
    best = res.plans[0]
    assert best.iteration_time_s <= min(p.iteration_time_s for p in fitting.values()) * (1 + REL)
    times = [r.iteration_time_s for r in res.plans]
    assert all(a <= b * (1 + 1e-9) for a, b in zip(times, times[1:]))
    # the explanation names the winner and the runner-up's difference
    assert best.label() in res.why and "runner-up" in res.why
    # adding recomputation to the search can only add plans: its best is at least as good
    full = plan_search(tiny, hw, devices=devices, global_batch=batch, memory_limit=limit, dtypes=dtypes, top=None,
                       **PLAIN)
    assert full.plans[0].iteration_time_s <= best.iteration_time_s * (1 + REL)
    assert full.fitting >= res.fitting


def test_evaluate_plan_matches_predict_on_mixed_precision_pipeline(tiny):
    r = evaluate_plan(tiny, TWO_NODES, dp=2, tp=2, pp=4, microbatch=2, microbatches=8, dtype="bf16",
                      schedule="gpipe")
    p = predict(tiny, TWO_NODES, optimizer="adam", layers=False, **r.predict_options())
    assert r.iteration_time_s == pytest.approx(p.iteration_time_s, rel=REL)
    assert r.memory_bytes == pytest.approx(p.memory.total_bytes, rel=REL)
    assert r.breakdown["bubble"] > 0 and r.breakdown["tensor_comm"] > 0 and r.breakdown["data_comm"] >= 0


# ---------------------------------------------------------------------------------------------
# recomputation, ZeRO-1, memory limits, objective cost


def test_recompute_follows_recompute_module_on_one_device(tiny):
    # perfmodel.recompute keeps every layer's saved bytes: compare on the device without its fused-attention stack
    dev = load_hardware("a100-sxm4-80gb").model_copy(update={"gpu_arch": None, "software_stack": None})
    none = evaluate_plan(tiny, dev, dp=1, microbatch=8, dtype="bf16", recompute="none")
    full = evaluate_plan(tiny, dev, dp=1, microbatch=8, dtype="bf16", recompute="full")
    rm = recompute_memory(tiny, 8, "bf16")
    assert full.memory["activations_bytes"] == pytest.approx(rm.activations_bytes, rel=1e-12)
    assert none.memory["activations_bytes"] == pytest.approx(rm.without_bytes, rel=1e-12)
    extra = recompute_extra_time(step_profile(tiny, dev, 8, "bf16", optimizer="adam"), rm)
    assert full.iteration_time_s - none.iteration_time_s == pytest.approx(extra, rel=1e-9)
    assert full.breakdown["recompute"] == pytest.approx(extra, rel=1e-9)
    assert full.model_flops == none.model_flops and full.mfu < none.mfu


def test_recompute_saves_memory_in_a_pipeline(tiny):
    kw = dict(dp=2, tp=1, pp=4, microbatch=4, microbatches=8, dtype="bf16", schedule="gpipe")
    none = evaluate_plan(tiny, TWO_NODES, **kw)
    full = evaluate_plan(tiny, TWO_NODES, recompute="full", **kw)
    assert full.memory["activations_bytes"] < none.memory["activations_bytes"]
    assert full.iteration_time_s > none.iteration_time_s
    assert full.breakdown["recompute"] > 0


def test_gpipe_needs_more_memory_than_1f1b_at_equal_time(tiny):
    kw = dict(dp=1, tp=1, pp=4, microbatch=2, microbatches=16, dtype="bf16")
    a = evaluate_plan(tiny, "dgx-a100", schedule="1f1b", **kw)
    b = evaluate_plan(tiny, "dgx-a100", schedule="gpipe", **kw)
    assert b.memory["activations_bytes"] > a.memory["activations_bytes"]


def test_zero1_shards_optimizer_state(tiny):
    kw = dict(dp=8, microbatch=4, dtype="bf16")
    a = evaluate_plan(tiny, "dgx-a100", **kw)
    b = evaluate_plan(tiny, "dgx-a100", zero=1, **kw)
    assert b.memory["optimizer_bytes"] == pytest.approx(a.memory["optimizer_bytes"] / 8)
    assert b.iteration_time_s <= a.iteration_time_s  # each rank updates (at most) 1/8 of the parameters (iteration.synced)


def test_plans_that_do_not_fit_are_dropped(tiny):
    res = plan_search(tiny, "dgx-a100", devices=8, global_batch=64, memory_limit=1.1e9, top=None)
    assert res.plans and all(r.memory_bytes <= 1.1e9 for r in res.plans)
    assert res.dropped_memory + res.pruned_static_memory > 0
    nothing = plan_search(tiny, "dgx-a100", devices=8, global_batch=64, memory_limit=1e8)
    assert nothing.plans == () and "No plan fits" in nothing.why
    with pytest.raises(InputError):
        nothing.best


def test_objective_cost_ranks_by_cost(tiny):
    price = 2.5
    res = plan_search(tiny, TWO_NODES, devices=16, global_batch=64, objective="cost", price_per_hour=price, top=None)
    assert res.price_per_device_hour == price
    costs = [r.cost_per_iteration for r in res.plans]
    # ascending; plans within the tie tolerance (e.g. 1F1B and GPipe one ulp apart) are ranked by memory instead
    assert all(a <= b * (1 + TIE_REL) for a, b in zip(costs, costs[1:]))
    for r in res.plans:
        assert r.cost_per_iteration == pytest.approx(price * r.devices * r.iteration_time_s / 3600)
    assert {r.devices for r in res.plans} > {16}  # fewer devices are considered when money is the goal
    fast = plan_search(tiny, TWO_NODES, devices=16, global_batch=64, price_per_hour=price, top=None)
    assert {r.devices for r in fast.plans} == {16}
    assert res.plans[0].cost_per_iteration <= min(r.cost_per_iteration for r in fast.plans)
    assert "per iteration" in res.why


def test_search_space_rules(tiny):
    assert pp_options(load_network("gpt3_175b"))[:8] == [1, 2, 3, 4, 6, 8, 12, 16]
    assert tp_options(tiny, 8) == [1, 2, 4, 8]
    assert tp_options(load_network("gpt2_small"), 8) == [1, 2, 4]  # 12 heads
    assert microbatch_options(192) == [1, 2, 4, 8, 16, 32, 64, 192]


def test_bad_input(tiny):
    with pytest.raises(InputError):
        plan_search(tiny, "dgx-a100", devices=8, objective="speed")
    with pytest.raises(InputError):
        plan_search(tiny, TWO_NODES, devices=12)  # does not fill whole nodes
    with pytest.raises(InputError):
        plan_search(tiny, "dgx-a100", devices=8, recompute=["some"])
    with pytest.raises(InputError):
        plan_search(tiny, "dgx-a100", devices=8, dtypes=["fp8"])  # no fp8 on A100


# ---------------------------------------------------------------------------------------------
# GPT-3 175B on 1024 A100 80GB: fast, sensible


def test_gpt3_175b_on_1024_a100_is_fast_and_sensible():
    t = time.perf_counter()
    res = plan_search("gpt3_175b", TWO_NODES, devices=1024, global_batch=1536, device="a100-sxm4-80gb")
    elapsed = time.perf_counter() - t
    assert elapsed < 30  # target under 10 s (benchmarks/bench_plan.py); generous for loaded CI machines
    best = res.best
    assert best.dp * best.tp * best.pp == 1024 and best.tp == 8 and best.pp >= 8
    assert best.memory_bytes <= best.memory_limit_bytes
    # sanity range only: with the GPU kernel model (issue 11) the best plan (SP, selective recomputation, interleaved
    # stages) predicts MFU 0.71, above the ~0.5-0.56 Megatron-LM reports for such runs (Korthikanti et al. 2022): an
    # open calibration question of the A100 kernel model, not of the search
    assert 0.2 < best.mfu < 0.8 and best.mfu_6nd is not None
    assert sum(best.breakdown.values()) == pytest.approx(best.iteration_time_s, rel=1e-12)
    # spot-check the fast evaluator against predict on the winner
    p = predict("gpt3_175b", _hw80(), optimizer="adam", layers=False, **best.predict_options())
    assert best.iteration_time_s == pytest.approx(p.iteration_time_s, rel=REL)


def _hw80():
    from perfmodel.planning.search import hardware_with_device

    return hardware_with_device(TWO_NODES, "a100-sxm4-80gb")


# ---------------------------------------------------------------------------------------------
# CLI


def test_cli_plan_text_and_json(tmp_path):
    from perfmodel.cli import app

    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_GPT)
    runner = CliRunner()
    r = runner.invoke(app, ["plan", str(p), "--hardware", "dgx-a100", "--devices", "8", "--global-batch", "32",
                            "--top", "3"])
    assert r.exit_code == 0, (r.output, r.exception)
    for needle in ("best:", "breakdown per plan", "MFU", "runner-up"):
        assert needle in r.output
    r = runner.invoke(app, ["plan", str(p), "-H", "dgx-a100", "-n", "8", "-B", "32", "--objective", "cost",
                            "--price-per-hour", "3", "--memory-limit", "40GB", "--json"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.output)
    for k in ("plans", "why", "objective", "candidates", "fitting", "search_time_s"):
        assert k in d
    row = d["plans"][0]
    for k in ("dp", "tp", "pp", "microbatch", "microbatches", "recompute", "dtype", "schedule", "iteration_time_s",
              "breakdown", "memory_bytes", "fits", "mfu", "cost_per_iteration"):
        assert k in row
    assert set(row["breakdown"]) == set(PLAN_PARTS)


# ---------------------------------------------------------------------------------------------
# every plan carries the setup predict() reproduces exactly


@pytest.mark.parametrize("kw", [dict(dp=2, tp=2, pp=2, microbatch=2, microbatches=4, dtype="bf16",
                                     recompute="full", schedule="1f1b"),
                                dict(dp=8, microbatch=4, microbatches=2, dtype="bf16", zero=1),
                                dict(dp=1, tp=4, pp=4, microbatch=1, microbatches=8, dtype="tf32",
                                     schedule="gpipe", recompute="full", straggler_cv=0.05),
                                dict(dp=2, tp=2, pp=2, microbatch=1, microbatches=4, dtype="bf16",
                                     sequence_parallel=True, virtual_stages=2, zero=1),
                                dict(dp=4, tp=2, microbatch=2, microbatches=2, dtype="bf16", sharding="full",
                                     recompute="selective"),
                                dict(dp=8, microbatch=4, dtype="bf16", zero=2)])
def test_plan_setup_reproduces_predict(tiny, kw):
    hw = TWO_NODES if kw["dp"] * kw.get("tp", 1) * kw.get("pp", 1) > 8 else "dgx-a100"
    r = evaluate_plan(tiny, hw, **kw)
    p = predict(tiny, hw, layers=False, **r.setup)
    assert r.setup["optimizer"] == "adam" and r.setup.get("recompute", "none") == kw.get("recompute", "none")
    assert p.iteration_time_s == pytest.approx(r.iteration_time_s, rel=1e-9)
    assert p.memory.total_bytes == pytest.approx(r.memory_bytes, rel=1e-9)
    assert p.breakdown["recompute"] == pytest.approx(r.breakdown["recompute"], rel=1e-9, abs=1e-15)


# ---------------------------------------------------------------------------------------------
# the large-model dimensions: pruning keeps the top plans, bounds are bounds, options reach predict


def _recorded_search(monkeypatch, *args, **kw):
    """plan_search with every timed candidate recorded as (Search, Candidate, row or None)."""
    import perfmodel.planning.candidates as C

    seen = []
    orig = C.time_candidate

    def spy(S, cand):
        row = orig(S, cand)
        seen.append((S, cand, row))
        return row

    monkeypatch.setattr(C, "time_candidate", spy)
    return plan_search(*args, **kw), seen


def test_pruning_keeps_the_top_plans_and_bounds_are_lower_bounds(tiny, monkeypatch):
    import perfmodel.planning.candidates as C

    kw = dict(devices=16, global_batch=64, dtypes=["bf16", "tf32"])
    full, seen = _recorded_search(monkeypatch, tiny, TWO_NODES, top=None, **kw)
    assert full.bounded == 0 and full.dominated > 0
    for S, cand, row in seen:  # every bound is below the time predict gives, every static bound below the memory
        if row is None:
            continue
        assert cand.bound <= row["iteration_time_s"] * (1 + 1e-9)
        assert C._exact_bound(S, cand) <= row["iteration_time_s"] * (1 + 1e-9)
        opts = dict(cand.options)
        assert C.static_bytes(S, cand.tp, cand.pp, cand.dp, cand.dtype, opts["zero"], opts["sharding"],
                              ep=opts["expert_parallel"]) <= \
            row["memory_bytes"] * (1 + 1e-9)
    assert {r.sequence_parallel for r in full.plans if r.tp > 1} == {True}  # SP off is a dominated twin
    assert {r.zero for r in full.plans if r.dp > 1 and r.sharding == "none"} >= {1} and \
        not any(r.zero == 0 and r.sharding == "none" and r.dp > 1 for r in full.plans)
    assert any(r.virtual_stages > 1 for r in full.plans)
    # fused attention (the A100's stack): selective recomputation is recompute='none''s twin, searched once
    assert not any(r.recompute == "selective" for r in full.plans)
    assert any("recompute=selective" in w for w in full.not_modelled)
    for objective in ("time", "cost"):
        ref = full if objective == "time" else plan_search(tiny, TWO_NODES, top=None, objective=objective, **kw)
        for top in (1, 3):
            res = plan_search(tiny, TWO_NODES, top=top, objective=objective, **kw)
            assert [p.label() for p in res.plans] == [p.label() for p in ref.plans[:top]]
            assert [p.iteration_time_s for p in res.plans] == [p.iteration_time_s for p in ref.plans[:top]]
            assert res.bounded > 0 and res.candidates == ref.candidates
            assert res.candidates == (res.pruned_static_memory + res.dominated + res.bounded + res.skipped
                                      + res.dropped_memory + res.fitting)


def test_dominated_twins_are_never_better(tiny):
    kw = dict(dp=2, tp=4, pp=2, microbatch=2, microbatches=4, dtype="bf16")
    off = evaluate_plan(tiny, TWO_NODES, **kw)
    on = evaluate_plan(tiny, TWO_NODES, sequence_parallel=True, **kw)
    assert on.iteration_time_s <= off.iteration_time_s and on.memory_bytes < off.memory_bytes
    z0 = evaluate_plan(tiny, TWO_NODES, **kw)
    z1 = evaluate_plan(tiny, TWO_NODES, zero=1, **kw)
    assert z1.iteration_time_s <= z0.iteration_time_s and z1.memory_bytes < z0.memory_bytes
    sp = dict(kw, sequence_parallel=True)
    tpo = evaluate_plan(tiny, TWO_NODES, tp_overlap=True, **sp)  # tp_overlap off is on's twin: never faster
    assert tpo.iteration_time_s < on.iteration_time_s and tpo.memory_bytes == pytest.approx(on.memory_bytes)
    assert tpo.tp_overlap and "tp_overlap" in tpo.setup and tpo.options()["tp_overlap"] == "on"


def test_tp_overlap_is_searched_where_it_exists(tiny):
    """tp_overlap=True only with tp > 1 and sequence parallelism; both searched: off is a dominated twin (one per
    option set with SP, pp = 1, without offload); narrowed to false or true it is searched as given; overlap=False
    leaves it out. With a pipeline or offload both are timed (top=None: nothing bounded)."""
    kw = dict(devices=16, global_batch=64, dtypes=["bf16"], top=None)
    both = plan_search(tiny, TWO_NODES, **kw)
    off = plan_search(tiny, TWO_NODES, tp_overlap=[False], **kw)
    on = plan_search(tiny, TWO_NODES, tp_overlap=True, **kw)
    assert both.searched["tp_overlap"] == [False, True] and off.searched["tp_overlap"] == [False]
    assert all(r.tp_overlap == (r.tp > 1) for r in both.plans if not r.offload_activations and r.pp == 1)
    assert {r.tp_overlap for r in both.plans if r.tp > 1 and r.offload_activations} == {False, True}
    assert {r.tp_overlap for r in both.plans if r.tp > 1 and r.pp > 1} == {False, True}
    assert not any(r.tp_overlap for r in off.plans) and all(r.tp_overlap == (r.tp > 1) for r in on.plans)
    # the same plans either way; both: each SP option set once more, a dominated twin unless offloading
    assert on.candidates == off.candidates and both.candidates - off.candidates > both.dominated - off.dominated > 0
    by_label = {r.label().replace(" tp_overlap=on", ""): r for r in on.plans}
    pairs = [(by_label[r.label()].iteration_time_s, r.iteration_time_s) for r in off.plans
             if r.tp > 1 and r.label() in by_label and not r.offload_activations]
    assert pairs and all(a <= b * (1 + 1e-12) for a, b in pairs)  # never slower pipelined (s = 0.189 < 1)
    assert sum(a < b for a, b in pairs) > len(pairs) / 2
    no = plan_search(tiny, TWO_NODES, overlap=False, **kw)
    assert not any(r.tp_overlap for r in no.plans)


def test_unmodelled_values_are_left_out_with_the_reason(tiny, monkeypatch):
    from perfmodel.prediction.setup import TrainingSetup

    def check_modelled(self):  # an engine that does not model context parallelism (as before issue 14)
        if self.context_parallel != 1:
            raise InputError(f"context_parallel={self.context_parallel} is not modelled yet")

    with monkeypatch.context() as mp:
        mp.setattr(TrainingSetup, "check_modelled", check_modelled)
        res = plan_search(tiny, "dgx-a100", devices=8, global_batch=32, context_parallel=[1, 2])
        assert any("context_parallel=2" in w for w in res.not_modelled)
        assert res.searched["context_parallel"] == [1] and {r.context_parallel for r in res.plans} == {1}
        with pytest.raises(InputError, match="context_parallel"):
            plan_search(tiny, "dgx-a100", devices=8, global_batch=32, context_parallel=[2])
    with pytest.raises(InputError, match="zero"):
        plan_search(tiny, "dgx-a100", devices=8, global_batch=32, zero=[5])
    with pytest.raises(InputError, match="sharding"):
        plan_search(tiny, "dgx-a100", devices=8, global_batch=32, sharding=["half"])
    # FSDP with a pipeline is modelled (torchtitan's FSDP2 + PP): searched, nothing skipped
    fsdp = plan_search(tiny, "dgx-a100", devices=8, global_batch=32, sharding="full", pp=[1, 2], top=None)
    assert fsdp.skipped == 0 and any(r.sharding == "full" and r.pp == 2 and r.dp > 1 for r in fsdp.plans)
    # a combination the engine refuses is skipped and named: expert parallelism on a network without moe layers
    moe = plan_search(tiny, "dgx-a100", devices=8, global_batch=32, expert_parallel=[1, 2], top=None)
    assert moe.skipped > 0 and any(w.startswith("skipped") and "expert_parallel=2" in w for w in moe.not_modelled)
    assert moe.plans and {r.expert_parallel for r in moe.plans} == {1}


TRAINED = TINY_GPT.replace("source: test\n", "source: test\ntraining: {global_batch: 48}\n")


def test_default_global_batch_from_the_network_file(tmp_path):
    from perfmodel.errors import NetworkError

    assert load_network("gpt3_175b").file.training.global_batch == 1536  # Brown et al. 2020, Table 2.1: 3.2M tokens
    p = tmp_path / "trained.yaml"
    p.write_text(TRAINED)
    res = plan_search(p, "dgx-a100", devices=8, top=1)
    assert res.global_batch == 48
    q = tmp_path / "plain.yaml"
    q.write_text(TINY_GPT)
    assert plan_search(q, "dgx-a100", devices=8, top=1).global_batch == 32 * 8
    assert plan_search(p, "dgx-a100", devices=8, top=1, global_batch=16).global_batch == 16
    for bad in ("0", "1.5", "'48'", "true"):
        q.write_text(TINY_GPT.replace("source: test\n", f"source: test\ntraining: {{global_batch: {bad}}}\n"))
        with pytest.raises(NetworkError, match="global_batch"):
            load_network(q)


def test_cli_plan_large_model_options(tmp_path):
    from perfmodel.cli import app

    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_GPT)
    runner = CliRunner()
    base = ["plan", str(p), "-H", TWO_NODES, "-n", "16", "-B", "64", "--json"]
    r = runner.invoke(app, base + ["--zero", "1", "--sharding", "none", "--sequence-parallel", "true",
                                   "--virtual-stages", "1,2", "--recompute", "selective", "--pp", "2",
                                   "--offload-activations", "false"])
    assert r.exit_code == 0, (r.output, r.exception)
    d = json.loads(r.output)
    assert d["searched"]["zero"] == [1] and d["searched"]["virtual_stages"] == [1, 2]
    for row in d["plans"]:
        assert row["zero"] == 1 and row["recompute"] == "selective" and row["pp"] == 2
        assert row["sequence_parallel"] == (row["tp"] > 1) and row["virtual_stages"] in (1, 2)
        assert {"zero", "sharding", "sequence_parallel", "virtual_stages", "context_parallel",
                "offload_activations", "expert_parallel"} <= set(row["setup"]) | set(row)
    best = d["plans"][0]
    pr = predict(p, TWO_NODES, layers=False, **best["setup"])
    assert pr.iteration_time_s == pytest.approx(best["iteration_time_s"], rel=1e-9)
    old = runner.invoke(app, base + ["--zero1", "--sharding", "none"])  # deprecated alias of --zero 1
    assert old.exit_code == 0 and {x["zero"] for x in json.loads(old.output)["plans"] if x["dp"] > 1} == {1}
    bad = runner.invoke(app, base + ["--sequence-parallel", "maybe"])
    assert bad.exit_code != 0 and "--sequence-parallel" in bad.output
    tpo = runner.invoke(app, base + ["--tp", "2", "--tp-overlap", "false"])
    assert tpo.exit_code == 0, tpo.output
    assert {x["tp_overlap"] for x in json.loads(tpo.output)["plans"]} == {False}
    tpo = json.loads(runner.invoke(app, base + ["--tp", "2", "--tp-overlap", "true"]).output)
    assert tpo["searched"]["tp_overlap"] == [True] and {x["tp_overlap"] for x in tpo["plans"]} == {True}
    assert all(x["setup"]["tp_overlap"] is True for x in tpo["plans"])
    bad = runner.invoke(app, base + ["--tp-overlap", "maybe"])
    assert bad.exit_code != 0 and "--tp-overlap" in bad.output and "Traceback" not in bad.output
    text = runner.invoke(app, ["plan", str(p), "-H", TWO_NODES, "-n", "16", "-B", "64", "--top", "3"])
    assert text.exit_code == 0 and "options" in text.output and "by a time bound" in text.output
    text = runner.invoke(app, ["plan", str(p), "-H", TWO_NODES, "-n", "16", "-B", "64", "--top", "3", "--tp", "2",
                               "--offload-activations", "false"])
    assert text.exit_code == 0 and "sp=on tp_overlap=on" in text.output  # the options column and the best label


def test_expert_parallel_bounds_are_bounds_and_sharding_fits_the_experts(monkeypatch):
    """Switch-Base-8 on one DGX H100 with ep in {1, 8} and every sharding mode: every static memory bound and time bound
    of a timed expert-parallel plan lies below what predict gives, and sharded expert-parallel plans are found."""
    import perfmodel.planning.candidates as C

    res, seen = _recorded_search(monkeypatch, "switch_base_8", "dgx-h100", devices=8, global_batch=16,
                                 expert_parallel=[1, 8], top=None, dtypes=["bf16"], recompute=["none"])
    timed = [(S, cand, row) for S, cand, row in seen if row is not None and dict(cand.options)["expert_parallel"] == 8]
    assert timed
    for S, cand, row in timed:
        opts = dict(cand.options)
        assert cand.bound <= row["iteration_time_s"] * (1 + 1e-9)
        assert C._exact_bound(S, cand) <= row["iteration_time_s"] * (1 + 1e-9)
        assert C.static_bytes(S, cand.tp, cand.pp, cand.dp, cand.dtype, opts["zero"], opts["sharding"], ep=8) <= \
            row["memory_bytes"] * (1 + 1e-9)
    assert any(r.expert_parallel == 8 and (r.zero > 0 or r.sharding == "full") for r in res.plans)
    assert not any(r.expert_parallel == 8 and r.sharding == "hybrid" for r in res.plans)
