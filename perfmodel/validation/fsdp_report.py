"""The text of the fsdp-cpu report: markdown, README section and terminal summary (perfmodel.validation.writer
writes the files)."""

from __future__ import annotations

from pathlib import Path

from .protocol import TextTable
from .report import plural

TARGET_PCT = 15.0  # absolute error of the step time per case, as ddp-cpu
_MB = 1e6


def _head(res) -> list[str]:
    cal, h = res.link, res.host or {}
    mach = (res.cases[0].measured.machine if res.cases else cal.machine) or {}
    L = ["# fsdp-cpu: sharded data parallel (FSDP2, ZeRO) on this CPU, predicted vs measured", "",
         f"Machine: {mach.get('cpu_model', '?')} (family {h.get('cpu_family', '?')}, model {h.get('model', '?')}, "
         f"widest vector ISA {h.get('vector_isa', '?')}), {mach.get('physical_cores', '?')} physical cores, torch "
         f"{mach.get('torch_version', '?')}; 2 processes x 1 thread, gloo over 127.0.0.1, Adam, fp32.", "",
         f"Compute profile: `{res.profile}` ({res.profile_source}).", "",
         "## Microbenchmarks (the only inputs measured for this suite; nothing is fitted to the training runs)", "",
         f"- gloo all-reduce fit (as ddp-cpu, a barrier before every repetition): alpha = {cal.alpha_s * 1e6:.1f} us, "
         f"**B = {cal.bandwidth_Bps / 1e9:.2f} GB/s**.",
         f"- one small collective inside busy compute (both ranks: 8 GEMMs of 256^3, then a blocking 4 KiB "
         f"all-gather, no barrier; minus the same loop without it): **{res.step_latency_s * 1e3:.2f} ms per "
         "collective**, the link latency the ddp and zero1 cases are predicted with: it includes the wait for the "
         "other rank's compute (their skew) and for the scheduler to run gloo's transfer thread on a core that "
         "computes, which the barrier-synchronised fit does not see.", *_unit_line(res),
         f"- processes sharing the CPU: each computes at {res.process_speed or 1:.2f} x a lone one's speed, "
         f"{res.memory_speed or 1:.2f} x on memory-bound work.", ""]
    if res.collectives:
        L += ["gloo collectives of the same full tensor (all-gather and reduce-scatter: each rank holds half), "
              "median of the slower rank; a bandwidth-optimal ring moves half an all-reduce's bytes in each:", "",
              "| full size | all-reduce ms | all-gather ms | reduce-scatter ms | all-gather / all-reduce | "
              "reduce-scatter / all-reduce |", "|---:|---:|---:|---:|---:|---:|"]
        for n, d in res.collectives["median_s"].items():
            ar, ag, rs = d["all-reduce"], d["all-gather"], d["reduce-scatter"]
            size = f"{int(n) / 2**20:.0f} MiB" if int(n) >= 2**20 else f"{int(n) / 2**10:.0f} KiB"
            L.append(f"| {size} | {ar * 1e3:.2f} | {ag * 1e3:.2f} | {rs * 1e3:.2f} | "
                     f"{ag / ar:.2f} | {rs / ar:.2f} |")
        L.append("")
    return L


def _unit_line(res) -> list[str]:
    """The FSDP2 unit microbenchmark's line (runs that measured it), and how the collectives are priced."""
    u = res.unit_bench
    L = ["- collectives priced as gloo runs them (`hardware_profiles/backends/gloo.yaml`, picked for a CPU from its "
         "`default_for`): reduce-scatter = a clone, an all-reduce of the whole tensor and a copy of the rank's chunk "
         "(twice a ring reduce-scatter's bytes); all-gather = a new flat buffer, the ring, a copy out; the copies "
         "as memory work on the CPU profile."]
    if u:
        L.insert(0, f"- FSDP2 unit cost beyond its bytes ({u['layers']} Linear({u['width']}, {u['width']}) layers, "
                    f"Adam, as {u['layers']} units minus as one unit, per extra unit, median of "
                    f"{len(u['rounds_cost_s'])} rounds {min(u['rounds_cost_s']) * 1e3:.2f}-"
                    f"{max(u['rounds_cost_s']) * 1e3:.2f}): **{u['cost_per_unit_s'] * 1e3:.2f} ms per unit**, "
                    f"{res.fsdp_latency_s * 1e3:.2f} ms per collective: the latency the fsdp cases are predicted with.")
    b = res.unit_busy
    if b and b["slope"] is not None:
        L.insert(1, f"- the same with compute between the collectives (Linear({b['busy_width']}, {b['busy_width']}), "
                    f"{b['busy_batch']} samples: {b['busy_compute_s'] * 1e3:.2f} ms of compute per unit against "
                    f"{b['tiny_compute_s'] * 1e3:.2f} ms): {b['busy_cost_s'] * 1e3:.2f} ms per unit against "
                    f"{b['tiny_cost_s'] * 1e3:.2f} ms, **{b['slope']:.2f} ms more per ms of compute per unit**: "
                    "gloo's worker thread shares the computing cores, so per-unit collectives slow the compute around "
                    "them. Measured and reported; the prediction does not use it (no compute-slowdown term for gloo "
                    "yet).")
    return L


