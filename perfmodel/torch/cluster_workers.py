"""Workers for multi-node runs, started torchrun-style: one process per rank with RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT (and GLOO_SOCKET_IFNAME) in the environment, inside an emulated node (perfmodel.validation.cluster_emu_net) or on a real
node under `torchrun`.

    python3 -m perfmodel.torch.cluster_workers TASK.json OUT_DIR

TASK.json: {"task": "links", "sizes": [...], "rounds": R, "threads": 1}: gloo all-reduce and send/recv timings
per message size (every repetition starts after a barrier), or {"task": "ddp", "graph": {...}, "batch": B,
"warmup": W, "steps": S, "threads": 1, "bucket_cap_mb": 25, "seed": 0, "slow_rank": r, "slow_factor": k}:
DistributedDataParallel training steps (bucketed gradient all-reduce overlapped with backward); rank r, if given,
sleeps (k - 1) x its own compute time before each step (a straggler k x slower). Each rank writes OUT_DIR/rank<k>.json.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from ..graph.io import network_from_dict
from .to_module import make_batch, to_module
from .worker import timed_steps, training_step, write_result


def _reps(n: int) -> int:
    """Repetitions per size per round: many for small messages, a few for large ones."""
    return int(min(20, max(2, 4e6 / max(n, 1))))


def init_from_env(threads: int) -> tuple[int, int]:
    """Join the gloo group named by the torchrun-style environment; (rank, world)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}",
                            rank=rank, world_size=world, timeout=_dt.timedelta(seconds=300))
    return rank, world


def _timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        dist.barrier()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def _sendrecv(t: torch.Tensor, rank: int) -> None:
    """Rank 0 sends to rank 1, which answers with the same tensor (a round trip); other ranks idle."""
    if rank == 0:
        dist.send(t, 1)
        dist.recv(t, 1)
    elif rank == 1:
        dist.recv(t, 0)
        dist.send(t, 0)


def links_task(rank: int, sizes: Sequence[int], rounds: int) -> dict[str, Any]:
    """All-reduce and send/recv round-trip times per size, interleaved over `rounds` passes."""
    out: dict[str, Any] = {"allreduce": {str(n): [] for n in sizes}, "sendrecv": {str(n): [] for n in sizes}}
    bufs = {n: torch.ones(max(1, n // 4), dtype=torch.float32) for n in sizes}
    for n in sizes[:3]:  # warm-up: connections and small buffers
        dist.all_reduce(bufs[n])
    for _ in range(rounds):
        for n in sizes:
            out["allreduce"][str(n)] += _timed(lambda: dist.all_reduce(bufs[n]), _reps(n))
            out["sendrecv"][str(n)] += _timed(lambda: _sendrecv(bufs[n], rank), _reps(n))
    return out


def ddp_task(rank: int, task: dict[str, Any]) -> list[float]:
    """Step times of DDP training (zero_grad, forward + loss, backward with bucketed all-reduce, SGD step)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    graph = network_from_dict(task["graph"])
    seed = int(task.get("seed", 0))
    torch.manual_seed(seed)
    model = DDP(to_module(graph), bucket_cap_mb=float(task.get("bucket_cap_mb", 25)))
    model.train()
    x, y = make_batch(graph, int(task["batch"]), seed=seed + rank)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    step = training_step(opt, partial(model, x, y))
    for _ in range(int(task["warmup"])):
        step()
    extra = _slow_extra(model, step, rank, task)
    dist.barrier()
    return timed_steps((lambda: (time.sleep(extra), step())) if extra else step, int(task["steps"]))


def _slow_extra(model, step, rank: int, task: dict[str, Any]) -> float:
    """A straggler: rank `slow_rank` sleeps (slow_factor - 1) x its compute per step (fwd + bwd + SGD without the
    all-reduce: the median of 3 no_sync steps, run by every rank at once so the CPU is shared as in training)."""
    if task.get("slow_rank") is None:
        return 0.0
    ts = []
    with model.no_sync():
        for _ in range(3):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
    return (float(task.get("slow_factor", 1.0)) - 1.0) * sorted(ts)[1] if rank == int(task["slow_rank"]) else 0.0


def links_under_torchrun(sizes: Sequence[int], rounds: int) -> list[dict[str, Any]] | None:
    """In a process started by torchrun: every rank's links_task timings on rank 0 (None on the others)."""
    rank, world = init_from_env(1)
    res = links_task(rank, sizes, rounds)
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, res)
    dist.destroy_process_group()
    return gathered if rank == 0 else None


def run_rank_task(task: dict[str, Any], out_dir: str, tasks: dict[str, Callable[[int, dict], Any]]) -> int:
    """A worker's life: join the process group (init_from_env), run tasks[task["task"]](rank, task), leave the
    group together with the other ranks and hand the result back (worker.write_result in `out_dir`)."""
    fn = tasks.get(task["task"])
    if fn is None:
        raise SystemExit(f"unknown task {task['task']!r}")
    rank, _ = init_from_env(int(task.get("threads", 1)))
    res = fn(rank, task)
    dist.barrier()
    dist.destroy_process_group()
    write_result(out_dir, rank, res)
    return 0


def main(argv: Sequence[str]) -> int:
    tasks = {"links": lambda rank, t: links_task(rank, [int(n) for n in t["sizes"]], int(t.get("rounds", 2))),
             "ddp": ddp_task}
    return run_rank_task(json.loads(Path(argv[0]).read_text()), argv[1], tasks)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
