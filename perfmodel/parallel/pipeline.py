"""Pipeline parallelism: contiguous layer partition balanced by predicted time; GPipe and 1F1B schedules.

Partition: layers (in topological order) are cut into `pp` contiguous, non-empty stages minimising
the largest stage time (forward + backward per micro-batch, tensor-parallel collectives included);
solved by bisection on the bottleneck value with a greedy feasibility check, then rebalanced.

Schedules, with per-micro-batch stage times c_s = f_s + b_s, m micro-batches and x_s the transfer
time of the activations (or their gradients) across boundary s:

- 1F1B (PipeDream-Flush, Narayanan et al. 2021): T = (m - 1) cycle + sum_s c_s + 2 sum_s x_s, with
  cycle = max(max_s c_s, max_s x_s, (sum_s c_s + 2 sum_s x_s) / min(m, pp)) (transfers overlap compute in
  the steady state; the fill and the drain each cross every boundary once). The last term is the round
  trip: stage 0 holds at most pp micro-batches in flight, and micro-batch i's backward reaches it only after
  every stage's forward and backward of i and 2 transfers per boundary, so stage 0 can start at most
  min(m, pp) micro-batches per round trip (`round_trip_cycle`; measured on two emulated nodes, cluster-emu:
  with pp = 2 and x ~ 0.6 c a step takes about (c_0 + c_1 + 2x) / 2 per micro-batch, not max(c_s, x));
- GPipe (Huang et al. 2019): all forwards, then all backwards:
  T = (m - 1) (max_s f_s + max_s b_s) + sum_s c_s + 2 sum_s x_s.

For equal stages without transfers both give T = (m + pp - 1) c, a bubble fraction (pp - 1)/(m + pp - 1).
The bubble reported is T minus the busiest stage's work (m c_max) minus the exposed transfers.
1F1B keeps at most pp - s micro-batches of activations on stage s; GPipe keeps all m.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import InputError


def partition(weights: Sequence[float], stages: int) -> tuple[tuple[int, int], ...]:
    """Cut `weights` into `stages` contiguous non-empty ranges [start, end) minimising the largest sum."""
    n = len(weights)
    if stages < 1:
        raise InputError(f"pipeline stages must be >= 1, got {stages}")
    if stages > n:
        raise InputError(f"cannot cut {n} layers into {stages} pipeline stages (at most one stage per layer)")
    if stages == 1:
        return ((0, n),)
    c = np.concatenate(([0.0], np.cumsum(np.maximum(0.0, np.asarray(weights, dtype=float)))))
    edges = _balanced(c.tolist(), stages)
    return tuple((edges[k], edges[k + 1]) for k in range(stages))


def cut_cross_bytes(output: Sequence[float], sources: Sequence[Sequence[int]]) -> np.ndarray:
    """Bytes crossing a cut before layer k (k = 0..n): outputs of layers i < k read by some layer j >= k, each once.

    The bytes crossing a cut do not depend on the other cuts (an output read two stages later crosses both
    boundaries), so they are one array over the cut positions (the same numbers as stages._cross_bytes).
    """
    n = len(output)
    last = np.arange(n)
    for j, srcs in enumerate(sources):
        for i in srcs:
            if j > last[i]:
                last[i] = j
    out = np.asarray(output, dtype=float)
    live = last > np.arange(n)
    diff = np.zeros(n + 2)
    np.add.at(diff, np.arange(n)[live] + 1, out[live])
    np.add.at(diff, last[live] + 1, -out[live])
    return np.cumsum(diff)[: n + 1]


def _min_transfer_cut(C: np.ndarray, X: list[np.ndarray], stages: int, M: float, head: np.ndarray):
    """Cut points minimising the summed boundary transfer time plus head[k1] (stage 0 = [0, k1)) with every
    stage's compute and every transfer <= M (the 1F1B cycle bound); None when no cut fits.

    dp_s[k] = min over j in [lo(k), k) of dp_{s-1}[j] + x_{s-1}[j], lo(k) the first start whose stage fits
    under M: range minima by a sparse table whose query levels are the same for every stage."""
    n = len(C) - 1
    lim = M + M * 1e-12
    ks = np.arange(n + 1)
    lo = np.maximum(np.searchsorted(C, C - lim, side="left"), 1)
    length = ks - lo
    ok = length > 0
    lv = np.zeros(n + 1, dtype=np.int64)
    lv[ok] = np.floor(np.log2(length[ok])).astype(np.int64)
    top = int(lv.max()) if ok.any() else 0
    right = np.where(ok, ks - (1 << lv), 0)
    left = np.where(ok, lo, 0)
    dp = np.where(C <= lim, head, np.inf)
    dp[0] = np.inf
    gs = []
    for s in range(1, stages):
        x = X[s - 1]
        g = np.where(x <= lim, dp + x, np.inf)
        g[0] = np.inf
        g[n] = np.inf
        gs.append(g)
        table = np.full((top + 1, n + 1), np.inf)
        table[0] = g
        span = 1
        for L in range(1, top + 1):
            table[L, : n + 1 - 2 * span] = np.minimum(table[L - 1, : n + 1 - 2 * span],
                                                      table[L - 1, span: n + 1 - span])
            span *= 2
        dp = np.where(ok, np.minimum(table[lv, left], table[lv, right]), np.inf)
    if not np.isfinite(dp[n]):
        return None
    cuts = [n]
    k = n
    for g in reversed(gs):  # the start j of the stage ending at k: a minimiser of g over [lo(k), k)
        j = int(lo[k]) + int(np.argmin(g[lo[k]:k]))
        cuts.append(j)
        k = j
    return [0] + cuts[::-1]


def _balanced(C: list[float], stages: int) -> list[int]:
    """Edges of a cut whose largest stage (prefix sums C) is within 1e-9 of the least possible: bisection on the
    bound with a greedy fill by binary search (a starting point for best_partition)."""
    n = len(C) - 1

    def edges_for(limit: float) -> list[int] | None:
        edges = [0]
        for s in range(stages - 1):
            a = edges[-1]
            e = bisect_right(C, C[a] + limit, a + 1, n - (stages - 1 - s) + 1) - 1
            edges.append(max(e, a + 1))
        edges.append(n)
        return edges if C[n] - C[edges[-2]] <= limit * (1 + 1e-12) else None

    lo = max(C[i + 1] - C[i] for i in range(n))
    hi = C[n]
    best = edges_for(hi)
    while hi - lo > 1e-9 * hi:
        mid = (lo + hi) / 2
        e = edges_for(mid)
        if e is None:
            lo = mid
        else:
            hi, best = mid, e
    assert best is not None
    return best


def best_partition(f: Sequence[float], b: Sequence[float], X: Sequence[Sequence[float]], m: int,
                   schedule: str = "1f1b", max_steps: int = 200, k_acc: int = 1,
                   tail: Callable[[Sequence[int], PipelineTiming, float], float] | None = None,
                   head: Sequence[float] | None = None) -> tuple[tuple[int, int], ...]:
    """Contiguous cut of per-layer times (f + b per micro-batch) into len(X) + 1 stages minimising the predicted
    pipeline time of schedule_time(), transfers included: X[s][k] is the time to send the activations of a cut
    before layer k across boundary s (one direction, one micro-batch).

    1F1B: T = (m - 1) max(M, (sum c + 2 X) / min(m, pp)) + sum c + 2 X with M = max_s max(c_s, x_{s-1}, x_s)
    and X = sum x; sum c does not depend on the cut and T grows with M and X, so
    the optimum lies on the Pareto frontier of (bottleneck M, transfer sum X); every frontier point is found
    exactly by a min-transfer dynamic programme under the bound M (M lowered below the last point's bottleneck
    each step), starting from the largest M that could still beat the compute-balanced cut. The result is the
    exact minimum, so it can only fall when a device or a link gets faster. GPipe's time is evaluated exactly
    on the same candidates.

    `tail(edges, timing, limit)`: what the iteration adds after k_acc pipelines (each stage's optimizer step and copies
    after its last backward, minus how much earlier that backward ends), so the objective is the glue's
    k_acc T + tail; `head[k]` (a lower bound of that tail when stage 0 = [0, k): its own optimizer step) enters
    the dynamic programme, so the frontier holds the cuts that trade a smaller first stage for its step.
    """
    stages = len(X) + 1
    fw = np.asarray(f, dtype=float)
    bw = np.asarray(b, dtype=float)
    n = len(fw)
    if stages == 1 or stages > n:
        return partition((fw + bw).tolist(), stages)  # one stage, or the error for too many stages
    Cf = np.concatenate(([0.0], np.cumsum(fw)))
    Cb = np.concatenate(([0.0], np.cumsum(bw)))
    C = Cf + Cb
    base = _balanced(C.tolist(), stages)
    Xa = [np.asarray(x, dtype=float) for x in X]
    k_acc = max(1, k_acc)
    hd = np.zeros(n + 1) if head is None else np.asarray(head, dtype=float) / (2 * k_acc)

    def cost(edges, bound: float = np.inf) -> tuple[float, float]:
        """(the objective per pipeline: T + tail / k_acc, the 1F1B bottleneck cycle); the tail (>= 0) is
        left out when T alone already reaches `bound`."""
        fs = [Cf[edges[i + 1]] - Cf[edges[i]] for i in range(stages)]
        bs = [Cb[edges[i + 1]] - Cb[edges[i]] for i in range(stages)]
        xs = [float(Xa[i][edges[i + 1]]) for i in range(stages - 1)]
        timing = schedule_time(fs, bs, xs, m, schedule)
        t = timing.total_s
        if tail is not None and t < bound:
            t += max(0.0, tail(edges, timing, (bound - t) * k_acc * (1 + 1e-9))) / k_acc
        cyc = max(max(fs[i] + bs[i] for i in range(stages)), max(xs))
        return t, cyc

    best_edges = base
    best_t, _ = cost(best_edges)
    if m == 1:
        M = np.inf
    else:
        M = (best_t - (C[n] - C[0])) / (m - 1) * (1 + 1e-9)
    for _ in range(max_steps):
        edges = _min_transfer_cut(C, Xa, stages, M, hd)
        if edges is None:
            break
        t, cyc = cost(edges, best_t)
        if t < best_t * (1 - 1e-12):
            best_t, best_edges = t, edges
        if m == 1 or not cyc > 0:
            break
        M = cyc * (1 - 1e-9)
    return tuple((best_edges[i], best_edges[i + 1]) for i in range(stages))


@dataclass(frozen=True)
class PipelineTiming:
    schedule: str
    microbatches: int
    stage_forward_s: tuple[float, ...]
    stage_backward_s: tuple[float, ...]
    transfer_s: tuple[float, ...]  # per boundary, one micro-batch, one direction
    total_s: float  # fill + steady state + drain, for m micro-batches
    critical_stage: int  # the stage with the most work per micro-batch
    exposed_transfer_s: float
    bubble_s: float
    last_backward_end_s: tuple[float, ...]  # per stage: when its last backward finishes

    @property
    def bubble_fraction(self) -> float:
        return self.bubble_s / self.total_s if self.total_s > 0 else 0.0


def round_trip_cycle(stage_compute: Sequence[float], transfer: Sequence[float], inflight: float,
                     v: int = 1) -> float:
    """1F1B's steady-state period bound from one micro-batch's round trip: (sum c + 2 v sum x) / inflight.

    Every stage's forward and backward of a micro-batch and two crossings of every boundary (v of each with
    v interleaved chunks per rank) lie between its forward and its backward on stage 0, which keeps only
    `inflight` micro-batches in flight (min(m, pp) for 1F1B)."""
    return (sum(stage_compute) + 2.0 * v * sum(transfer)) / max(1.0, inflight)


def schedule_time(fwd: Sequence[float], bwd: Sequence[float], transfer: Sequence[float], m: int,
                  schedule: str = "1f1b") -> PipelineTiming:
    """Time of m micro-batches through the stages (see the module docstring)."""
    pp = len(fwd)
    if len(bwd) != pp or len(transfer) != max(0, pp - 1):
        raise InputError("need forward and backward times per stage and one transfer time per boundary")
    if m < 1:
        raise InputError(f"micro-batches must be >= 1, got {m}")
    if schedule not in ("1f1b", "gpipe"):
        raise InputError(f"schedule must be '1f1b' or 'gpipe', got {schedule!r}")
    c = [f + b for f, b in zip(fwd, bwd)]
    crit = max(range(pp), key=lambda s: c[s])
    fill = 2 * sum(transfer)
    if schedule == "1f1b":
        cycles = [max(c[s], transfer[s - 1] if s > 0 else 0.0, transfer[s] if s < pp - 1 else 0.0) for s in range(pp)]
        steady = (m - 1) * max(max(cycles), round_trip_cycle(c, transfer, min(m, pp)))
        steady_compute = (m - 1) * max(c)
    else:
        fx = [max(fwd[s], transfer[s - 1] if s > 0 else 0.0, transfer[s] if s < pp - 1 else 0.0) for s in range(pp)]
        bx = [max(bwd[s], transfer[s - 1] if s > 0 else 0.0, transfer[s] if s < pp - 1 else 0.0) for s in range(pp)]
        steady = (m - 1) * (max(fx) + max(bx))
        steady_compute = (m - 1) * (max(fwd) + max(bwd))
    total = steady + sum(c) + fill
    exposed = fill + (steady - steady_compute)
    bubble = max(0.0, total - m * c[crit] - exposed)
    # the last micro-batch's backward runs from the last stage down to stage 0
    ends = []
    t = total
    for s in range(pp):
        ends.append(t)
        if s < pp - 1:
            t -= bwd[s] + transfer[s]
    return PipelineTiming(schedule, m, tuple(fwd), tuple(bwd), tuple(transfer), total, crit, exposed, bubble,
                          tuple(ends))


def inflight_microbatches(schedule: str, pp: int, m: int, stage: int) -> int:
    """Micro-batches whose activations a stage holds at once."""
    if schedule == "gpipe":
        return m
    return max(1, min(m, pp - stage))
