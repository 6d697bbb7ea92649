"""Why the best plan beats the runner-up, in one or two sentences."""

from __future__ import annotations

from typing import Sequence

from ..parallel.iteration import PARTS
from ..units import fmt_seconds

TIE_REL = 1e-9  # two plans whose times differ by less than this fraction tie (less memory ranks first)
PLAN_PARTS = PARTS  # the iteration's parts (perfmodel.parallel.iteration), adding up to its time


PART_WORDS = {
    "compute": "compute-bound kernel time", "memory": "memory-bound kernel time", "overhead": "launch overhead",
    "recompute": "recomputed forward", "tensor_comm": "tensor-parallel all-reduces",
    "pipeline_comm": "exposed pipeline transfers", "data_comm": "exposed gradient all-reduce",
    "bubble": "pipeline bubble", "straggler": "straggler wait", "host_to_device": "exposed input copy",
    "io": "exposed storage IO", "context_comm": "exposed context-parallel ring exchanges",
    "offload": "exposed activation offload", "expert_comm": "expert-parallel all-to-alls",
}


def _fmt_s(t: float) -> str:
    return fmt_seconds(t)


KNOBS = ("devices", "dp", "tp", "pp", "microbatch", "microbatches", "recompute", "dtype", "schedule", "zero",
         "sharding", "sequence_parallel", "virtual_stages", "context_parallel", "offload_activations",
         "expert_parallel", "tp_overlap")


def explain(plans: Sequence, objective: str, priced: bool, fitting: int, dropped: int, untimed: int = 0) -> str:
    """Why the best plan beats the runner-up, in one or two sentences (`fitting` timed plans fit, `dropped` did not;
    `untimed` were not timed because a twin or a lower bound showed they could not rank first)."""
    if not plans:
        return f"No plan fits in device memory ({dropped} candidates dropped); add devices, use recomputation or a smaller batch."
    best = plans[0]
    if len(plans) == 1:
        return f"{best.label()} is the only plan that fits ({dropped} candidates did not fit)."
    ru = plans[1]
    diffs = [k for k in KNOBS if getattr(best, k, None) != getattr(ru, k, None)]
    what = ", ".join(f"{k} {getattr(best, k)} vs {getattr(ru, k)}" for k in diffs) or "the same knobs"
    dt = ru.iteration_time_s - best.iteration_time_s
    if objective == "cost":
        cb = best.cost_per_iteration if priced else best.devices * best.iteration_time_s
        cr = ru.cost_per_iteration if priced else ru.devices * ru.iteration_time_s
        unit = "$" if priced else "device-s "
        head = (f"{best.label()} wins at {unit}{cb:.4g} per iteration vs the runner-up's {unit}{cr:.4g} "
                f"({what})")
    else:
        head = (f"{best.label()} wins at {_fmt_s(best.iteration_time_s)} per iteration, "
                f"{dt / ru.iteration_time_s:.1%} faster than the runner-up ({what})")
    if abs(dt) <= TIE_REL * max(best.iteration_time_s, ru.iteration_time_s):
        why = (f"; the times are equal and it needs less memory per device ({best.memory_bytes / 1e9:.1f} GB vs "
               f"{ru.memory_bytes / 1e9:.1f} GB)")
        if "schedule" in diffs:
            why += ", because 1F1B keeps at most pp micro-batches of activations in flight where GPipe keeps all"
        return head + why + "."
    deltas = {k: ru.breakdown.get(k, 0.0) - best.breakdown.get(k, 0.0) for k in PLAN_PARTS}
    gains = sorted(((v, k) for k, v in deltas.items() if v > 0), reverse=True)
    losses = sorted(((-v, k) for k, v in deltas.items() if v < 0), reverse=True)
    parts = []
    if gains:
        parts.append("it saves " + ", ".join(f"{_fmt_s(v)} of {PART_WORDS.get(k, k)}" for v, k in gains[:2]))
    if losses:
        parts.append("pays " + ", ".join(f"{_fmt_s(v)} more {PART_WORDS.get(k, k)}" for v, k in losses[:1]))
    if objective == "cost" and best.devices != ru.devices:
        parts.append(f"on {best.devices} instead of {ru.devices} devices")
    tail = ("; " + " and ".join(parts)) if parts else ""
    skipped = f", {untimed} could not beat them and were not timed" if untimed else ""
    return head + tail + f". {fitting} plans fit, {dropped} did not{skipped}."
