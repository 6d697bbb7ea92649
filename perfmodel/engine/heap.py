"""Heap refaults of one CPU training step: heap pages the C allocator gives back and the next step faults in again.

glibc's malloc (the stack's `host_heap`) serves buffers below its mmap threshold from the heap. After the first
step the threshold is the largest buffer freed below the device's fresh-buffer size (fresh_buffer_bytes, 32 MiB),
and once the heap's free top exceeds trim_factor x that threshold the whole free top is given back to the kernel.
A step's heap grows by the activations it keeps for backward and falls when backward frees them, down to the
highest buffer still alive; what it gives back, the next step faults in again at the device's fresh-buffer cost
per byte, charged to the forward of the layer that keeps those bytes. Buffers from fresh_buffer_bytes up are
mapped per call and priced per kernel (engine.worktime), not here.
"""

from __future__ import annotations

import numpy as np

from .rates import Rates, fused_core_saved


def layer_heap_arrays(graph, device, costs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer of `costs`: saved bytes (without the attention core a fused kernel does not keep, as memory
    counts them), output bytes, and whether the layer is a network input."""
    saved = np.array([c.saved_bytes for c in costs], dtype=float)
    saved = np.maximum(saved - np.array(fused_core_saved(device, costs), dtype=float), 0.0)
    return (saved, np.array([c.output_bytes for c in costs], dtype=float),
            np.array([l.op == "input" for l in graph.layers], dtype=bool))


def heap_refault_bytes(saved: np.ndarray, output: np.ndarray, is_input: np.ndarray, fresh_bytes: float,
                       min_threshold: float, trim_factor: float) -> np.ndarray:
    """Per layer: the expected bytes of what it keeps for backward that the next step faults in again.

    The heap-sized layers' saved bytes stack up in forward order to the excursion E; at the step's end the top
    falls to the highest buffer still alive, the pin p (uniform over [0, E]: a gradient, a later layer's tensor),
    and is given back when E - p exceeds the trim threshold a = trim_factor x the largest heap-sized output. Heap
    height h is then refaulted with probability min(h, E - a) / E; the step's total is (E^2 - a^2) / (2 E). Inputs
    (allocated once) and buffers from fresh_bytes up (mapped per call, priced per kernel) are not heap."""
    heap = (output < fresh_bytes) & ~is_input
    kept = np.where(heap, saved, 0.0)
    excursion = float(kept.sum())
    allowance = trim_factor * max(float(output[heap].max(initial=0.0)), min_threshold)
    if excursion <= allowance:
        return np.zeros(len(output))
    cut = excursion - allowance

    def below(h: np.ndarray) -> np.ndarray:  # expected refault of heights [0, h)
        return np.where(h <= cut, h * h / 2.0, cut * cut / 2.0 + cut * (h - cut)) / excursion

    top = np.cumsum(kept)
    return below(top) - below(top - kept)


def heap_refault_s(saved: np.ndarray, output: np.ndarray, is_input: np.ndarray, r: Rates) -> np.ndarray | None:
    """Per layer: seconds of heap refaults at the fresh-buffer cost of `r`; None when the device's software stack
    has no host heap or the device no fresh-buffer cost (then there are none)."""
    heap = r.cpu_stack.host_heap if r.cpu_stack is not None else None
    if heap is None or not r.fresh_bytes or not r.fresh_s_per_byte:
        return None
    return heap_refault_bytes(saved, output, is_input, r.fresh_bytes, heap.mmap_threshold_min_bytes,
                              heap.trim_factor) * r.fresh_s_per_byte


def with_heap_refaults(st: dict[str, np.ndarray], secs: np.ndarray | None) -> dict[str, np.ndarray]:
    """Stage times `st` (engine.worktime.stage_times) with each layer's forward charged its heap refaults `secs`
    (heap_refault_s) as memory-bound time; `st` itself when there are none."""
    if secs is None or not secs.any():
        return st
    out = dict(st)
    for key in ("time", "roof_memory"):
        a = st[key].copy()
        a[:, 0] += secs
        out[key] = a
    return out
