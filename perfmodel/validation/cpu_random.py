"""The cpu-random suite: random realistic networks, a fresh seed per run, measured at 1 and 2 threads.

    perfmodel validate --suite cpu-random                 # draw a seed, measure one round
    perfmodel validate --suite cpu-random --seed 123      # one more round of seed 123 (rounds pool)
    perfmodel validate --suite cpu-random --replay F --seed 123   # re-report from stored measurements

The networks (perfmodel.validation.cpu_random_nets) are drawn from the seed; the model never saw them and
calibration runs microbenchmarks only. Each call measures `--rounds` rounds (default 1: one hold of a
shared machine stays short; call again with the same --seed for more, the rounds are interleaved in time)
and reports every stored round of the seed: each case is judged against the median of its round medians
(the issue asks for at least 3 interleaved rounds), with its measurement spread beside the error (p10-p90 of its
pooled steps, and the difference between its round medians); median, p90 and worst absolute error; and a
per-op-family table from the per-layer timings of the first round.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, NotFoundError
from ..prediction import predict
from .cpu_random_measure import STEPS, THREADS, WARMUP, CaseKey, measure_round, pooled_measurements, stored_seeds
from .cpu_random_nets import draw_cases, draw_net
from .metrics import ErrorSummary, percentile, signed_error_pct, summarize
from .profiles import resolve_profile
from .protocol import Row, RunOptions
from .storage import measurement_store

TARGET_MEDIAN_PCT, TARGET_P90_PCT = 8.0, 20.0


def layer_family(layer) -> str:
    """The kernel class of a layer for the per-op-family table (conv/depthwise, conv/1x1, dense, rnn/lstm, ...)."""
    op, s = layer.op, layer.spec
    if op in ("conv1d", "conv2d", "conv_transpose2d"):
        cin = layer.input_shapes[0][0]
        k = s.kernel if isinstance(s.kernel, tuple) else (s.kernel,)
        st = s.stride if isinstance(s.stride, tuple) else (s.stride,)
        if s.groups > 1 and s.groups == cin:
            return "conv/depthwise"
        if s.groups > 1:
            return "conv/grouped"
        if all(x == 1 for x in k):
            return "conv/1x1"
        return "conv/strided" if any(x > 1 for x in st) else "conv/dense"
    if op in ("lstm", "gru", "rnn"):
        return f"rnn/{op}"
    if op in ("batchnorm", "layernorm"):
        return f"norm/{op}"
    if op in ("relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax"):
        return "activation"
    if op in ("maxpool2d", "avgpool2d", "global_avgpool"):
        return "pool"
    if op in ("softmax_cross_entropy", "mse", "bce"):
        return "loss"
    if op in ("embedding", "positional_embedding"):
        return "embedding"
    return op


@dataclass(frozen=True)
class RandomCase:
    name: str
    kind: str
    batch: int
    threads: int
    optimizer: str
    predicted_s: float
    measured_s: float  # median of the round medians (a disturbed round of a shared machine does not move it)
    p10_s: float
    p90_s: float
    round_medians_s: tuple[float, ...]
    others_cores: float | None

    @property
    def error_pct(self) -> float:
        return signed_error_pct(self.predicted_s, self.measured_s)

    @property
    def spread_pct(self) -> float:
        """p10-p90 width of the pooled step times, in % of their median."""
        return 100.0 * (self.p90_s - self.p10_s) / self.measured_s

    @property
    def rounds_spread_pct(self) -> float:
        """Largest over smallest round median, minus 1, in % (0 with one round)."""
        r = self.round_medians_s
        return 100.0 * (max(r) / min(r) - 1.0) if len(r) > 1 else 0.0


@dataclass(frozen=True)
class FamilyRow:
    family: str
    layers: int  # layer instances with per-layer timings (over all cases)
    measured_s: float  # summed over those layers (forward + backward)
    predicted_s: float
    median_layer_error_pct: float

    @property
    def error_pct(self) -> float:
        return signed_error_pct(self.predicted_s, self.measured_s)


@dataclass(frozen=True)
class CpuRandomReport:
    suite: str
    seed: int
    profile: str
    profile_source: str
    cases: tuple[RandomCase, ...]
    families: tuple[FamilyRow, ...]
    store: str
    replayed: bool
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def summary(self) -> ErrorSummary:
        return summarize({c.name: c.error_pct for c in self.cases})

    @property
    def meets_target(self) -> bool:
        s = self.summary
        return s.median_abs_pct <= TARGET_MEDIAN_PCT and s.p90_abs_pct <= TARGET_P90_PCT

    def comparisons(self) -> tuple[Row, ...]:
        return tuple(Row(case=c.name, predicted_s=c.predicted_s, measured_s=c.measured_s, group=c.kind,
                         spread_s=(c.p10_s, c.p90_s)) for c in self.cases)

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite, "seed": self.seed, "profile": self.profile, "profile_source": self.profile_source,
            "store": self.store, "replayed": self.replayed, "summary": self.summary.to_dict(),
            "target": {"median_abs_pct": TARGET_MEDIAN_PCT, "p90_abs_pct": TARGET_P90_PCT},
            "meets_target": self.meets_target, "notes": list(self.notes),
            "cases": [{**c.__dict__, "round_medians_s": list(c.round_medians_s), "error_pct": c.error_pct,
                       "spread_pct": c.spread_pct, "rounds_spread_pct": c.rounds_spread_pct} for c in self.cases],
            "families": [{**f.__dict__, "error_pct": f.error_pct} for f in self.families],
        }

    def _headline(self) -> str:
        s = self.summary
        spreads = [c.spread_pct for c in self.cases]
        rs = [c.rounds_spread_pct for c in self.cases]
        nr = sorted({len(c.round_medians_s) for c in self.cases})
        rounds = f"{nr[0]}" if len(nr) == 1 else f"{nr[0]}-{nr[-1]}"
        return (f"seed {self.seed}, {s.n} cases, {rounds} rounds each (judged against the median of round medians): "
                f"median {s.median_abs_pct:.1f}%, p90 {s.p90_abs_pct:.1f}%, worst "
                f"{s.max_abs_pct:.1f}% ({s.worst[0][0]}), bias {s.mean_signed_pct:+.1f}%; measurement spread "
                f"(p10-p90 of steps) median {statistics.median(spreads):.1f}%, between rounds median "
                f"{statistics.median(rs):.1f}% (max {max(rs):.1f}%); target median <= {TARGET_MEDIAN_PCT:.0f}%, "
                f"p90 <= {TARGET_P90_PCT:.0f}%: {'met' if self.meets_target else 'not met'}")

    def markdown(self) -> str:
        lines = [f"# cpu-random, seed {self.seed}", "", self._headline(), "",
                 f"Profile `{self.profile}` ({self.profile_source}). Measurements: `{self.store}`"
                 + (" (replayed)." if self.replayed else "."), ""]
        lines += [f"- {n}" for n in self.notes] + ([""] if self.notes else [])
        by_t = {t: [c for c in self.cases if c.threads == t] for t in sorted({c.threads for c in self.cases})}
        lines += ["| threads | cases | median | p90 | worst | bias |", "|---|---:|---:|---:|---:|---:|"]
        for t, cs in by_t.items():
            s = summarize({c.name: c.error_pct for c in cs})
            lines.append(f"| {t} | {s.n} | {s.median_abs_pct:.1f}% | {s.p90_abs_pct:.1f}% | {s.max_abs_pct:.1f}% | "
                         f"{s.mean_signed_pct:+.1f}% |")
        lines += ["", "## Cases", "",
                  "| case | optimizer | measured ms | spread p10-p90 | rounds | between rounds | predicted ms | error |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for c in self.cases:
            lines.append(f"| {c.name} | {c.optimizer} | {c.measured_s * 1e3:.1f} | {c.spread_pct:.1f}% | "
                         f"{len(c.round_medians_s)} | {c.rounds_spread_pct:.1f}% | {c.predicted_s * 1e3:.1f} | "
                         f"{c.error_pct:+.1f}% |")
        lines += ["", "## Per op family (per-layer timings, first round)", "",
                  "| family | layers | measured ms | predicted ms | error of sums | median layer error |",
                  "|---|---:|---:|---:|---:|---:|"]
        for f in self.families:
            lines.append(f"| {f.family} | {f.layers} | {f.measured_s * 1e3:.1f} | {f.predicted_s * 1e3:.1f} | "
                         f"{f.error_pct:+.1f}% | {f.median_layer_error_pct:+.1f}% |")
        return "\n".join(lines) + "\n"

    def readme_section(self) -> str:
        return f"**cpu-random** ({self.profile}): {self._headline()}.\n"


def family_rows(pairs: list[tuple[str, float, float]]) -> tuple[FamilyRow, ...]:
    """(family, predicted_s, measured_s) per layer -> one row per family, largest measured time first."""
    by: dict[str, list[tuple[float, float]]] = {}
    for fam, p, m in pairs:
        if m > 0:
            by.setdefault(fam, []).append((p, m))
    rows = [FamilyRow(f, len(v), sum(m for _, m in v), sum(p for p, _ in v),
                      statistics.median(signed_error_pct(p, m) for p, m in v)) for f, v in by.items()]
    return tuple(sorted(rows, key=lambda r: -r.measured_s))


def _layer_pairs(graph, pred, timings) -> list[tuple[str, float, float]]:
    by_name = {t.name: t for t in timings}
    out = []
    for row in pred.layers:
        t = by_name.get(row.name)
        if t is None or row.op == "input":
            continue
        out.append((layer_family(graph[row.name]), row.time_s["total"], t.forward_s + (t.backward_s or 0.0)))
    return out


def build_report(seed: int, dev, store: Path, replayed: bool, only: tuple[str, ...] = (),
                 notes: tuple[str, ...] = ()) -> CpuRandomReport:
    """Predict every stored case of `seed` with `dev` and compare with its pooled measurements."""
    cases, pairs = [], []
    for p in pooled_measurements(store, seed):
        k = p.key
        if only and k.name not in only and k.kind not in only:
            continue
        graph = draw_net(seed, k.index, k.kind, k.draw).graph
        pred = predict(graph, dev, batch=k.batch, threads=k.threads, optimizer=k.optimizer, layers=bool(p.per_layer))
        ts = sorted(p.step_times_s)
        cases.append(RandomCase(k.name, k.kind, k.batch, k.threads, k.optimizer, pred.iteration_time_s,
                                statistics.median(p.round_medians_s), percentile(ts, 10), percentile(ts, 90),
                                p.round_medians_s, p.others_cores))
        if p.per_layer:
            pairs += _layer_pairs(graph, pred, p.per_layer)
    if not cases:
        raise NotFoundError(f"{store} holds no cpu-random measurement of seed {seed}")
    return CpuRandomReport("cpu-random", seed, dev.name, dev.source, tuple(cases), family_rows(pairs), str(store),
                           replayed, notes)


class _CpuRandom:
    name = "cpu-random"
    help = "24 random networks (fresh seed per run unless --seed) at 1 and 2 threads; rounds pool per seed"
    measured = True

    def case_names(self) -> tuple[str, ...]:
        return ()  # drawn per seed

    def run(self, o: RunOptions) -> CpuRandomReport:
        if o.device not in (None, "cpu"):
            raise InputError(f"suite 'cpu-random' runs on the CPU only; got --device {o.device}")
        dev = resolve_profile(o.profile, "cpu")
        if o.replay is not None:
            seeds = stored_seeds(Path(o.replay))
            seed = o.seed if o.seed is not None else (seeds[-1] if seeds else 0)
            return build_report(seed, dev, Path(o.replay), True, tuple(o.cases))
        store = measurement_store("cpu-random", o.store)
        seed = o.seed if o.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
        o.say(f"cpu-random: seed {seed}, measurements -> {store}")
        sized = draw_cases(seed, dev)
        cases = [(CaseKey(s.net.index, s.net.draw, s.net.kind, s.batch, t, s.net.optimizer), s.net.graph)
                 for s in sized for t in THREADS]
        if o.cases:
            cases = [c for c in cases if c[0].name in o.cases or c[0].kind in o.cases]
        done = {p.key.name: len(p.round_medians_s) for p in pooled_measurements(store, seed)} if store.exists() else {}
        first = max(done.values(), default=0) + 1
        for rnd in range(first, first + (o.rounds or 1)):
            measure_round(cases, seed, rnd, store, dev.name, per_layer=rnd == 1, wait=o.wait, say=o.say,
                          warmup=o.warmup if o.warmup is not None else WARMUP, steps=o.steps or STEPS)
        return build_report(seed, dev, store, False, tuple(o.cases))

    def text(self, rep: CpuRandomReport) -> str:
        return rep.markdown()


SUITE = _CpuRandom()
