"""Fit the kernel model's physical constants to DeepBench rows; leave-one-GPU-out; write the report.

Fitted, never per row or per network: per GPU kind (consumer cards whose GPU Boost runs above the rated boost
clock vs datacenter cards held at or below it) one sustained clock over the rated boost clock, shared by the GPUs
of that kind (a free factor per GPU trades off against the stack fractions when a stack has one GPU); per GPU its
achieved fraction of DRAM bandwidth; per software stack (library release), the achievable fraction of an SM's peak
per kernel class, the per-kernel overhead (cuBLAS), the fixed cost of each kernel of a convolution call (cuDNN), the DRAM
fraction of its thin-GEMM kernel, the per-step latency of its RNN kernels and the DRAM fraction a recurrent step
reaches; per (stack, dtype) where a stack has rows of a dtype other than fp32 (DeepBench's
pseudo-FP16 on cuDNN 6), that dtype's own convolution and RNN fractions (cuDNN runs other kernels for it);
shared, a CTA's prologue in k steps and per all-reduce tier its achieved fraction of the link bandwidth and its
per-message latency. Each class is first fitted on its own rows, then all parameters together, minimising the
mean over classes of the mean absolute log error (a robust stand-in for the median absolute percentage error).
A GPU left out of the fit gets the clock factor of its kind and the mean DRAM fraction of the fitted GPUs of its
architecture family; a dtype without training rows takes the stack's general fractions.

    python -m perfmodel.kernels.fit --report validation/reports/deepbench-dev [--csv PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from .allreduce import Tier, ring_allreduce_s
from .conv import conv_time_s
from .deepbench import Row, arch_stack, groups, load_rows, stacked
from .gemm import gemm_time_s
from .rnn import rnn_time_s
from .schema import Achievable

# Stacks without DeepBench rows take the fitted achievable block of the stack with the same CUDA release
CARRY = {"pytorch-cuda12": "cuda8-cudnn6", "cuda8-cudnn5": "cuda8-cudnn6"}
PCIE3_X16_BPS = 15.75e9  # hardware_profiles/links/pcie3-x16.yaml, per direction after 128b/130b
IB_FDR_BPS = 54.5e9 / 8  # hardware_profiles/links/infiniband-fdr.yaml, 4x FDR after 64b/66b

# parameter name -> (initial value, lower bound, upper bound)
PARAMS: dict[str, tuple[float, float, float]] = {
    "mem": (0.75, 0.3, 1.0), "gemm": (0.85, 0.2, 1.0), "gemm_tn": (0.85, 0.2, 1.0), "conv_fwd": (0.8, 0.2, 1.0), "conv_bwd_data": (0.8, 0.2, 1.0),
    "conv_bwd_filter": (0.7, 0.1, 1.0), "winograd": (0.7, 0.1, 1.0), "winograd_bwd_data": (0.7, 0.1, 1.0),
    "winograd_bwd_filter": (0.7, 0.1, 1.0), "fft": (0.5, 0.05, 1.0),
    "rnn": (0.6, 0.05, 1.0), "cta_overhead_k": (32.0, 1.0, 1024.0), "kernel_overhead_s": (5e-6, 1e-6, 2e-4),
    "conv_overhead_s": (5e-6, 1e-6, 2e-4), "thin_gemm_bandwidth": (0.5, 0.05, 1.0),
    "rnn_step_overhead_s": (10e-6, 0.5e-6, 2e-4), "rnn_memory_bandwidth": (0.5, 0.05, 1.0),
    "intra_bw_fraction": (0.5, 0.05, 1.0), "intra_alpha_s": (10e-6, 0.5e-6, 1e-4),
    "inter_bw_fraction": (0.6, 0.05, 1.0), "inter_alpha_s": (10e-6, 0.5e-6, 1e-4),
}
STAGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {  # classes fitted -> parameters they fit
    "gemm": (("gemm",), ("gemm", "gemm_tn", "kernel_overhead_s", "cta_overhead_k", "clock:*",
                         "thin_gemm_bandwidth")),
    "conv": (("conv_fwd", "conv_bwd_data", "conv_bwd_filter"),
             ("conv_fwd", "conv_bwd_data", "conv_bwd_filter", "winograd", "winograd_bwd_data", "winograd_bwd_filter",
              "fft", "mem:*", "conv_overhead_s")),
    "rnn": (("rnn",), ("rnn", "rnn_step_overhead_s", "rnn_memory_bandwidth")),
    "allreduce": (("allreduce",), ("intra_bw_fraction", "intra_alpha_s", "inter_bw_fraction", "inter_alpha_s")),
}


# clock factor bounds: a datacenter card runs at most at its rated boost; a consumer card's GPU Boost may go higher
CLOCK_BOUNDS = {False: (1.0, 0.6, 1.0), True: (1.0, 1.0, 1.3)}
BOOSTING: dict[str, bool] = {}  # arch name -> boost_above_rated, filled by Context.of


FRACTIONS = ("gemm", "gemm_tn", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "winograd", "winograd_bwd_data",
             "winograd_bwd_filter", "fft", "rnn")
PER_STACK = FRACTIONS + ("kernel_overhead_s", "conv_overhead_s", "thin_gemm_bandwidth", "rnn_memory_bandwidth",
                         "rnn_step_overhead_s")
# per (stack, dtype) where a stack has rows of a dtype other than fp32: cuDNN's own kernels for that dtype
# (DeepBench's pseudo-FP16 convolutions and RNNs); cuBLAS's GEMM runs the same tiles for both (SgemmEx)
PER_DTYPE = ("conv_fwd", "conv_bwd_data", "conv_bwd_filter", "winograd", "winograd_bwd_data", "winograd_bwd_filter",
             "fft", "rnn", "rnn_memory_bandwidth")
BASE_DTYPE = "fp32"


def clock_key(arch: str) -> str:
    """The clock-factor parameter a GPU shares with the GPUs of its kind: 'clock:boost' for consumer cards whose
    GPU Boost runs above the rated boost clock, 'clock:rated' for datacenter cards held at or below it."""
    return "clock:boost" if BOOSTING.get(arch, False) else "clock:rated"


def bounds(name: str) -> tuple[float, float, float]:
    if name.startswith("clock:"):
        kind = name[6:]
        return CLOCK_BOUNDS[kind == "boost" if kind in ("boost", "rated") else BOOSTING.get(kind, False)]
    return PARAMS[name.split("@")[0].split(":")[0]]


def initial_params(archs=(), stacks=(), pairs=()) -> dict[str, float]:
    """Starting values: shared parameters, one clock factor per GPU, one compute fraction per class and stack,
    and per (stack, dtype) pair of `pairs` the PER_DTYPE ones."""
    p = {k: v[0] for k, v in PARAMS.items() if k not in PER_STACK and k != "mem"}
    p.update({clock_key(a): 1.0 for a in archs})
    p.update({f"mem:{a}": PARAMS["mem"][0] for a in archs})
    p.update({f"{c}@{s}": PARAMS[c][0] for c in PER_STACK for s in stacks})
    p.update({f"{c}@{s}/{d}": PARAMS[c][0] for c in PER_DTYPE for s, d in pairs})
    return p


def dtype_pairs(rows, train=None) -> list[tuple[str, str]]:
    """(stack, dtype) pairs of the training rows whose dtype is not the base fp32: they get PER_DTYPE parameters."""
    train = [True] * len(rows) if train is None else train
    return sorted({(r.stack, r.dtype) for r, t in zip(rows, train) if t and r.dtype != BASE_DTYPE})


def by_dtype(p: dict[str, float], stack: str) -> dict[str, dict[str, float]]:
    """{dtype: {class: value}} of the per-dtype parameters of `stack` in `p` (named class@stack/dtype)."""
    out: dict[str, dict[str, float]] = {}
    for k, v in p.items():
        c, _, rest = k.partition("@")
        s, _, d = rest.partition("/")
        if d and s == stack:
            out.setdefault(d, {})[c] = v
    return out


def achievable(p: dict[str, float], stack: str, source: str = "fitted") -> Achievable:
    """The Achievable block of software stack `stack` from a parameter set."""
    return Achievable(compute={c: p[f"{c}@{stack}"] for c in FRACTIONS}, memory_bandwidth=PARAMS["mem"][0],
                      kernel_overhead=p[f"kernel_overhead_s@{stack}"], conv_overhead=p[f"conv_overhead_s@{stack}"],
                      thin_gemm_bandwidth=p[f"thin_gemm_bandwidth@{stack}"],
                      rnn_memory_bandwidth=p[f"rnn_memory_bandwidth@{stack}"], cta_overhead_k=p["cta_overhead_k"],
                      rnn_step_overhead=p[f"rnn_step_overhead_s@{stack}"], by_dtype=by_dtype(p, stack),
                      source=source)


def fitted_arch(arch, p: dict[str, float]):
    """The arch with its fitted clock factor and DRAM fraction."""
    clock = p.get(f"clock:{arch.name}", p.get(clock_key(arch.name), 1.0))
    return arch.model_copy(update={"clock_factor": clock,
                                   "dram_fraction": p.get(f"mem:{arch.name}")})


def tiers(p: dict[str, float]) -> tuple[Tier, Tier]:
    """DeepBench's all-reduce tiers: PCIe 3.0 x16 inside a node (switches, QPI), FDR InfiniBand between nodes."""
    return (Tier(name="intra-node PCIe 3.0", bandwidth_Bps=PCIE3_X16_BPS * p["intra_bw_fraction"],
                 alpha_s=p["intra_alpha_s"]),
            Tier(name="FDR InfiniBand", bandwidth_Bps=IB_FDR_BPS * p["inter_bw_fraction"], alpha_s=p["inter_alpha_s"]))


