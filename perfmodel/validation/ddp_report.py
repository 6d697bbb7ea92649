"""The text of the ddp-cpu report: markdown, README section and terminal summary (perfmodel.validation.writer
writes the files)."""

from __future__ import annotations

from pathlib import Path

from ..parallel.sync_modes import expected_max_normal
from ..torch.ddp_records import LINK_NAME
from .report import plural

TARGET_PCT = 15.0  # the ddp-cpu suite's target: absolute error per case


def _link_section(res) -> list[str]:
    cal = res.link
    L = ["# ddp-cpu: torch.distributed data parallel on this CPU, predicted vs measured", ""]
    mach = (res.cases[0].measured.machine if res.cases else cal.machine) or {}
    h = res.host or {}
    gen = (f" (family {h.get('cpu_family', '?')}, model {h.get('model', '?')}, widest vector ISA "
           f"{h.get('vector_isa', '?')})" if h else "")
    L += [f"Machine: {mach.get('cpu_model', '?')}{gen}, {mach.get('physical_cores', '?')} physical cores, torch "
          f"{mach.get('torch_version', '?')}, gloo over 127.0.0.1.", "",
          f"Compute profile: `{res.profile}` ({res.profile_source}).", "",
          "## Link: all-reduce microbenchmark (the only input fitted here)", "",
          f"gloo all-reduce of fp32 tensors between 2 processes, median per size (slowest rank per repetition); "
          f"least-squares fit of T(n) = n/B + 2 alpha (ring, p = 2) on relative error: "
          f"**alpha = {cal.alpha_s * 1e6:.1f} us, B = {cal.bandwidth_Bps / 1e9:.2f} GB/s**"
          + (f", saved as `{Path(res.link_path).name}`." if res.link_path else "."), ""]
    if cal.points:
        L += ["| bytes | measured | fitted | error |", "|---:|---:|---:|---:|"]
        for (n, t), e in zip(cal.points, cal.residuals_pct()):
            L.append(f"| {n / 1024:.0f} KiB | {t * 1e6:.0f} us | {t * (1 + e / 100) * 1e6:.0f} us | {e:+.1f}% |")
        L.append("")
    return L


def _process_section(res) -> list[str]:
    L: list[str] = []
    if res.process_speed is not None:
        pb = res.process_benchmark
        L += ["## Processes sharing the CPU (microbenchmark)", "",
              (f"A {pb['gemm_n']}^3 fp32 GEMM takes {pb['gemm']['alone_s'] * 1e3:.2f} ms in one process alone and "
               f"{pb['gemm']['together_s'] * 1e3:.2f} ms in each of {pb['world']} processes running it at once; a 3x3 "
               f"convolution ({pb['conv_shape']}) {pb['conv']['alone_s'] * 1e3:.2f} ms and "
               f"{pb['conv']['together_s'] * 1e3:.2f} ms. Geometric mean of the two ratios (median of "
               f"{len(pb.get('runs', [1]))} runs: {', '.join(f'{x:.2f}' for x in pb.get('runs', []))}): "
               if pb else "") + f"**each process computes at {res.process_speed:.2f} x the speed of a lone one** "
              "(the node's `process_speed`).", ""]
        if pb and "memory_speed" in pb:
            adds = [k for k in pb if k.startswith("add")]
            L += ["Memory-bound work: c = a + b over fp32 tensors of " + ", ".join(
                      f"{int(k[3:]) * 4 / 2**20:.0f} MiB ({pb[k]['speed']:.2f})" for k in adds)
                  + f" each, alone vs in both processes at once (speed ratio in brackets); geometric mean, median of "
                  f"{len(pb.get('memory_speed_runs', [1]))} runs: **{pb['memory_speed']:.2f} x a lone process's speed "
                  "on memory-bound work** (the node's `memory_speed`: it scales the memory bandwidth and the calibrated "
                  "elementwise rates; the processes share the last-level cache and DRAM).", ""]
        elif pb:
            L += ["Memory-bound work: not measured in this run; each process gets an equal share of the memory "
                  "bandwidth.", ""]
        if pb and "straggler_cv" in pb:
            per_k = ", ".join(f"{k} {pb[k]['straggler_cv']:.3f}" for k in ("gemm", "conv") if "straggler_cv" in pb.get(k, {}))
            L += [f"The processes do not go equally fast: over the runs together, the slower process takes on average "
                  f"{pb['straggler_cv'] * expected_max_normal(pb['world']) * 100:.1f}% longer than the mean of the two, "
                  f"straggler_cv = {pb['straggler_cv']:.3f} (median of runs: "
                  f"{', '.join(f'{x:.3f}' for x in pb.get('straggler_cv_runs', []))}; per kernel in the kept run: "
                  f"{per_k}). Reported, not used: this estimate is unstable (0.06 to 0.24 between runs; one kernel "
                  "can run much slower in one process throughout a run while the other kernel runs evenly), so the "
                  "prediction uses straggler_cv = 0.", ""]
    return L


