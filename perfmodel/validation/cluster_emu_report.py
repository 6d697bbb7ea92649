"""Results and text of the cluster-emu report (perfmodel.validation.writer writes the files)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .cluster_emu_fit import LinkFit
from .metrics import summarize
from .protocol import Row, TextTable

TARGET_PCT = 15.0
CANNOT_SHOW = ("NVLink, RDMA/InfiniBand and GPUDirect (no such hardware; gloo over kernel TCP only)",
               "link delay/jitter: this kernel has no sch_netem, so links have rate (tbf) but only the veth/bridge "
               "stack's own latency",
               "separate CPUs per node: all emulated nodes share this machine's 2 cores (modelled as each process's "
               "measured share), so compute does not scale out as on real nodes",
               "switch contention and oversubscription beyond one bridge")


def _pct(xs, q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


@dataclass(frozen=True)
class EmuCaseResult:
    case: str
    group: str
    step_times_s: tuple[float, ...]  # pooled over rounds (slowest rank per step)
    round_medians_s: tuple[float, ...]
    predicted_s: float
    breakdown: dict[str, float]
    communication: dict[str, Any]
    topology: dict[str, Any]

    @classmethod
    def build(cls, case: str, group: str, records: list[dict], pred, topology: dict) -> "EmuCaseResult":
        steps = tuple(t for r in records for t in r["step_times_s"])
        par = dict(pred.parallel or {})
        comm = {k: par.get(k) for k in ("gradient_sync_s", "exposed_communication_s", "hidden_communication_s",
                                        "buckets", "overlap")}
        return cls(case, group, steps, tuple(statistics.median(r["step_times_s"]) for r in records),
                   pred.iteration_time_s, dict(pred.breakdown), comm, topology)

    @property
    def measured_s(self) -> float:
        return statistics.median(self.step_times_s)

    @property
    def spread_s(self) -> tuple[float, float]:
        return _pct(self.step_times_s, 0.1), _pct(self.step_times_s, 0.9)

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted_s - self.measured_s) / self.measured_s

    @property
    def comm_share(self) -> float:
        """Predicted gradient all-reduce time over the predicted step."""
        return (self.communication.get("gradient_sync_s") or 0.0) / self.predicted_s


@dataclass(frozen=True)
class EmuReport:
    suite: str
    run_id: str
    profile: str
    store: str
    links: tuple[LinkFit, ...]
    process_speed: float | None
    memory_speed: float | None
    cases: tuple[EmuCaseResult, ...] = field(default=())

    def comparisons(self) -> tuple[Row, ...]:
        return tuple(Row(case=c.case, predicted_s=c.predicted_s, measured_s=c.measured_s, group=c.group,
                         spread_s=c.spread_s) for c in self.cases)

    def summary(self) -> dict[str, Any]:
        return summarize({c.case: c.error_pct for c in self.cases}).to_dict() if self.cases else {"cases": 0}

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "run_id": self.run_id, "profile": self.profile, "store": self.store,
                "process_speed": self.process_speed, "memory_speed": self.memory_speed,
                "links": [lk.to_dict() for lk in self.links], "summary": self.summary(),
                "cases": [{"case": c.case, "group": c.group, "measured_median_s": c.measured_s,
                           "measured_p10_s": c.spread_s[0], "measured_p90_s": c.spread_s[1],
                           "round_medians_s": list(c.round_medians_s), "predicted_s": c.predicted_s,
                           "error_pct": c.error_pct, "predicted_comm_share": c.comm_share,
                           "breakdown": c.breakdown, "communication": c.communication, "topology": c.topology}
                          for c in self.cases],
                "cannot_show": list(CANNOT_SHOW)}

    def case_table(self) -> list[str]:
        L = ["| case | nodes x ranks, link | measured (p10-p90) | predicted | error | predicted comm share |",
             "|---|---|---:|---:|---:|---:|"]
        for c in self.cases:
            lo, hi = c.spread_s
            L.append(f"| {c.case} | {c.group} | {c.measured_s * 1e3:.1f} ms ({lo * 1e3:.1f}-{hi * 1e3:.1f}) | "
                     f"{c.predicted_s * 1e3:.1f} ms | {c.error_pct:+.1f}% | {c.comm_share:.0%} |")
        return L

    def link_lines(self) -> list[str]:
        L = ["| link | all-reduce alpha | all-reduce B | send/recv alpha | send/recv B |", "|---|---:|---:|---:|---:|"]
        for lk in self.links:
            a, b = lk.fit("allreduce")
            a2, b2 = lk.fit("sendrecv")
            L.append(f"| {lk.name} ({lk.topology['links'][0]['rate_bps'] / 1e6:.0f} Mbit/s per node link) | "
                     f"{a * 1e6:.0f} us | {b / 1e6:.1f} MB/s | {a2 * 1e6:.0f} us | {b2 / 1e6:.1f} MB/s |")
        return L

    def markdown(self) -> str:
        s = self.summary()
        L = ["# cluster-emu: torch.distributed across an emulated cluster, predicted vs measured", "",
             f"Run {self.run_id}; compute profile `{self.profile}`; each of the processes computes at "
             f"{self.process_speed or 1:.2f} x a lone process's speed (contention microbenchmark). Store: "
             f"`{self.store}`.", "", "## Links (calibrated inside the emulated cluster; the only fitted inputs)", "",
             *self.link_lines(), "", "The link profile uses the all-reduce fit. Send/recv fits are shown for "
             "comparison (tbf's burst lets messages under 64 KiB through at once, so the linear fit is rougher).", "",
             "## Cases", "", *self.case_table(), ""]
        if self.cases:
            L += [f"Median |error| {s['median_abs_pct']:.1f}%, worst {s['max_abs_pct']:.1f}% "
                  f"(target: every case within {TARGET_PCT:.0f}%).", ""]
        L += ["## What the emulation cannot show", "", *(f"- {x}" for x in CANNOT_SHOW), ""]
        return "\n".join(L)

    def readme_section(self) -> str:
        return "\n".join(["### cluster-emu (emulated cluster, root)", "", *self.case_table(), "",
                          "Run: `sudo perfmodel validate --suite cluster-emu`; on a real cluster calibrate links with "
                          "`torchrun --nnodes 2 --nproc-per-node 1 ... -m perfmodel.torch.cluster_workers TASK OUT`.",
                          ""])


def terminal_text(rep: EmuReport) -> list:
    rows = [(c.case, c.group, f"{c.measured_s * 1e3:.1f}", f"{c.predicted_s * 1e3:.1f}", f"{c.error_pct:+.1f}%",
             f"{c.spread_s[0] * 1e3:.1f}-{c.spread_s[1] * 1e3:.1f}") for c in rep.cases]
    return [f"cluster-emu run {rep.run_id}",
            TextTable(("case", "topology", "measured ms", "predicted ms", "error", "p10-p90 ms"), rows, "llrrrr")]