@dataclass
class Context:
    """Rows with their groups and the loaded arch/stack files (built once, reused by every evaluation)."""

    rows: list[Row]
    groups: dict = field(default_factory=dict)
    archs: dict = field(default_factory=dict)
    stacks: dict = field(default_factory=dict)
    measured: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def of(cls, rows: list[Row]) -> "Context":
        a, s = arch_stack(rows)
        BOOSTING.update({k: v.boost_above_rated for k, v in a.items()})
        return cls(rows, groups(rows), a, s, np.array([r.measured_s for r in rows]))


def _group_time(key, sub: list[Row], arch, stack, p):
    cls, _, _, dtype, phase, cell, variant = key
    if cls == "gemm":
        kc = "gemm_tn" if variant == "TN" else "gemm"
        return gemm_time_s(stacked(sub, "M"), stacked(sub, "N"), stacked(sub, "K"), dtype, arch, stack, cls=kc)
    if cls.startswith("conv_"):
        shape = {k: stacked(sub, k) for k in sub[0].shape}
        return conv_time_s(shape, phase, dtype, arch, stack)[0]
    if cls == "rnn":
        return rnn_time_s(cell, phase, stacked(sub, "hidden"), stacked(sub, "batch"), stacked(sub, "timesteps"),
                          dtype, arch, stack)
    return ring_allreduce_s(stacked(sub, "size_bytes"), stacked(sub, "gpus"), stacked(sub, "nodes"), *tiers(p))


