"""Host page faults of one CPU training step: heap pages the C allocator gives back and the next step faults in again,
and fused-LSTM workspaces mapped afresh on every call.

glibc's malloc (the stack's `host_heap`) serves buffers below its mmap threshold from the heap. After the first
step the threshold is the largest buffer freed below the device's fresh-buffer size (fresh_buffer_bytes, 32 MiB),
and once the heap's free top exceeds trim_factor x that threshold the whole free top is given back to the kernel.
A step's heap grows by the activations it keeps for backward and falls when backward frees them, down to the
highest buffer still alive; what it gives back, the next step faults in again at the device's fresh-buffer cost
per byte, charged to the forward of the layer that keeps those bytes. Buffers from fresh_buffer_bytes up are
mapped per call and priced per kernel (engine.worktime), not here; except the fused LSTM's workspace (the stack's
`cpu_lstm_workspace`), one buffer per layer-direction that no Work row holds: from fresh_buffer_bytes up all of it is
faulted in every step (its forward part in forward, the rest in backward), below it is heap memory the layer keeps.
"""

from __future__ import annotations

import numpy as np

from .rates import Rates, fused_core_saved


def lstm_workspaces(stack, costs) -> tuple[np.ndarray, np.ndarray, object] | None:
    """Per layer: (one layer-direction's unit of fused-LSTM buffers: batch x steps x hidden x bytes, layer-directions)
    under a CPU software stack with a `cpu_lstm_workspace` (zeros for other layers) and that block; else None."""
    ws = stack.cpu_lstm_workspace if stack is not None else None
    if ws is None:
        return None
    unit = np.array([c.extra.get("state_bytes", 0.0) if c.extra.get("cell") == "lstm" else 0.0 for c in costs])
    dirs = np.array([c.extra.get("layer_directions", 0) for c in costs], dtype=float)
    return unit, np.where(unit > 0, dirs, 0.0), ws


def layer_heap_arrays(graph, device, costs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per layer of `costs`: saved bytes as memory counts them (without the attention core a fused kernel does not
    keep; a fused LSTM keeps its whole workspaces instead of the ops' reserve), output bytes, and whether the layer
    is a network input."""
    from .rates import cpu_stack

    saved = np.array([c.saved_bytes for c in costs], dtype=float)
    saved = np.maximum(saved - np.array(fused_core_saved(device, costs), dtype=float), 0.0)
    lstm = lstm_workspaces(cpu_stack(device), costs)
    if lstm is not None and lstm[1].any():
        unit, n, ws = lstm
        reserve = np.array([c.extra.get("reserve_bytes", 0.0) if k > 0 else 0.0 for c, k in zip(costs, n)])
        saved = np.maximum(saved - reserve, 0.0) + unit * ws.units * n
    return (saved, np.array([c.output_bytes for c in costs], dtype=float),
            np.array([l.op == "input" for l in graph.layers], dtype=bool))


def heap_saved(saved: np.ndarray, costs, r: Rates, unscaled: np.ndarray | None = None) -> np.ndarray:
    """`saved` (layer_heap_arrays' first array, scaled per layer as `saved` / `unscaled` where a rank splits it) as
    the heap holds it: a fused LSTM's workspace only with its written part, none of it when it is mapped (from the
    fresh-buffer size of `r` up)."""
    lstm = lstm_workspaces(r.cpu_stack, costs)
    if lstm is None or not lstm[1].any():
        return saved
    unit, n, ws = lstm
    fresh = r.fresh_bytes or np.inf
    written = np.where(unit * ws.units < fresh, unit * (ws.forward_units + ws.backward_units) * n, 0.0)
    share = 1.0 if unscaled is None else np.divide(saved, unscaled, out=np.ones_like(saved), where=unscaled > 0)
    return np.maximum(saved - (unit * ws.units * n - written) * share, 0.0)


def lstm_workspace_s(costs, r: Rates) -> np.ndarray | None:
    """Per layer and stage [n, 3]: seconds of faulting in the fused-LSTM buffers mapped on every call (those from
    the fresh-buffer size up) at the fresh-buffer cost: the workspace's forward part in forward, its backward part
    and the backward scratch in backward-weight (where ops.recurrent charges an LSTM's backward); None when none."""
    lstm = lstm_workspaces(r.cpu_stack, costs)
    if lstm is None or not r.fresh_bytes or not r.fresh_s_per_byte:
        return None
    unit, n, ws = lstm
    mapped = unit * ws.units >= r.fresh_bytes
    fwd = np.where(mapped, unit * ws.forward_units, 0.0)
    bwd = np.where(mapped, unit * ws.backward_units, 0.0) + np.where(unit * ws.scratch_units >= r.fresh_bytes,
                                                                     unit * ws.scratch_units, 0.0)
    if not (fwd.any() or bwd.any()):
        return None
    out = np.zeros((len(costs), 3))
    out[:, 0], out[:, 2] = fwd * n * r.fresh_s_per_byte, bwd * n * r.fresh_s_per_byte
    return out


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
    """Per layer: seconds of heap refaults of the heap bytes `saved` (heap_saved) at the fresh-buffer cost of `r`;
    None when the device's software stack has no host heap or the device no fresh-buffer cost (then there are
    none)."""
    heap = r.cpu_stack.host_heap if r.cpu_stack is not None else None
    if heap is None or not r.fresh_bytes or not r.fresh_s_per_byte:
        return None
    return heap_refault_bytes(saved, output, is_input, r.fresh_bytes, heap.mmap_threshold_min_bytes,
                              heap.trim_factor) * r.fresh_s_per_byte


def host_fault_s(saved: np.ndarray, output: np.ndarray, is_input: np.ndarray, costs, r: Rates,
                 unscaled: np.ndarray | None = None) -> np.ndarray | None:
    """Per layer and stage [n, 3]: host page faults of one step under `r`: heap refaults of the heap's share of
    `saved` (heap_saved; `unscaled` as there) in forward, plus mapped fused-LSTM buffers (lstm_workspace_s); None
    when there are none."""
    heap_s = heap_refault_s(heap_saved(saved, costs, r, unscaled), output, is_input, r)
    workspace_s = lstm_workspace_s(costs, r)
    if heap_s is None and workspace_s is None:
        return None
    out = np.zeros((len(costs), 3)) if workspace_s is None else workspace_s
    if heap_s is not None:
        out[:, 0] += heap_s
    return out


def with_heap_refaults(st: dict[str, np.ndarray], secs: np.ndarray | None) -> dict[str, np.ndarray]:
    """Stage times `st` (engine.worktime.stage_times) with each layer's stages charged their page faults `secs`
    (host_fault_s, [n, 3]) as memory-bound time; `st` itself when there are none."""
    if secs is None or not secs.any():
        return st
    out = dict(st)
    for key in ("time", "roof_memory"):
        out[key] = st[key] + secs
    return out