def _steps(res) -> list[str]:
    s = res.summary()
    L = ["## Training steps", "",
         "Step = zero_grad, forward + loss, backward, Adam step; the slower rank per step; median over the timed "
         "steps of all rounds (p10-p90), and each round's median. fsdp: `fully_shard` on every layer with "
         "parameters and on the root (ZeRO-3); zero1: DistributedDataParallel + ZeroRedundancyOptimizer; ddp: "
         "DistributedDataParallel. Predicted with `zero` = the stage (FSDP: `sharding='full'`).", "",
         "| case | zero | params | batch/process | measured ms (p10-p90) | round medians ms | predicted ms | error | "
         "predicted compute / communication ms |", "|---|---:|---:|---:|---:|---|---:|---:|---|"]
    for c in res.cases:
        m = c.measured
        comp = sum(c.breakdown.get(k, 0.0) for k in ("compute", "memory", "overhead"))
        L.append(f"| {c.case.name} | {c.case.zero} | {m.params:,} | {c.case.batch} | {m.median_s * 1e3:.1f} "
                 f"({m.p10_s * 1e3:.1f}-{m.p90_s * 1e3:.1f}) | {', '.join(f'{x * 1e3:.0f}' for x in c.round_medians_s)} "
                 f"| {c.predicted_s * 1e3:.1f} | {c.error_pct:+.1f}% | {comp * 1e3:.1f} / "
                 f"{c.breakdown.get('communication', 0) * 1e3:.1f} |")
    L.append("")
    u = res.units
    if u:
        L += [f"Diagnostic (measured, not predicted): `{u['case']}` wraps the whole model as one FSDP unit (the same "
              f"bytes in 3 collectives per step): {u['root_median_s'] * 1e3:.1f} ms ({u['root_p10_s'] * 1e3:.1f}-"
              f"{u['root_p90_s'] * 1e3:.1f}) against {u['per_layer_median_s'] * 1e3:.1f} ms with one unit per layer "
              f"({u['units']} units): **{u['per_collective_s'] * 1e3:.2f} ms per extra collective**.", ""]
    if s.get("cases"):
        L += [f"Absolute error: median {s['median_abs_error_pct']:.1f}%, p90 {s['p90_abs_error_pct']:.1f}%, worst "
              f"{s['worst_abs_error_pct']:.1f}% ({s['worst_case']}); {s['within_target']} of {s['cases']} cases "
              f"within the {TARGET_PCT:.0f}% target.", ""]
    return L


def _memory(res) -> list[str]:
    L = ["## Model state per rank: predicted vs PyTorch's accounting", "",
         "Predicted: perfmodel's per-rank terms (weights, gradients, Adam state: fp32) with the stage's sharding "
         "over 2 ranks (`parallel.sharding.shard_terms`, at rest: without the full parameters of the units being "
         "gathered). PyTorch: bytes of the rank's local tensors after a step (FSDP: `DTensor.to_local()`; "
         "ZeroRedundancyOptimizer: its local optimizer's state). ZeRO-2 is computed: the gradients of the "
         "parameters in the rank's ZeroRedundancyOptimizer partition. Peak RSS delta: the rank's peak resident "
         "memory during the timed steps minus its resident memory before the model was built (includes activations, "
         "gloo buffers and allocator slack), beside the prediction's whole footprint.", "",
         "| network | stage | PyTorch | rank | weights MB pred / torch | gradients MB pred / torch | "
         "optimizer MB pred / torch | total MB pred / torch | error | peak RSS delta MB / predicted footprint MB |",
         "|---|---:|---|---:|---|---|---|---|---:|---|"]
    for m in res.memory:
        p, t = m.predicted, m.torch
        cells = " | ".join(f"{p[k] / _MB:.2f} / {t[k] / _MB:.2f}" for k in ("weights_bytes", "gradients_bytes",
                                                                          "optimizer_bytes"))
        rss = (f"{m.peak_rss_delta_bytes / _MB:.0f} / {m.predicted_total_bytes / _MB:.0f}"
               if m.peak_rss_delta_bytes is not None else "-")
        L.append(f"| {m.network} | {m.stage} | {m.implementation} | {m.rank} | {cells} | "
                 f"{sum(p.values()) / _MB:.2f} / {sum(t.values()) / _MB:.2f} | {m.error_pct:+.1f}% | {rss} |")
    L.append("")
    return L