def _steps_section(res) -> list[str]:
    s = res.summary()
    L = ["## Training steps", "",
          "DistributedDataParallel (default 25 MiB buckets, 1 MiB first bucket), SGD, fp32; step = zero_grad, "
          "forward + loss, backward (with the bucketed all-reduce), optimizer step; the slowest rank per step; "
          "median over the timed steps after warm-up. The prediction uses the calibrated CPU profile at 1 thread "
          "per process, the process and memory speeds and the fitted link above; nothing is fitted to these runs.", "",
          "| case | network | params | batch/process | processes x threads | measured ms (p10-p90) | predicted ms | "
          "error | predicted compute / comm exposed / comm hidden / straggler ms |",
          "|---|---|---:|---:|---|---:|---:|---:|---|"]
    for c in res.cases:
        m = c.measured
        comp = sum(c.breakdown.get(k, 0.0) for k in ("compute", "memory", "overhead"))
        L.append(f"| {c.case.name} | {m.network} | {m.params:,} | {c.case.batch} | {c.case.world} x {c.case.threads} | "
                 f"{m.median_s * 1e3:.1f} ({m.p10_s * 1e3:.1f}-{m.p90_s * 1e3:.1f}) | {c.predicted_s * 1e3:.1f} | "
                 f"{c.error_pct:+.1f}% | {comp * 1e3:.1f} / {c.breakdown.get('communication', 0) * 1e3:.1f} / "
                 f"{(c.parallel.get('hidden_communication_s') or 0) * 1e3:.1f} / "
                 f"{c.breakdown.get('straggler', 0) * 1e3:.1f} |")
    L.append("")
    if s.get("cases"):
        L += [f"Absolute error: median {s['median_abs_error_pct']:.1f}%, mean {s['mean_abs_error_pct']:.1f}%, "
              f"p90 {s['p90_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% ({s['worst_case']}); "
              f"{s['within_target']} of {s['cases']} cases within the {TARGET_PCT:.0f}% target.", ""]
    return L


def _single_section(res) -> list[str]:
    L: list[str] = []
    if any(c.single for c in res.cases):
        L += ["### Diagnostic: the same step in one process (not used by the prediction)", "",
              "Each round also timed the step in a single process without DDP (1 thread). This separates the error "
              "of the single-device CPU model from the error of the distributed part (all-reduce, DDP copies, two "
              "processes on one CPU).", "",
              "| case | 1 process measured ms | 1 process predicted ms | single-device error | DDP - 1 process measured ms "
              "| DDP - 1 process predicted ms |", "|---|---:|---:|---:|---:|---:|"]
        for c in res.cases:
            if not c.single:
                continue
            sm, sp = c.single["measured_s"], c.single["predicted_s"]
            L.append(f"| {c.case.name} | {sm * 1e3:.1f} | {sp * 1e3:.1f} | {100 * (sp - sm) / sm:+.1f}% | "
                     f"{(c.measured.median_s - sm) * 1e3:+.1f} | {(c.predicted_s - sp) * 1e3:+.1f} |")
        L.append("")
    return L


