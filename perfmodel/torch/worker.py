"""What the measuring worker processes share (torch-free): one training step, its timing loop, and the file a
rank hands its result back in (`rank<N>.json` in the run's folder, read by the parent process)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable


def training_step(opt, loss: Callable[[], Any]) -> Callable[[], None]:
    """One training step as PyTorch loops run it: zero_grad(set_to_none=True), loss() (a scalar tensor: the
    forward), backward, optimizer step."""

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    return step


def timed_steps(step: Callable[[], Any], n: int) -> list[float]:
    """Wall seconds (time.perf_counter) of each of `n` calls of `step`, one after the other."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


def result_path(out_dir: str | Path, rank: int) -> Path:
    """The file rank `rank` hands its result back in."""
    return Path(out_dir, f"rank{rank}.json")


def write_result(out_dir: str | Path, rank: int, obj: Any) -> None:
    """Hand `obj` (JSON-ready) back to the parent process."""
    result_path(out_dir, rank).write_text(json.dumps(obj))


def read_results(out_dir: str | Path, world: int) -> list[Any]:
    """The results of ranks 0 .. world-1, in rank order (the parent's side of write_result)."""
    return [json.loads(result_path(out_dir, r).read_text()) for r in range(world)]