def _where(res) -> list[str]:
    """Where the time of FSDP goes: measured and predicted FSDP - DDP per network, and the measured causes."""
    by = {(c.case.network, c.case.mode): c for c in res.cases}
    rows = []
    for (net, mode), f in by.items():
        d = by.get((net, "ddp"))
        if mode != "fsdp" or d is None:
            continue
        dm, dp = f.measured.median_s - d.measured.median_s, f.predicted_s - d.predicted_s
        ex = f.gloo_excess_s or 0.0
        rows.append(f"| {Path(net).stem} | {d.error_pct:+.1f}% | {dm * 1e3:+.1f} | {dp * 1e3:+.1f} | {ex * 1e3:.1f} | "
                    f"{(dm - dp - ex) * 1e3:+.1f} |")
    if not rows:
        return []
    return ["## Where FSDP's time goes", "",
            "The ddp case of each network separates the single-process model's error (compute, the Adam step) from "
            "what sharding adds. FSDP - DDP is the step time FSDP adds (measured and predicted); gloo excess is what "
            "gloo's all-gathers and reduce-scatters of the units' sizes took in the collective microbenchmark above "
            "beyond what the model prices them at (gloo's algorithm and copies on the fitted link), summed over the "
            "units (`fsdp_cpu.gloo_excess_s`, interpolated between the measured sizes; not used by the prediction); "
            "the rest is what neither explains.", "",
            "| network | ddp case error | FSDP - DDP measured ms | predicted ms | gloo excess ms | rest ms |",
            "|---|---:|---:|---:|---:|---:|"] + rows + [""]


def report_markdown(res) -> str:
    """The whole report.md."""
    L = _head(res) + _steps(res) + _where(res) + _memory(res) + [f"- {n}" for n in res.notes]
    name = Path(res.measurements_path).name if res.measurements_path else ""
    L += ["", f"Measurements (append-only JSONL): `{name}`. Rebuild this report from them with `perfmodel validate "
          "--suite fsdp-cpu --replay validation/measurements/fsdp-cpu.jsonl --report DIR`; measure a new run with "
          "`perfmodel validate --suite fsdp-cpu` (perfmodel.validation.fsdp_cpu.run_fsdp_suite).", ""]
    return "\n".join(L)


def readme_section(res) -> str:
    """A short markdown section with the suite's figures."""
    s = res.summary()
    L = ["### fsdp-cpu: FSDP2 and ZeRO (gloo, 2 processes on this CPU)", "",
         "| case | zero | measured ms | predicted ms | error |", "|---|---:|---:|---:|---:|"]
    L += [f"| {c.case.name} | {c.case.zero} | {c.measured.median_s * 1e3:.1f} | {c.predicted_s * 1e3:.1f} | "
          f"{c.error_pct:+.1f}% |" for c in res.cases]
    if s.get("cases"):
        L += ["", f"Median absolute error {s['median_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% "
              f"({s['worst_case']}); model state per rank within {s['memory_max_abs_error_pct']:.1f}% of PyTorch's "
              "local tensor bytes. Full report: validation/reports/fsdp-cpu/report.md."]
    return "\n".join(L) + "\n"


def terminal_text(res) -> list:
    """The summary `perfmodel validate --suite fsdp-cpu` prints."""
    rows = [(c.case.name, c.case.zero, f"{c.measured.median_s * 1e3:.1f}", f"{c.predicted_s * 1e3:.1f}",
             f"{c.error_pct:+.1f}%") for c in res.cases]
    mem = [(m.network, m.stage, m.rank, f"{sum(m.predicted.values()) / _MB:.2f}", f"{sum(m.torch.values()) / _MB:.2f}",
            f"{m.error_pct:+.1f}%") for m in res.memory]
    out: list = [f"{res.suite}: {plural(len(res.cases), 'case')}, profile {res.profile}",
                 TextTable(["case", "zero", "measured ms", "predicted ms", "error"], rows, "lrrrr"),
                 TextTable(["network", "stage", "rank", "model state MB predicted", "torch", "error"], mem, "lrrrrr")]
    return out + [f"note: {n}" for n in res.notes]
