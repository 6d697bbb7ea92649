"""Measure training steps of a layer graph in a fresh Python process (this module is torch-free; the child
process imports torch).

Why: the step of a CPU network depends on the C allocator's state, and glibc's malloc moves its thresholds with
what the process did before. Freeing an mmapped buffer raises the mmap threshold to that buffer's size (at most
32 MiB) and the heap's trim threshold to twice that; the heap is given back to the kernel whenever its free top
exceeds the trim threshold, and its next growth page-faults again. Measured in one process after other networks,
a case inherits their thresholds: a Conv1d + 2-layer LSTM step took 41.7 ms (11,347 minor faults per step) in a
fresh process and 27.1 ms (37 faults) after one step of a CNN with 25 MB activations. A user's training script is
a fresh process running one network, so the suites measure each case that way.

    m = measure_isolated(graph, batch=32, threads=2, warmup=3, steps=5, optimizer="sgd")

The child is `python -m perfmodel.torch.isolated <request.json>`: it loads the graph from the network file the
parent wrote, runs perfmodel.torch.measure.measure_training and writes the Measurement as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import InputError
from ..graph.io import save_network
from ..graph.layer_graph import LayerGraph
from .records import Measurement

PROCESS_NOTE = "process=isolated"  # in the notes of every measurement taken this way
DEFAULT_TIMEOUT_S = 900.0


def measure_isolated(graph: LayerGraph, batch: int, *, device: str = "cpu", threads: int | None = None, warmup: int = 3,
                     steps: int = 5, optimizer: str = "sgd", dtype: str = "fp32", per_layer: bool = False,
                     timeout_s: float = DEFAULT_TIMEOUT_S, memory_format: str = "contiguous") -> Measurement:
    """measure_training(graph, ...) run in a new interpreter; the Measurement it returns, with PROCESS_NOTE added.
    Raises InputError with the child's last error line when it fails or runs past timeout_s."""
    with tempfile.TemporaryDirectory(prefix="perfmodel-isolated-") as tmp:
        d = Path(tmp)
        request = {"network": str(save_network(graph, d / "network.yaml", flat=True)), "batch": batch,
                   "device": device, "threads": threads, "warmup": warmup, "steps": steps, "optimizer": optimizer, "dtype": dtype,
                   "per_layer": per_layer, "memory_format": memory_format, "out": str(d / "measurement.json")}
        (d / "request.json").write_text(json.dumps(request), encoding="utf-8")
        try:
            done = subprocess.run([sys.executable, "-m", __name__, str(d / "request.json")], capture_output=True,
                                  text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise InputError(f"measuring '{graph.name}' in a fresh process ran past {timeout_s:.0f} s") from None
        out = d / "measurement.json"
        if done.returncode != 0 or not out.exists():
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise InputError(f"measuring '{graph.name}' in a fresh process failed (exit {done.returncode}): {last}")
        m = Measurement.model_validate_json(out.read_text(encoding="utf-8"))
    return m.model_copy(update={"notes": tuple(m.notes) + (PROCESS_NOTE,)})


def main(argv: list[str]) -> int:
    """The child: read the request file argv[0], measure, write the Measurement JSON to the request's `out`."""
    from .measure import measure_training  # imports torch

    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    m = measure_training(req["network"], req["batch"], device=req["device"], threads=req["threads"], warmup=req["warmup"],
                         steps=req["steps"], optimizer=req["optimizer"], dtype=req["dtype"],
                         per_layer=req["per_layer"], memory_format=req.get("memory_format", "contiguous"))
    Path(req["out"]).write_text(m.model_dump_json(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