def predict(ctx: Context, p: dict[str, float], classes: tuple[str, ...] | None = None) -> np.ndarray:
    """Predicted seconds of every row (NaN for rows outside `classes`)."""
    out = np.full(len(ctx.rows), np.nan)
    for key, idx in ctx.groups.items():
        if classes is not None and key[0] not in classes:
            continue
        stack = ctx.stacks[key[2]].with_achievable(achievable(p, key[2]))
        arch = fitted_arch(ctx.archs[key[1]], p)
        out[idx] = _group_time(key, [ctx.rows[i] for i in idx], arch, stack, p)
    return out


def _loss(ctx: Context, p: dict[str, float], classes: tuple[str, ...], mask: np.ndarray) -> float:
    pred = predict(ctx, p, classes)
    err = np.abs(np.log(pred[mask] / ctx.measured[mask]))
    return float(np.mean(err)) if err.size else 0.0


def pattern_search(f, x0: dict[str, float], names: tuple[str, ...], rounds: int = 6) -> dict[str, float]:
    """Coordinate search in log space with shrinking steps, inside PARAMS' bounds."""
    x, best = dict(x0), f(x0)
    step = 0.4
    for _ in range(rounds):
        improved = True
        while improved:
            improved = False
            for n in names:
                lo, hi = bounds(n)[1], bounds(n)[2]
                for d in (step, -step):
                    trial = dict(x)
                    trial[n] = float(min(hi, max(lo, x[n] * math.exp(d))))
                    if trial[n] == x[n]:
                        continue
                    v = f(trial)
                    if v < best - 1e-9:
                        x, best, improved = trial, v, True
                        break
        step /= 2
    return x


def _names(names: tuple[str, ...], archs, stacks, pairs=()) -> tuple[str, ...]:
    """Stage parameter names with the per-GPU, per-stack and per-(stack, dtype) ones spelled out."""
    out: list[str] = []
    for n in names:
        if n == "clock:*":
            out += sorted({clock_key(a) for a in archs})
        elif n == "mem:*":
            out += [f"mem:{a}" for a in sorted(archs)]
        elif n in PER_STACK:
            out += [f"{n}@{s}" for s in sorted(stacks)]
            out += [f"{n}@{s}/{d}" for s, d in pairs if n in PER_DTYPE]
        else:
            out.append(n)
    return tuple(out)


MULTI_START = {"rnn": (("rnn", (0.25, 0.9)), ("rnn_memory_bandwidth", (0.2, 0.8)))}  # stages with two basins


def _starts(stage: str, p: dict[str, float], stacks) -> list[dict[str, float]]:
    """Starting points of a stage: `p`, plus every corner of MULTI_START's values (per-stack names spelled out)."""
    out = [p]
    for combo in np.array(np.meshgrid(*[v for _, v in MULTI_START.get(stage, ())])).T.reshape(-1, len(
            MULTI_START.get(stage, ()))) if stage in MULTI_START else ():
        q = dict(p)
        for (name, _), value in zip(MULTI_START[stage], combo):
            q.update({k: float(value) for k in q if k.startswith(f"{name}@")})
        out.append(q)
    return out


