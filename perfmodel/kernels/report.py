"""Markdown + JSON report of the DeepBench kernel fit: error per class and per GPU, in-sample and held out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .deepbench import CLASSES, SHORT

TARGET_CLASS_MEDIAN = 0.10
TARGET_LOGO_MEDIAN = 0.15


def abs_errors(pred: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """|predicted / measured - 1| per row."""
    return np.abs(pred / measured - 1.0)


def summary(err: np.ndarray) -> dict:
    """Median, mean and p90 of absolute errors, and the count."""
    if err.size == 0:
        return {"n": 0, "median": None, "mean": None, "p90": None}
    return {"n": int(err.size), "median": float(np.median(err)), "mean": float(np.mean(err)),
            "p90": float(np.percentile(err, 90))}


def table(rows, pred: np.ndarray, measured: np.ndarray) -> dict:
    """Error summaries per class, per GPU, per (GPU, class), and pooled."""
    err = abs_errors(pred, measured)
    cls = np.array([r.cls for r in rows])
    arch = np.array([r.arch for r in rows])
    out = {"all": summary(err), "per_class": {}, "per_gpu": {}, "per_gpu_class": {}}
    for c in CLASSES:
        out["per_class"][c] = summary(err[cls == c])
    for a in sorted(set(arch)):
        out["per_gpu"][SHORT.get(a, a)] = summary(err[arch == a])
        out["per_gpu_class"][SHORT.get(a, a)] = {c: summary(err[(arch == a) & (cls == c)]) for c in CLASSES}
    return out


def algorithm_agreement(ctx, p) -> dict:
    """How often the fastest algorithm of the model equals cuDNN's forward choice in DeepBench, per GPU."""
    from .conv import conv_time_s
    from .fit import achievable, fitted_arch

    out: dict[str, list[int]] = {}
    for key, idx in ctx.groups.items():
        if key[0] != "conv_fwd":
            continue
        sub = [ctx.rows[i] for i in idx]
        shape = {k: np.array([r.shape[k] for r in sub]) for k in sub[0].shape}
        stack = ctx.stacks[key[2]].with_achievable(achievable(p, key[2]))
        arch = fitted_arch(ctx.archs[key[1]], p)
        _, algo, _ = conv_time_s(shape, "fwd", key[3], arch, stack)
        hit = [a.upper() == r.algorithm or (a.startswith("implicit") and r.algorithm.startswith("IMPLICIT"))
               for a, r in zip(algo, sub)]
        tally = out.setdefault(SHORT.get(key[1], key[1]), [0, 0])
        tally[0] += sum(hit)
        tally[1] += len(hit)
    return {g: {"agree": a, "rows": n, "fraction": a / n} for g, (a, n) in out.items()}


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _md_table(t: dict, title: str) -> list[str]:
    lines = [f"### {title}", "", "| class | rows | median | mean | p90 |", "|---|---|---|---|---|"]
    for c, s in t["per_class"].items():
        lines.append(f"| {c} | {s['n']} | {_pct(s['median'])} | {_pct(s['mean'])} | {_pct(s['p90'])} |")
    a = t["all"]
    lines += [f"| **all** | {a['n']} | {_pct(a['median'])} | {_pct(a['mean'])} | {_pct(a['p90'])} |", "",
              "| GPU | rows | median | mean | p90 | " + " | ".join(f"{c} median" for c in CLASSES) + " |",
              "|---|---|---|---|---|" + "---|" * len(CLASSES)]
    for g, s in t["per_gpu"].items():
        per = " | ".join(_pct(t["per_gpu_class"][g][c]["median"]) for c in CLASSES)
        lines.append(f"| {g} | {s['n']} | {_pct(s['median'])} | {_pct(s['mean'])} | {_pct(s['p90'])} | {per} |")
    return lines + [""]


def _targets(ins: dict, logo: dict | None) -> list[str]:
    lines = ["## Targets", "", "| target | value | met |", "|---|---|---|"]
    for c, s in ins["per_class"].items():
        ok = s["median"] is not None and s["median"] <= TARGET_CLASS_MEDIAN
        lines.append(f"| {c} median <= 10% (in-sample) | {_pct(s['median'])} | {'yes' if ok else '**no**'} |")
    if logo is not None:
        for g, s in logo["per_gpu"].items():
            ok = s["median"] <= TARGET_LOGO_MEDIAN
            lines.append(f"| {g} held out, median <= 15% | {_pct(s['median'])} | {'yes' if ok else '**no**'} |")
    return lines + [""]


def _worst(rows, pred, measured, n: int = 15) -> list[str]:
    err = pred / measured - 1.0
    order = np.argsort(-np.abs(err))[:n]
    lines = ["## Worst rows (in-sample)", "", "| GPU | dtype | kernel | measured ms | predicted ms | error |",
             "|---|---|---|---|---|---|"]
    for i in order:
        r = rows[i]
        lines.append(f"| {SHORT.get(r.arch, r.arch)} | {r.dtype} | {r.label} | {1e3 * measured[i]:.3f} | "
                     f"{1e3 * pred[i]:.3f} | {100 * err[i]:+.0f}% |")
    return lines + [""]


def write_report(folder: str | Path, ctx, params: dict, pred: np.ndarray, logo: np.ndarray | None,
                 logo_params: dict, notes: str = "") -> dict:
    """Write report.md and report.json into `folder`; return the JSON document."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ins = table(ctx.rows, pred, ctx.measured)
    held = table(ctx.rows, logo, ctx.measured) if logo is not None else None
    agree = algorithm_agreement(ctx, params)
    doc = {"source": "shared/published/deepbench_train_dev.csv (phase totals excluded)", "rows": len(ctx.rows),
           "in_sample": ins, "leave_one_gpu_out": held, "fitted_params": params,
           "leave_one_gpu_out_params": {SHORT.get(k, k): v for k, v in logo_params.items()},
           "conv_fwd_algorithm_agreement": agree}
    (folder / "report.json").write_text(json.dumps(doc, indent=1, sort_keys=True))
    md = ["# DeepBench development kernels: kernel-model fit", "",
          f"{len(ctx.rows)} kernel rows (phase totals excluded) on four GPUs. Regenerate with "
          "`python -m perfmodel.kernels.fit --report validation/reports/deepbench-dev`.", ""]
    md += [notes, ""] if notes else []
    md += _targets(ins, held) + _md_table(ins, "In-sample (fitted on all four GPUs)")
    if held is not None:
        md += _md_table(held, "Leave-one-GPU-out (each GPU predicted from parameters fitted on the other three)")
    md += ["## cuDNN forward-algorithm choice (model's fastest vs DeepBench's)", "",
           "| GPU | agree | rows |", "|---|---|---|"]
    md += [f"| {g} | {v['agree']} ({100 * v['fraction']:.0f}%) | {v['rows']} |" for g, v in agree.items()] + [""]
    md += ["## Fitted parameters (in-sample)", "", "| parameter | value |", "|---|---|"]
    md += [f"| {k} | {v:.4g} |" for k, v in sorted(params.items())] + [""]
    md += _worst(ctx.rows, pred, ctx.measured)
    (folder / "report.md").write_text("\n".join(md))
    return doc
