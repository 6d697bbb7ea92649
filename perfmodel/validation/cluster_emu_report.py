"""Results and text of the cluster-emu report (perfmodel.validation.writer writes the files)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .cluster_emu_fit import LinkFit
from ..errors import InputError
from .metrics import summarize
from .protocol import Row, TextTable

TARGET_PCT = 15.0
CANNOT_SHOW = ("NVLink, RDMA/InfiniBand and GPUDirect (no such hardware; gloo over kernel TCP only)",
               "link delay/jitter: this kernel has no sch_netem, so links have rate (tbf) but only the veth/bridge "
               "stack's own latency",
               "separate CPUs per node: all emulated nodes share this machine's 2 cores (modelled as each process's "
               "measured share), so compute does not scale out as on real nodes",
               "switch contention and oversubscription beyond one bridge",
               "a parameter server with its own CPU: the server, its rpc threads and the kernel's network stack share "
               "the same cores as the workers")
KNOWN_GAPS = ("identical asynchronous workers phase-lock: two pushes that collide share the server's link, end "
              "together, and the workers then compute the same time and collide again, so equal workers drift toward "
              "the synchronous step (fully locked, async = sync without the barrier) while CPU noise unlocks them "
              "now and then; rounds of the same async case differ by up to 15%. The model's queueing (exact mean "
              "value analysis) assumes random phases and reads such cases fast. With one worker 2x slower the "
              "workers cannot lock, and the same analysis lands within 2% (ps-async-2x1-1g-b1024-slow2).",
              "no CPU cost for communication: on these 2 cores the kernel's TCP/bridge work, rpc serialisation and the "
              "server's update run beside the workers' compute (overlapping it in asynchronous training only)")


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
    samples_per_iteration: int = 0  # samples all workers process per (predicted or measured) iteration
    staleness_measured: float | None = None  # async / mixed: mean updates between a worker's pull and its push
    staleness_predicted: float | None = None

    @classmethod
    def build(cls, case: str, group: str, records: list[dict], pred, topology: dict, samples: int = 0,
              staleness: float | None = None) -> "EmuCaseResult":
        steps = tuple(t for r in records for t in r["step_times_s"])
        par = dict(pred.parallel or {})
        comm = {k: par.get(k) for k in ("gradient_sync_s", "exposed_communication_s", "hidden_communication_s",
                                        "buckets", "overlap", "sync", "algorithm", "async")}
        return cls(case, group, steps, tuple(statistics.median(r["step_times_s"]) for r in records),
                   pred.iteration_time_s, dict(pred.breakdown), comm, topology, samples, staleness,
                   par.get("staleness"))

    @property
    def round_errors_pct(self) -> tuple[float, ...]:
        return tuple(100.0 * (self.predicted_s - m) / m for m in self.round_medians_s)

    def throughput(self, measured: bool) -> float:
        """Samples per second over all workers."""
        return self.samples_per_iteration / (self.measured_s if measured else self.predicted_s)

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
        """Predicted gradient synchronisation time (all-reduce, or push + pull; pipeline/input rows: their
        `comm_s`, link-busy or IO time) over the predicted step."""
        comm = self.communication.get("comm_s") or self.communication.get("gradient_sync_s") or 0.0
        return min(1.0, comm / self.predicted_s)


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
    pairs: tuple[tuple[str, str, str], ...] = ()  # (case a, case b, what the pair compares)
    previous: "EmuReport | None" = None  # the run stored before this one, for the run-to-run comparison

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
                           "breakdown": c.breakdown, "communication": c.communication, "topology": c.topology,
                           "round_errors_pct": list(c.round_errors_pct), "staleness_measured": c.staleness_measured,
                           "staleness_predicted": c.staleness_predicted}
                          for c in self.cases],
                "ordering": [dict(zip(("a", "b", "pair", "measured_a_over_b", "predicted_a_over_b", "agree"), x))
                             for x in self.ordering()],
                "previous_run": None if self.previous is None else {
                    "run_id": self.previous.run_id, "summary": self.previous.summary(),
                    "cases": {c.case: {"measured_median_s": c.measured_s, "predicted_s": c.predicted_s,
                                       "error_pct": c.error_pct} for c in self.previous.cases},
                    "ordering_agree": [x[-1] for x in self.previous.ordering()]},
                "cannot_show": list(CANNOT_SHOW), "known_gaps": list(KNOWN_GAPS)}

    def case_table(self) -> list[str]:
        prev = {c.case: c for c in self.previous.cases} if self.previous else {}
        L = ["| case | sync, nodes x ranks, link | measured (p10-p90) | round medians | predicted | error "
             "(per round) | previous run: measured, error | predicted comm share |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in self.cases:
            lo, hi = c.spread_s
            rm = " / ".join(f"{m * 1e3:.1f}" for m in c.round_medians_s)
            re = " / ".join(f"{e:+.1f}%" for e in c.round_errors_pct)
            pc = prev.get(c.case)
            pv = f"{pc.measured_s * 1e3:.1f} ms, {pc.error_pct:+.1f}%" if pc else "-"
            L.append(f"| {c.case} | {c.group} | {c.measured_s * 1e3:.1f} ms ({lo * 1e3:.1f}-{hi * 1e3:.1f}) | "
                     f"{rm} ms | {c.predicted_s * 1e3:.1f} ms | {c.error_pct:+.1f}% ({re}) | {pv} | "
                     f"{c.comm_share:.0%} |")
        return L

    def summary_line(self) -> str:
        s = self.summary()
        within = sum(abs(c.error_pct) <= TARGET_PCT for c in self.cases)
        line = (f"Run {self.run_id[:16].replace('T', ' ')} UTC: median |error| {s['median_abs_pct']:.1f}%, worst "
                f"{s['max_abs_pct']:.1f}%, {within} of {len(self.cases)} cases within {TARGET_PCT:.0f}% (each case's "
                f"rounds pooled)")
        line += f"; ordering pairs agreeing: {sum(x[-1] for x in self.ordering())} of {len(self.pairs)}." if self.pairs \
            else "."
        if self.previous is not None and self.previous.cases:
            line += " Previous run: " + self.previous.summary_line().split(": ", 1)[1]
        return line

    def ordering(self) -> list[tuple[str, str, str, float, float, bool]]:
        """Per pair: measured and predicted throughput ratio a/b, and whether they order a and b alike."""
        by = {c.case: c for c in self.cases}
        out = []
        for a, b, what in self.pairs:
            m = by[a].throughput(True) / by[b].throughput(True)
            p = by[a].throughput(False) / by[b].throughput(False)
            out.append((a, b, what, m, p, (m > 1) == (p > 1)))
        return out

    def ordering_lines(self) -> list[str]:
        L = ["| pair | a | b | measured throughput a/b | predicted a/b | same order |", "|---|---|---|---:|---:|---|"]
        for a, b, what, m, p, ok in self.ordering():
            L.append(f"| {what} | {a} | {b} | {m:.2f} | {p:.2f} | {'yes' if ok else 'NO'} |")
        return L

    def staleness_lines(self) -> list[str]:
        L = ["| case | measured staleness (mean) | predicted |", "|---|---:|---:|"]
        for c in self.cases:
            if c.staleness_measured is not None:
                pr = "-" if c.staleness_predicted is None else f"{c.staleness_predicted:.2f}"
                L.append(f"| {c.case} | {c.staleness_measured:.2f} | {pr} |")
        return L

    def link_lines(self) -> list[str]:
        L = ["| link | all-reduce alpha | all-reduce B | send/recv alpha | send/recv B | rpc alpha | rpc B |",
             "|---|---:|---:|---:|---:|---:|---:|"]
        for lk in self.links:
            cells = []
            for pat in ("allreduce", "sendrecv", "rpc"):
                if pat == "rpc" and not lk.rpc:
                    cells.append("- | -")
                    continue
                a, b = lk.fit(pat)
                cells.append(f"{a * 1e6:.0f} us | {b / 1e6:.1f} MB/s")
            L.append(f"| {lk.name} ({lk.topology['links'][0]['rate_bps'] / 1e6:.0f} Mbit/s per node link) | "
                     + " | ".join(cells) + " |")
        return L

    def markdown(self) -> str:
        L = ["# cluster-emu: torch.distributed across an emulated cluster, predicted vs measured", "",
             f"Run {self.run_id}; compute profile `{self.profile}`; each of the processes computes at "
             f"{self.process_speed or 1:.2f} x a lone process's speed (contention microbenchmark). Store: "
             f"`{self.store}`.", "", "## Links (calibrated inside the emulated cluster; the only fitted inputs)", "",
             *self.link_lines(), "", "Data-parallel (ring) cases use the all-reduce fit, parameter-server cases the "
             "rpc round-trip fit. B comes from the messages of 1 MiB and more, alpha from the fastest message under "
             "tbf's 64 KiB burst (which passes unshaped).", "", "## Cases", "", *self.case_table(), ""]
        if self.cases:
            L += [self.summary_line(), "", "Asynchronous and mixed cases: the iteration is workers / (sum of the "
                  "pushing workers' rates), the model's workers / updates per second.", ""]
        if self.pairs:
            L += ["## Ordering (throughput, samples/s over all workers)", "", *self.ordering_lines(), ""]
        if any(c.staleness_measured is not None for c in self.cases):
            L += ["## Staleness (updates applied between a worker's pull and its push)", "", *self.staleness_lines(),
                  ""]
        L += ["## Known gaps of the model (what these cases show it misses)", "", *(f"- {x}" for x in KNOWN_GAPS), "",
              "## What the emulation cannot show", "", *(f"- {x}" for x in CANNOT_SHOW), ""]
        return "\n".join(L)

    def readme_section(self) -> str:
        """The README's cluster-emu block (between README_BEGIN and README_END), rebuilt from this report."""
        return "\n".join([README_BEGIN, *self.case_table(), "", self.summary_line(), "", *self.ordering_lines(), "",
                          *self.staleness_lines(), "", README_END, ""])


README_BEGIN = "<!-- cluster-emu report (generated: validation/reports/cluster-emu/README_SECTION.md) -->"
README_END = "<!-- end of cluster-emu report -->"


def splice_readme(readme: str, section: str) -> str:
    """`readme` with its block from README_BEGIN to README_END replaced by `section` (a readme_section())."""
    a, b = readme.find(README_BEGIN), readme.find(README_END)
    if a < 0 or b < a:
        raise InputError(f"README has no cluster-emu block ({README_BEGIN!r} ... {README_END!r})")
    return readme[:a] + section.rstrip("\n") + readme[b + len(README_END):]


def terminal_text(rep: EmuReport) -> list:
    rows = [(c.case, c.group, f"{c.measured_s * 1e3:.1f}", f"{c.predicted_s * 1e3:.1f}", f"{c.error_pct:+.1f}%",
             f"{c.spread_s[0] * 1e3:.1f}-{c.spread_s[1] * 1e3:.1f}") for c in rep.cases]
    return [f"cluster-emu run {rep.run_id}",
            TextTable(("case", "topology", "measured ms", "predicted ms", "error", "p10-p90 ms"), rows, "llrrrr")]