def _runs_section(res) -> list[str]:
    """The file's other runs, re-predicted by the same model from their own records."""
    if not res.other_runs:
        return []
    s = res.summary()
    L = ["### Other runs in the measurement file (same model, each with its own link and process microbenchmarks)",
         "", "| run | host | cases | median abs error | p90 | worst |", "|---|---|---:|---:|---:|---:|"]
    for o in res.other_runs:
        h = o.get("host") or {}
        host = (f"family {h.get('cpu_family')}, {h.get('vector_isa')}" if h else
                "not recorded (before hosts were stored; machine_info says AMD EPYC)")
        L.append(f"| {o['run_id']} | {host} | {o['cases']} | {o['median_abs_error_pct']:.1f}% | "
                 f"{o['p90_abs_error_pct']:.1f}% | {o['worst_abs_error_pct']:.1f}% |")
    if s.get("cases"):
        L.append(f"| **{res.run_id} (this report)** | "
                 + (f"family {res.host.get('cpu_family')}, {res.host.get('vector_isa')}" if res.host else "?")
                 + f" | {s['cases']} | {s['median_abs_error_pct']:.1f}% | {s['p90_abs_error_pct']:.1f}% | "
                 f"{s['worst_abs_error_pct']:.1f}% |")
    return L + [""]


def report_markdown(res) -> str:
    """The whole report.md."""
    L = _link_section(res) + _process_section(res) + _steps_section(res) + _single_section(res) + _runs_section(res)
    L += [f"- {n}" for n in res.notes]
    L += ["", f"Measurements (append-only JSONL): `{Path(res.measurements_path).name if res.measurements_path else ''}`. "
          "Regenerate with `perfmodel validate --suite ddp-cpu` (or `perfmodel.validation.ddp_cpu.run_ddp_suite()`).", ""]
    return "\n".join(L)


def readme_section(res) -> str:
    """A short markdown section with the suite's figures, for the project README."""
    s = res.summary()
    cal = res.link
    L = ["### ddp-cpu: torch.distributed data parallel (gloo, 2 processes on this CPU)", "",
         f"Link fitted from a gloo all-reduce microbenchmark only: alpha {cal.alpha_s * 1e6:.0f} us, "
         f"B {cal.bandwidth_Bps / 1e9:.2f} GB/s; compute from the calibrated profile `{res.profile}`.", "",
         "| case | measured ms | predicted ms | error |", "|---|---:|---:|---:|"]
    for c in res.cases:
        L.append(f"| {c.case.name} | {c.measured.median_s * 1e3:.1f} | {c.predicted_s * 1e3:.1f} | {c.error_pct:+.1f}% |")
    if s.get("cases"):
        L += ["", f"Median absolute error {s['median_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% "
              f"({s['worst_case']}); {s['within_target']}/{s['cases']} within {TARGET_PCT:.0f}%. "
              "Full report: validation/reports/ddp-cpu/report.md."]
    return "\n".join(L) + "\n"


def terminal_text(res) -> list[str]:
    """The summary `perfmodel validate --suite ddp-cpu` prints."""
    lines = [f"{res.suite}: {plural(len(res.cases), 'case')}, profile {res.profile}, link {LINK_NAME} "
             f"(alpha {res.link.alpha_s * 1e6:.1f} us, B {res.link.bandwidth_Bps / 1e9:.2f} GB/s)", ""]
    lines.append(f"{'case':24s} {'measured ms':>12s} {'predicted ms':>13s} {'error':>8s}")
    for c in res.cases:
        lines.append(f"{c.case.name:24s} {c.measured.median_s * 1e3:12.1f} {c.predicted_s * 1e3:13.1f} "
                     f"{c.error_pct:+7.1f}%")
    s = res.summary()
    if s.get("cases"):
        lines += ["", f"median |error| {s['median_abs_error_pct']:.1f}%, worst {s['worst_abs_error_pct']:.1f}% "
                  f"({s['worst_case']}); within {TARGET_PCT:.0f}%: {s['within_target']}/{s['cases']}"]
    lines += [f"note: {n}" for n in res.notes]
    return lines