def fit(ctx: Context, train: np.ndarray | None = None) -> dict[str, float]:
    """Fit every stage on the rows selected by `train` (all rows by default), then all parameters together."""
    train = np.ones(len(ctx.rows), bool) if train is None else train
    archs = {r.arch for r, t in zip(ctx.rows, train) if t}
    stacks = sorted(ctx.stacks)
    pairs = dtype_pairs(ctx.rows, train)
    p = initial_params(archs, stacks, pairs)
    cls_of = np.array([r.cls for r in ctx.rows])
    masks = {}
    for stage, (classes, names) in STAGES.items():
        mask = train & np.isin(cls_of, classes)
        if mask.any():
            loss = lambda q: _loss(ctx, q, classes, mask)  # noqa: E731
            p = min((pattern_search(loss, s, _names(names, archs, stacks, pairs))
                     for s in _starts(stage, p, stacks)),
                    key=loss)
            masks[classes] = mask
    every = tuple(n for _, names in STAGES.values() for n in _names(names, archs, stacks, pairs)
                  if not n.startswith(("kernel_overhead_s", "conv_overhead_s", "clock:", "mem:")))
    joint = lambda q: float(np.mean([_loss(ctx, q, c, m) for c, m in masks.items()]))  # noqa: E731
    p = pattern_search(joint, p, every, rounds=3)
    return {**p, **{f"clock:{a}": p[clock_key(a)] for a in archs}}  # each GPU's factor, spelled out


def held_out_clock(p: dict[str, float], arch: str) -> float:
    """Clock factor of a GPU not fitted: the factor fitted for its kind (boost_above_rated), else the mean."""
    pool = [v for k, v in p.items() if k in ("clock:boost", "clock:rated")]
    return p.get(clock_key(arch), float(np.mean(pool)) if pool else 1.0)


def held_out_memory(ctx: Context, p: dict[str, float], arch: str) -> float:
    """DRAM fraction of a GPU not fitted: the mean over the fitted GPUs of its architecture family (the same
    memory controller and DRAM generation, e.g. Maxwell GDDR5), else over all fitted GPUs."""
    fam = ctx.archs[arch].family
    same = [v for k, v in p.items() if k.startswith("mem:") and ctx.archs[k[4:]].family == fam]
    pool = same or [v for k, v in p.items() if k.startswith("mem:")]
    return float(np.mean(pool)) if pool else PARAMS["mem"][0]


def leave_one_gpu_out(ctx: Context, progress=None) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """Predictions of each GPU's rows from parameters fitted on the other GPUs' rows, and those parameters.
    progress(label) is called before each of the fits."""
    archs = np.array([r.arch for r in ctx.rows])
    pred = np.full(len(ctx.rows), np.nan)
    fitted = {}
    names = sorted(set(archs))
    for i, a in enumerate(names):
        if progress:
            progress(f"leave-one-GPU-out {i + 1}/{len(names)}: fitting without {a}")
        p = fit(ctx, archs != a)
        p[f"clock:{a}"] = held_out_clock(p, a)
        p[f"mem:{a}"] = held_out_memory(ctx, p, a)
        fitted[a] = p
        held = archs == a
        pred[held] = predict(ctx, p)[held]
    return pred, fitted


def main(argv: list[str] | None = None) -> int:
    from .report import write_report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", default="validation/reports/deepbench-dev")
    ap.add_argument("--csv", default=None)
    ap.add_argument("--no-logo", action="store_true", help="skip leave-one-GPU-out")
    ap.add_argument("--write-profiles", action="store_true",
                    help="write the fitted constants into the gpu_arch and stacks YAML files")
    args = ap.parse_args(argv)
    rows = load_rows(args.csv) if args.csv else load_rows()
    ctx = Context.of(rows)
    t0 = time.perf_counter()

    def say(line: str) -> None:  # progress on stderr: the fits take a few minutes in all
        print(f"[{time.perf_counter() - t0:5.0f} s] {line}", file=sys.stderr, flush=True)

    say(f"fitting {len(rows)} rows on all {len(ctx.archs)} GPUs")
    p = fit(ctx)
    pred = predict(ctx, p)
    logo, logo_params = (None, {}) if args.no_logo else leave_one_gpu_out(ctx, say)
    write_report(args.report, ctx, p, pred, logo, logo_params)
    say(f"report written to {args.report}")
    if args.write_profiles:
        from .writeback import write_fitted

        write_fitted(p, sorted(ctx.archs), sorted(ctx.stacks), carry=CARRY)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
