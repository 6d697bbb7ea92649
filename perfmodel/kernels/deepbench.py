"""Reading DeepBench training-kernel rows (shared/published/deepbench_train_dev.csv) into kernel-model inputs."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .schema import GpuArch, SoftwareStack

# hardware column -> (arch file, stack file); the stack follows the workbook's CUDA/cuDNN versions
GPUS = {
    "NVIDIA GeForce GTX Titan X (Maxwell)": ("gm200-titan-x", "cuda75-cudnn5"),
    "NVIDIA Tesla M40": ("gm200-m40", "cuda75-cudnn5"),
    "NVIDIA GeForce GTX 1080 Ti": ("gp102-gtx-1080ti", "cuda8-cudnn6"),
    "NVIDIA Tesla P100 (form factor not stated in results file)": ("gp100-p100-pcie", "cuda8-cudnn6"),
}
SHORT = {"gm200-titan-x": "Titan X (Maxwell)", "gm200-m40": "M40", "gp102-gtx-1080ti": "GTX 1080 Ti",
         "gp100-p100-pcie": "P100"}
CLASSES = ("gemm", "conv_fwd", "conv_bwd_data", "conv_bwd_filter", "rnn", "allreduce")
DEFAULT_CSV = Path(__file__).resolve().parents[2].parent / "shared" / "published" / "deepbench_train_dev.csv"


@dataclass(frozen=True)
class Row:
    """One measured kernel: its class, the arch and stack names, dtype, shape and measured seconds."""

    cls: str
    arch: str
    stack: str
    dtype: str
    shape: dict
    phase: str
    measured_s: float
    label: str
    algorithm: str = ""


def _f(x: str) -> float:
    return float(x) if x not in ("", None) else 0.0


def _dtype(precision: str) -> str:
    return "fp16_io_fp32_math" if precision.startswith("fp16_io") else precision


def _row(r: dict) -> Row | None:
    arch, stack = GPUS[r["hardware"]]
    op, phase, dt = r["op"], r["phase"], _dtype(r["precision"])
    t = _f(r["value"]) * 1e-3
    if phase.startswith("total") or t <= 0:
        return None  # sums of the phases, not kernels of their own
    if op == "gemm":
        shape = {"M": _f(r["M"]), "N": _f(r["N"]), "K": _f(r["K"]), "ta": r["a_transpose"], "tb": r["b_transpose"]}
        return Row("gemm", arch, stack, dt, shape, phase, t, f"gemm {r['M']}x{r['N']}x{r['K']} {r['a_transpose']}{r['b_transpose']}")
    if op == "conv2d_nchw":
        shape = {"N": _f(r["batch_size"]), "C": _f(r["C"]), "H": _f(r["H"]), "W": _f(r["W"]), "K": _f(r["K_filters"]),
                 "R": _f(r["R_filter_h"]), "S": _f(r["S_filter_w"]), "pad_h": _f(r["pad_h"]), "pad_w": _f(r["pad_w"]),
                 "stride_h": _f(r["stride_h"]), "stride_w": _f(r["stride_w"]), "groups": 1.0}
        label = (f"conv {phase} W{r['W']} H{r['H']} C{r['C']} N{r['batch_size']} K{r['K_filters']} "
                 f"{r['S_filter_w']}x{r['R_filter_h']} s{r['stride_w']}")
        return Row(f"conv_{phase}", arch, stack, dt, shape, phase, t, label, r["algorithm"])
    if op.startswith("rnn_"):
        cell = op[4:]
        shape = {"cell": cell, "hidden": _f(r["hidden_units"]), "batch": _f(r["batch_size"]),
                 "timesteps": _f(r["timesteps"])}
        label = f"{cell} {phase} H{r['hidden_units']} B{r['batch_size']} T{r['timesteps']}"
        return Row("rnn", arch, stack, dt, shape, phase, t, label)
    if op == "allreduce":
        shape = {"size_bytes": 4 * _f(r["size_floats"]), "gpus": _f(r["num_devices"]), "nodes": _f(r["num_nodes"])}
        return Row("allreduce", arch, stack, dt, shape, phase, t, f"allreduce {r['size_floats']} floats x{r['num_devices']}")
    return None


def load_rows(path: str | Path = DEFAULT_CSV) -> list[Row]:
    """All kernel rows of the CSV (phase totals dropped)."""
    with open(path, newline="") as fh:
        rows = [_row(r) for r in csv.DictReader(fh)]
    return [r for r in rows if r is not None]


def stacked(rows: list[Row], key: str) -> np.ndarray:
    """The numeric shape field `key` of every row as one array."""
    return np.array([r.shape[key] for r in rows], dtype=float)


def groups(rows: list[Row]) -> dict[tuple, list[int]]:
    """Row indices grouped by what is evaluated together: (class, arch, stack, dtype, phase, cell, transposes)."""
    out: dict[tuple, list[int]] = {}
    for i, r in enumerate(rows):
        variant = r.shape.get("ta", "") + r.shape.get("tb", "")
        out.setdefault((r.cls, r.arch, r.stack, r.dtype, r.phase, r.shape.get("cell", ""), variant), []).append(i)
    return out


def arch_stack(rows: list[Row]) -> tuple[dict[str, GpuArch], dict[str, SoftwareStack]]:
    """Load the arch and stack files the rows name."""
    from .data import load_arch, load_stack

    return ({a: load_arch(a) for a in {r.arch for r in rows}}, {s: load_stack(s) for s in {r.stack for r in rows}})
