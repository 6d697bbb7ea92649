"""Write fitted constants into the arch and stack YAML files (a marked block at the end of each file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import ARCH_DIR, STACK_DIR, _folder, load_arch, load_stack

MARK = "# --- fitted by `python -m perfmodel.kernels.fit` on deepbench_train_dev.csv (regenerated; do not edit below)"
SOURCE = "fitted on shared/published/deepbench_train_dev.csv (all four GPUs); see validation/reports/deepbench-dev"


def _replace_block(path: Path, lines: list[str]) -> None:
    text = path.read_text()
    head = text.split(MARK)[0].rstrip("\n")
    path.write_text(head + "\n" + MARK + "\n" + "\n".join(lines) + "\n")


def achievable_lines(p: dict[str, float], stack: str, source: str, dtypes: bool = True) -> list[str]:
    """YAML lines of an achievable block from the fitted parameters of `stack` (with its per-dtype block
    unless `dtypes` is False)."""
    from .fit import FRACTIONS, by_dtype

    mem = [v for k, v in p.items() if k.startswith("mem:")]
    comp = ", ".join(f"{c}: {p[f'{c}@{stack}']:.4g}" for c in FRACTIONS)
    lines = ["achievable:", f"  compute: {{{comp}}}",
             f"  memory_bandwidth: {float(np.mean(mem)) if mem else 0.75:.4g}",
             f"  kernel_overhead: {1e6 * p[f'kernel_overhead_s@{stack}']:.3g} us",
             f"  conv_overhead: {1e6 * p[f'conv_overhead_s@{stack}']:.3g} us",
             f"  rnn_step_overhead: {1e6 * p[f'rnn_step_overhead_s@{stack}']:.3g} us",
             f"  rnn_memory_bandwidth: {p[f'rnn_memory_bandwidth@{stack}']:.4g}",
             f"  thin_gemm_bandwidth: {p[f'thin_gemm_bandwidth@{stack}']:.4g}",
             f"  cta_overhead_k: {p['cta_overhead_k']:.4g}"]
    for d, vals in sorted(by_dtype(p, stack).items() if dtypes else ()):
        inner = ", ".join(f"{c}: {v:.4g}" for c, v in sorted(vals.items()))
        lines += ["  by_dtype:"] if "  by_dtype:" not in lines else []
        lines.append(f"    {d}: {{{inner}}}")
    return lines + [f"  source: >-\n    {source}"]


def write_fitted(p: dict[str, float], archs: list[str], stacks: list[str],
                 carry: dict[str, str] | None = None) -> list[Path]:
    """Update the fitted block of each arch (clock, DRAM fraction) and stack (achievable); `carry` maps a
    stack without data to the fitted stack whose achievable block it reuses."""
    written = []
    for a in archs:
        path = _folder(ARCH_DIR) / f"{a}.yaml"
        _replace_block(path, [f"clock_factor: {p[f'clock:{a}']:.4g}", f"dram_fraction: {p[f'mem:{a}']:.4g}"])
        written.append(path)
    for s in stacks:
        path = _folder(STACK_DIR) / f"{s}.yaml"
        _replace_block(path, achievable_lines(p, s, SOURCE))
        written.append(path)
    for target, origin in (carry or {}).items():
        path = _folder(STACK_DIR) / f"{target}.yaml"
        _replace_block(path, achievable_lines(p, origin, f"carried over from the {origin} fit (no data for "
                                                        f"this stack): {SOURCE}", dtypes=False))
        written.append(path)
    load_arch.cache_clear()
    load_stack.cache_clear()
    for a in archs:
        load_arch(a)  # the files still validate
    for s in list(stacks) + list(carry or {}):
        load_stack(s)
    return written
