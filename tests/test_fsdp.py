"""fsdp-cpu: FSDP2 / ZeRO-1 workers on gloo (small live run), the per-rank memory accounting against hand-computed
shard sizes, and the committed run replayed without measuring.

The live test spawns 2 x 2 processes that import torch (~20 s)."""

import json
from pathlib import Path

import pytest

from conftest import small_mlp
from perfmodel import save_network

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "validation" / "measurements" / "fsdp-cpu.jsonl"


def _tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    save_network(small_mlp(128, 256, 10, name="tiny-mlp"), p)
    return p


@pytest.mark.torch
def test_fsdp_and_zero1_workers_report_their_local_shards(tmp_path):
    """Tiny MLP 128-256-10: fc1 W [256,128] + b [256], fc2 W [10,256] + b [10] = 35,594 fp32 parameters,
    142,376 bytes. fully_shard splits every tensor along dim 0 (all even), so each rank holds 71,188 bytes of
    parameters, as many of gradients, twice as many of Adam moments plus 4 scalar fp32 'step' tensors.
    ZeroRedundancyOptimizer: the ranks' partitions add up to all parameters, each rank's Adam state is twice its
    partition plus one step per owned tensor; parameters and gradients stay whole."""
    pytest.importorskip("torch")
    from perfmodel.torch.fsdp_workers import measure_sharded

    net = _tiny(tmp_path)
    total = 4 * (256 * 128 + 256 + 10 * 256 + 10)
    assert total == 142_376
    f = measure_sharded(net, 8, "fsdp", steps=2, warmup=1)
    assert f["zero"] == 3 and len(f["step_times_s"]) == 2 and f["kind"] == "sharded_training_step"
    for rm in f["rank_memory"]:
        assert rm["params_bytes"] == rm["gradients_bytes"] == total // 2
        assert rm["optimizer_bytes"] == 2 * (total // 2) + 4 * 4
    z = measure_sharded(net, 8, "zero1", steps=2, warmup=1)
    parts = [rm["partition_params_bytes"] for rm in z["rank_memory"]]
    assert sum(parts) == total and all(p > 0 for p in parts)
    for rm in z["rank_memory"]:
        assert rm["params_bytes"] == rm["gradients_bytes"] == total
    steps = [rm["optimizer_bytes"] - 2 * rm["partition_params_bytes"] for rm in z["rank_memory"]]
    assert sum(steps) == 4 * 4 and all(s > 0 for s in steps)  # one 4-byte step per tensor, each on one rank


def test_state_per_rank_formulas_by_hand():
    """1,000 bytes of weights, 1,000 of gradients, 2,000 of Adam state over 2 ranks: stage 1 halves the optimizer
    (1000/1000/1000), stage 2 also the gradients (1000/500/1000), stage 3 everything (500/500/1000); the torch
    side of stage 2 counts the gradients of the rank's partition only."""
    from perfmodel.validation.fsdp_cpu import predicted_state_per_rank, torch_state_per_rank

    u = {"weights_bytes": 1000.0, "gradients_bytes": 1000.0, "optimizer_bytes": 2000.0, "activations_bytes": 5.0}
    assert predicted_state_per_rank(u, 0, 2) == {"weights_bytes": 1000, "gradients_bytes": 1000,
                                                 "optimizer_bytes": 2000}
    assert list(predicted_state_per_rank(u, 1, 2).values()) == [1000, 1000, 1000]
    assert list(predicted_state_per_rank(u, 2, 2).values()) == [1000, 500, 1000]
    assert list(predicted_state_per_rank(u, 3, 2).values()) == [500, 500, 1000]
    rm = {"params_bytes": 1000, "gradients_bytes": 1000, "optimizer_bytes": 900, "partition_params_bytes": 450}
    assert torch_state_per_rank(rm, 2)["gradients_bytes"] == 450
    assert torch_state_per_rank(rm, 1)["gradients_bytes"] == 1000


def test_host_description_names_the_cpu_generation():
    from perfmodel.validation.ddp_cpu import host_description

    h = host_description()
    if not Path("/proc/cpuinfo").exists():
        assert h == {}
        return
    assert h["vector_isa"] in ("avx512f", "avx2", "avx", "sse4_2", "other") and h["cpus"] >= 1


@pytest.mark.skipif(not STORE.exists(), reason="no committed fsdp-cpu run")
def test_committed_fsdp_run_replays_without_torch(tmp_path):
    """The committed run re-reports from its records alone (torch unimportable), through the CLI, and the model
    state per rank of the FSDP and ZeRO cases agrees with PyTorch's local tensor bytes."""
    import subprocess
    import sys

    code = ("import sys, json; sys.modules['torch'] = None\n"
            "from typer.testing import CliRunner\nfrom perfmodel.cli import app\n"
            f"r = CliRunner().invoke(app, ['validate', '--suite', 'fsdp-cpu', '--replay', {str(STORE)!r}, '--json', "
            f"'--report', {str(tmp_path / 'rep')!r}])\n"
            "assert r.exit_code == 0, r.output\nprint(r.output)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    d = json.loads(out.stdout[out.stdout.index("{"):])
    assert {c["zero"] for c in d["cases"]} == {0, 1, 3} and all(c["predicted_s"] > 0 for c in d["cases"])
    stages = {m["stage"] for m in d["memory_per_rank"]}
    assert stages == {0, 1, 2, 3}
    for m in d["memory_per_rank"]:
        assert abs(m["error_pct"]) < 30, m  # ZeroRedundancyOptimizer's partition is uneven (whole tensors)
        if m["stage"] in (0, 3):
            assert abs(m["error_pct"]) < 1, m
    assert (tmp_path / "rep" / "report.md").read_text().startswith("# fsdp-cpu")


def test_zero3_without_overlap_exposes_every_unit_collective_by_hand():
    """All-reduce of n bytes = n / 1 GB/s + 2 ms (ring, p = 2, alpha = 1 ms), so an all-gather or reduce-scatter of
    n costs half: 1 MB -> 1.5 ms, 3 MB -> 2.5 ms, a layer without parameters 0. Without overlap each unit gathers
    in forward and backward and reduce-scatters in backward, all exposed: (2 x 4 + 4) ms per micro-step, 24 ms for
    two; no bucket all-reduce is left. With overlap the forward gathers are prefetched behind compute
    (forward_exposed_s) and the buckets stay all-reduces."""
    from perfmodel.parallel.sharding import forward_exposed_s, zero_sync

    def ar(n):
        return n / 1e9 + 2e-3

    layer_bytes, fwd = [1e6, 0.0, 3e6], [5e-3, 1e-3, 5e-3]
    fn, extra, _ = zero_sync(3, ar, layer_bytes, fwd, 2, overlap=False)
    assert extra == pytest.approx(24e-3) and fn(25e6) == 0.0
    fn, extra, _ = zero_sync(3, ar, layer_bytes, fwd, 2)
    assert fn is ar and extra == pytest.approx(2 * forward_exposed_s([1.5e-3, 0.0, 2.5e-3], fwd))
    assert extra == pytest.approx(2 * 1.5e-3)  # only the first gather waits; the 3 MB one hides behind 6 ms
    _, extra, _ = zero_sync(2, ar, layer_bytes, fwd, 2, overlap=False)  # stage 2: one exposed post-step gather
    assert extra == pytest.approx((4e6 / 1e9 + 2e-3) / 2)


def test_zero1_ranks_update_half_the_parameters():
    """ZeRO-1 over 2 ranks changes nothing but the optimizer step, which updates half the parameters: the step
    shortens by exactly t(adam over P) - t(adam over P/2) on the rank's rates (hand-composed from the same
    optimizer_work and stage_time the model uses)."""
    from perfmodel import predict
    from perfmodel.engine.layers import stage_time
    from perfmodel.graph.io import load_network
    from perfmodel.hardware.traits import device_traits
    from perfmodel.optimizers import optimizer_work
    from perfmodel.parallel.rank import rank_layers

    g, dev = load_network(ROOT / "validation" / "networks" / "mlp.yaml"), "v100-sxm2"
    t0 = predict(g, dev, batch=64, devices=2, optimizer="adam", layers=False).iteration_time_s
    t1 = predict(g, dev, batch=64, devices=2, optimizer="adam", zero=1, layers=False).iteration_time_s
    from perfmodel.hardware import load_hardware

    d = load_hardware(dev)
    r = rank_layers(g, d, 32, "fp32")
    P, T = int(r.params.sum()), int((r.params > 0).sum())
    style = device_traits(d).optimizer_kernels
    full = stage_time((optimizer_work("adam", P, T, style=style),), r.rates, "optimizer").time_s
    half = stage_time((optimizer_work("adam", (P + 1) // 2, T, style=style),), r.rates, "optimizer").time_s
    assert half < full and t0 - t1 == pytest.approx(full - half, rel=1e-6)


@pytest.mark.skipif(not STORE.exists(), reason="no committed fsdp-cpu run")
def test_committed_report_rebuilds_from_the_stored_records():
    """The committed report's measured figures (step times, PyTorch's bytes per rank, the per-unit diagnostic) come
    back from the JSONL records alone; the predictions depend on the profile, so they are only checked to exist."""
    from perfmodel.validation.fsdp_cpu import report_from_measurements

    committed = json.loads((ROOT / "validation" / "reports" / "fsdp-cpu" / "results.json").read_text())
    frozen = ROOT / "tests" / "golden" / "frozen-amd-epyc-2c-kvm.yaml"
    again = report_from_measurements(STORE, profile=str(frozen)).to_dict()
    assert [c["case"] for c in again["cases"]] == [c["case"] for c in committed["cases"]]
    for a, b in zip(again["cases"], committed["cases"]):
        assert a["measured_median_s"] == b["measured_median_s"] and a["round_medians_s"] == b["round_medians_s"]
        assert a["predicted_s"] > 0
    assert [m["torch"] for m in again["memory_per_rank"]] == [m["torch"] for m in committed["memory_per_rank"]]
    assert again["unit_diagnostic"] == committed["unit_diagnostic"]


def test_measured_collective_interpolation_and_gloo_excess_by_hand(tmp_path):
    """Between 1 MiB (1 ms) and 4 MiB (4 ms) the time is interpolated on log-log axes (2 MiB: 2 ms), clamped
    outside. With every all-gather and reduce-scatter measured at 1 ms, the tiny MLP's two units (b = 132,096 and
    10,280 bytes) on a 1 GB/s link with alpha 0.1 ms exceed what the model prices gloo's collectives at, on a
    device streaming 10 GB/s with 1 us per kernel: all-gather b/2B + alpha + 3b/10 GB/s + 2 us (new flat buffer
    primed with b/2, copied out), reduce-scatter b/B + 2 alpha + 3b/10 GB/s + 2 us (clone, whole all-reduce, chunk
    copy); so per unit 3 ms - (2.9e-9 b + 0.406 ms): 2.2109216 + 2.564188 = 4.7751096 ms."""
    from test_collectives_backends import _device

    from perfmodel.validation.fsdp_cpu import gloo_excess_s, measured_collective_s

    coll = {"median_s": {str(1 << 20): {"all-gather": 1e-3}, str(1 << 22): {"all-gather": 4e-3}}}
    assert measured_collective_s(coll, "all-gather", 2 << 20) == pytest.approx(2e-3)
    assert measured_collective_s(coll, "all-gather", 100) == 1e-3
    assert measured_collective_s(coll, "all-gather", 1 << 30) == 4e-3
    flat = {"median_s": {str(n): {"all-gather": 1e-3, "reduce-scatter": 1e-3} for n in (1 << 12, 1 << 20)}}
    assert gloo_excess_s(_tiny(tmp_path), flat, _device(), 1e9, 1e-4) == pytest.approx(4.7751096e-3)
    assert gloo_excess_s(_tiny(tmp_path), None, _device(), 1e9, 1e-4) is None


def test_fsdp_cases_take_the_unit_microbenchmark_latency():
    """The fsdp cases' link latency is the median of the run's per-collective FSDP unit costs; without that record
    the busy-collective latency (step_link), without both the fit's alpha."""
    from perfmodel.hardware import Link
    from perfmodel.validation.fsdp_cpu import fsdp_link, step_link

    fit = Link(name="fit", source="test", bandwidth=2e9, latency=1e-4)
    busy = [{"kind": "busy_collective_microbenchmark", "cost_per_collective_s": 1e-3}]
    units = [{"kind": "fsdp_unit_microbenchmark", "per_collective_s": x} for x in (3e-3, 1e-3, 2e-3)]
    assert fsdp_link(fit, busy + units).latency_s == pytest.approx(2e-3)
    assert fsdp_link(fit, busy).latency_s == pytest.approx(1e-3) == step_link(fit, busy + units).latency_s
    assert fsdp_link(fit, []).latency_s == pytest.approx(1e-4)
    assert fsdp_link(fit, units).bandwidth_Bps == fit.bandwidth_Bps


@pytest.mark.torch
def test_fsdp_unit_microbenchmark_record():
    pytest.importorskip("torch")
    from perfmodel.torch.fsdp_workers import UNIT_LAYERS, UNIT_ROUNDS, calibrate_fsdp_units

    r = calibrate_fsdp_units()
    assert r["kind"] == "fsdp_unit_microbenchmark" and r["layers"] == UNIT_LAYERS
    assert len(r["rounds_cost_s"]) == UNIT_ROUNDS and len(r["step_s"]["units"]) == UNIT_ROUNDS
    assert r["cost_per_unit_s"] == sorted(r["rounds_cost_s"])[UNIT_ROUNDS // 2]
    assert r["per_collective_s"] == pytest.approx(r["cost_per_unit_s"] / 3)


def test_compute_competition_slope_by_hand():
    """Tiny units: 4 ms per unit at 0.5 ms of compute; busy units: 6 ms at 7 ms: (6 - 4) / (7 - 0.5) = 0.3077 ms more
    per ms of compute per unit. A tiny record without its compute (older runs) is skipped; without both: None."""
    from perfmodel.validation.fsdp_cpu import compute_competition

    old = {"kind": "fsdp_unit_microbenchmark", "cost_per_unit_s": 9e-3}
    tiny = {"kind": "fsdp_unit_microbenchmark", "cost_per_unit_s": 4e-3, "compute_per_unit_s": 0.5e-3}
    busy = {"kind": "fsdp_unit_busy_microbenchmark", "cost_per_unit_s": 6e-3, "compute_per_unit_s": 7e-3,
            "width": 512, "batch": 256}
    c = compute_competition([tiny, old, busy])
    assert c["slope"] == pytest.approx(2 / 6.5) and c["tiny_cost_s"] == 4e-3 and c["busy_width"] == 512
    assert compute_competition([old, busy]) is None and compute_competition([tiny]) is None
