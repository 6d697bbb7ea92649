"""oneDNN's fused LSTM on a CPU: one GEMM efficiency and one gate-math rate per thread count (no torch).

PyTorch runs nn.LSTM on a CPU as oneDNN's fused RNN primitive: per layer, GEMMs (the input projection of all steps,
one recurrent [batch, H] x [H, 4H] GEMM per step, their gradients) and, per step, the gate nonlinearities and state
update over [batch, H] tensors inside the same primitive. The GEMM work grows with H (input width + H) per hidden
unit and step, the gate work does not, so a small hidden size spends a larger share of its time in gate math: one
flat efficiency over the GEMM FLOPs (what this module replaced) was 25-50% off between H = 64 and H = 400. Each
calibration sample (forward + backward of one nn.LSTM layer, every buffer below the fresh-buffer size so nothing is
faulted) is priced as the engine prices it:

    time = GEMM FLOPs / (e x matrix rate at t threads) + gate FLOPs / (r x thread speedup) + kernels x overhead,

GEMM and gate FLOPs and kernels as the LSTM cost rule counts them (ops.recurrent: the backward's gate math is
CELL_BWD_FACTOR x the forward's). e (Efficiency.curves["rnn/gemm/lstm@t<n>"], flat) and r (one core's gate-math
FLOP/s, Efficiency.elementwise["elementwise/rnn-cell/lstm[.backward]@t<n>"]) are solved by least squares on
relative error per thread count. Only these microbenchmarks are fitted; no validation network.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

from ..hardware.traits import THREADS_SEP  # "<key>@t<threads>": fitted at that thread count only

LSTM_KEY, LSTM_ALIASES = "rnn/gemm/lstm", ("rnn/gemm/recurrent/lstm",)  # the GEMM keys of an LSTM (ops.recurrent)
CELL_KEY = "elementwise/rnn-cell/lstm"  # the gate-math key of an LSTM (ops.recurrent)
_LABEL = re.compile(r"^lstm n(\d+) t(\d+) f(\d+) h(\d+)$")


def lstm_label(batch: int, steps: int, width: int, hidden: int) -> str:
    """The calibration label of one nn.LSTM layer's forward + backward (batch, steps, input width, hidden)."""
    return f"lstm n{batch} t{steps} f{width} h{hidden}"


def lstm_work(label: str) -> tuple[float, float, float] | None:
    """(GEMM FLOPs, gate FLOPs, kernels) of the forward + backward of the sample `label` (input needing
    gradients, so the input-gradient GEMM counts), as the LSTM cost rule counts them; None for other labels."""
    m = _LABEL.match(label)
    if not m:
        return None
    nb, steps, width, hidden = (int(g) for g in m.groups())
    from ..graph.io import NetworkBuilder
    from ..ops.base import COST_RULES, STAGES

    b = NetworkBuilder("calibrate-lstm")
    b.input("x", shape=[steps, width])
    b.layer("lstm", "rnn", hidden=hidden)
    cost = COST_RULES["lstm"](b.build()["rnn"], nb, 4)
    works = [w for st in STAGES for w in cost.stage(st)]
    gemm = sum(w.flops for w in works if w.family == "matrix")
    gate = sum(w.flops for w in works if (w.efficiency_key or "").startswith(CELL_KEY))
    return float(gemm), float(gate), float(sum(w.kernels for w in works))


def _solve(rows: list[tuple[float, float, float]]) -> tuple[float, float] | None:
    """(x, y) >= 0 minimising sum ((a x + c y) / t - 1)^2 over rows (a, c, t): both terms when both come out
    positive, else the better of one term alone; None when nothing positive fits."""
    a = np.array([[r[0] / r[2], r[1] / r[2]] for r in rows])
    one = np.ones(len(rows))
    both, *_ = np.linalg.lstsq(a, one, rcond=None)
    if np.all(both > 0):
        return float(both[0]), float(both[1])
    fits = []
    for col in (0, 1):
        v = float(one @ a[:, col] / (a[:, col] @ a[:, col])) if a[:, col].any() else 0.0
        if v > 0:
            xy = (v, 0.0) if col == 0 else (0.0, v)
            fits.append((float(np.sum((a @ np.array(xy) - 1.0) ** 2)), xy))
    return min(fits)[1] if fits else None


