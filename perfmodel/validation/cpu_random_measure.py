"""Measuring the cpu-random suite (torch, imported lazily): interleaved rounds, stored records, pooling.

A round measures every case once, each in a fresh Python process (perfmodel.torch.isolated: the allocator starts
as a user's training script starts, not in the state the previous case left), the 1- and 2-thread cases of one
network back to back, the network order reversed in every other round so slow drifts of a shared machine hit all
cases alike, and appends
one JSONL record per measurement (perfmodel.torch.measure records; seed, case, draw, batch, round,
attempt and the CPU other processes used are in its notes). A round stops starting cases after
ROUND_BUDGET_S so that one hold of the machine stays short; the next round (another call) goes on.
`pooled_measurements` reads every stored round of a seed back: per case and round the least
disturbed attempt, their step times pooled, and the per-round medians kept for the spread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ..torch.isolated import measure_isolated
from ..torch.quiet import Interference, wait_for_quiet
from ..torch.records import append_jsonl, load_measurements

SUITE = "cpu-random"
THREADS = (1, 2)
WARMUP, STEPS = 3, 5  # warm-up steps bring a fresh process's allocator to its steady state
ROUND_BUDGET_S = 420.0  # stop starting new cases after this long in one round
QUIET_IDLE, QUIET_MAX_WAIT_S = 0.85, 8.0  # short waits: many processes share this machine
DISTURBED_CORES, MAX_ATTEMPTS = 0.15, 2


@dataclass(frozen=True)
class CaseKey:
    """What identifies a measured case: network index, draw, kind, batch, threads, optimizer."""

    index: int
    draw: int
    kind: str
    batch: int
    threads: int
    optimizer: str

    @property
    def name(self) -> str:
        return f"r{self.index:02d}-{self.kind}-b{self.batch}-t{self.threads}"


def _note(m, key: str) -> str | None:
    for n in m.notes:
        if n.startswith(key + "="):
            return n.split("=", 1)[1]
    return None


def measure_round(cases: Sequence[tuple[CaseKey, Any]], seed: int, rnd: int, store: Path, profile_name: str,
                  per_layer: bool, wait: bool, say: Callable[[str], None], warmup: int = WARMUP,
                  steps: int = STEPS) -> int:
    """Measure each (CaseKey, graph) once (in round order) and append the records; returns cases measured."""
    order = list(cases) if rnd % 2 else list(reversed(cases))
    t0, done = time.perf_counter(), 0
    for key, graph in order:
        if time.perf_counter() - t0 > ROUND_BUDGET_S:
            say(f"round {rnd}: time budget used, {len(order) - done} cases left for the next round")
            break
        best = None
        for attempt in range(1, (MAX_ATTEMPTS if wait else 1) + 1):
            if wait:
                wait_for_quiet(QUIET_IDLE, QUIET_MAX_WAIT_S)
            with Interference() as inf:
                m = measure_isolated(graph, key.batch, threads=key.threads, warmup=warmup, steps=steps,
                                     optimizer=key.optimizer, per_layer=per_layer)
            others = round(inf.others_cores, 3) if inf.available else None
            m = m.model_copy(update={"notes": tuple(m.notes) + (
                f"suite={SUITE}", f"seed={seed}", f"case={key.name}", f"index={key.index}", f"draw={key.draw}",
                f"kind={key.kind}", f"round={rnd}", f"attempt={attempt}", f"other_processes_cores={others}",
                f"profile={profile_name}")})
            append_jsonl(store, m)
            best = m
            if others is None or others <= DISTURBED_CORES:
                break
        done += 1
        say(f"[round {rnd}] {key.name}: {best.median_s * 1e3:.1f} ms")
    return done


@dataclass(frozen=True)
class Pooled:
    """A case's stored measurements of one seed: pooled step times, per-round medians, per-layer times."""

    key: CaseKey
    step_times_s: tuple[float, ...]
    round_medians_s: tuple[float, ...]
    others_cores: float | None
    per_layer: tuple  # LayerTiming of the first round that has them


def stored_seeds(store: Path) -> list[int]:
    """Seeds with cpu-random records in `store`, in the order they were first measured."""
    seen: list[int] = []
    for m in load_measurements(store):
        s = _note(m, "seed")
        if _note(m, "suite") == SUITE and s is not None and int(s) not in seen:
            seen.append(int(s))
    return seen


def pooled_measurements(store: Path, seed: int) -> list[Pooled]:
    """Every stored case of `seed`: per round the least disturbed attempt; step times pooled over rounds."""
    per: dict[tuple[str, int], list] = {}
    keys: dict[str, CaseKey] = {}
    for m in load_measurements(store):
        if _note(m, "suite") != SUITE or _note(m, "seed") != str(seed):
            continue
        name = _note(m, "case")
        keys[name] = CaseKey(int(_note(m, "index")), int(_note(m, "draw")), _note(m, "kind"), m.batch, m.threads,
                             m.optimizer)
        o = _note(m, "other_processes_cores")
        per.setdefault((name, int(_note(m, "round"))), []).append((None if o in (None, "None") else float(o), m))
    out: dict[str, list] = {}
    for (name, _), ms in sorted(per.items(), key=lambda kv: kv[0][1]):
        out.setdefault(name, []).append(min(ms, key=lambda x: x[0] or 0.0))
    res = []
    for name, taken in out.items():
        others = [o for o, _ in taken if o is not None]
        layers = next((m.per_layer for _, m in taken if m.per_layer), ())
        res.append(Pooled(keys[name], tuple(t for _, m in taken for t in m.step_times_s),
                          tuple(m.median_s for _, m in taken), max(others) if others else None, layers))
    return sorted(res, key=lambda p: (p.key.index, p.key.threads))