def fit_lstm(samples: Sequence, res) -> tuple[dict[str, list], dict[str, float], list[str]]:
    """From the LSTM samples (FitResult `res` for rates and overhead): (curves: the flat GEMM efficiency under the
    LSTM GEMM keys, pooled and per thread count; per-core gate rates under CELL_KEY and CELL_KEY.backward; notes
    with each thread count's fit and its residual). Empty without samples."""
    per_t: dict[int, list[tuple[float, float, float]]] = {}
    for s in samples:
        w = lstm_work(s.label) if s.ekey == LSTM_KEY else None
        if w is None:
            continue
        gemm, gate, kernels = w
        busy = s.time_s - kernels * res.kernel_overhead_s
        if busy > 0:
            per_t.setdefault(s.threads, []).append((gemm / res.matrix_rate(s.threads), gate / res.speedup(s.threads), busy))
    curves: dict[str, list] = {}
    rates: dict[str, float] = {}
    notes: list[str] = []
    effs, gates = [], []
    for t, rows in sorted(per_t.items()):
        xy = _solve(rows)
        if xy is None:
            continue
        eff = min(1.0, 1.0 / xy[0]) if xy[0] > 0 else 1.0
        rate = 1.0 / xy[1] if xy[1] > 0 else None
        errs = [abs((r[0] / eff + (r[1] / rate if rate else 0.0)) / r[2] - 1.0) for r in rows]
        notes.append(f"fused LSTM at {t} thread(s), {len(rows)} samples: GEMM efficiency {eff:.3f}, gate math "
                     + (f"{rate / 1e9:.2f} GFLOP/s per core" if rate else "not separable")
                     + f"; residual median {100 * float(np.median(errs)):.1f}%, worst {100 * max(errs):.1f}%")
        effs.append(eff)
        curves[f"{LSTM_KEY}{THREADS_SEP}{t}"] = [(1.0, round(eff, 4))]
        if rate:
            gates.append(rate)
            for k in (CELL_KEY, CELL_KEY + ".backward"):
                rates[f"{k}{THREADS_SEP}{t}"] = rate
    if effs:
        curves[LSTM_KEY] = [(1.0, round(math.exp(sum(map(math.log, effs)) / len(effs)), 4))]
    if gates:
        pooled = math.exp(sum(map(math.log, gates)) / len(gates))
        rates.update({CELL_KEY: pooled, CELL_KEY + ".backward": pooled})
    if len(per_t) < 2:  # one thread count: no per-thread entries (as the other calibrated curves)
        curves = {k: v for k, v in curves.items() if THREADS_SEP not in k}
        rates = {k: v for k, v in rates.items() if THREADS_SEP not in k}
    for name in [k for k in curves if k.split(THREADS_SEP)[0] == LSTM_KEY]:
        for alias in LSTM_ALIASES:
            curves[alias + name[len(LSTM_KEY):]] = list(curves[name])
    return curves, rates, notes


def add_lstm_fit(samples: Sequence, res) -> None:
    """fit_lstm's curves, gate rates and notes added to the FitResult `res` (its elementwise rates, keyed curves,
    sample counts and notes)."""
    curves, rates, notes = fit_lstm(samples, res)
    res.keyed_curves.update(curves)
    if rates:
        res.elementwise = {**(res.elementwise or {}), **rates}
        res.n_samples[LSTM_KEY] = sum(1 for s in samples if s.ekey == LSTM_KEY)
    res.notes.extend(notes)


def lstm_sample_time(s, res) -> float | None:
    """The fitted profile's time of an LSTM sample (as fit_lstm prices it), None for other samples or when the
    profile has no LSTM fit."""
    w = lstm_work(s.label) if s.ekey == LSTM_KEY else None
    if w is None:
        return None
    curve = res.keyed_curves.get(f"{LSTM_KEY}{THREADS_SEP}{s.threads}") or res.keyed_curves.get(LSTM_KEY)
    table = res.elementwise or {}
    rate = table.get(f"{CELL_KEY}{THREADS_SEP}{s.threads}") or table.get(CELL_KEY)
    if not curve:
        return None
    gemm, gate, kernels = w
    t = gemm / (res.matrix_rate(s.threads) * curve[0][1])
    if rate:
        t += gate / (rate * res.speedup(s.threads))
    return t + kernels * res.kernel_overhead_s
