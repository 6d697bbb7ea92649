"""Parameter-server training with torch.distributed.rpc, started torchrun-style (RANK, WORLD_SIZE, MASTER_ADDR,
MASTER_PORT in the environment), one process per rank: rank 0 is the server, ranks 1.. are workers.

    python3 -m perfmodel.torch.ps_workers TASK.json OUT_DIR

TASK.json: {"task": "ps", "mode": "sync" | "async" | "mixed", "graph": {...}, "batch": B, "warmup": W, "steps": S,
"group": k (workers per node; mixed only), "slow_rank": r or null, "slow_factor": f, "lr": 1e-3}, or
{"task": "rpc_links", "sizes": [...], "reps": R}: rpc round trips of n bytes (worker -> server -> back).

The protocol (one flat fp32 parameter vector on the server, SGD applied there):
- sync: every worker pushes its gradient (`rpc_sync`); the server waits for all of them, averages, applies the
  step and answers every push with the new parameters (async_execution futures).
- async: a worker pushes its gradient with the version of the parameters it computed it on; the server applies it
  at once and answers with the new parameters and version. Staleness of a push = updates applied between the
  worker's pull and its push (the server records it).
- mixed: the k workers of a node all-reduce their gradients (gloo, inside the node), the node's first worker
  pushes the average asynchronously and broadcasts the answer to the others. ("group": k > 1 with sync: the same
  in-node reduction, then a synchronous push per node.)

A straggler: worker `slow_rank` sleeps (slow_factor - 1) x its own compute time after each backward, so it
computes slow_factor x slower without taking a core from the others (they share this machine's CPUs).
Worker results: per step (start, end) perf_counter stamps (one clock for every process of the machine) and
compute time; the server's: staleness per applied update. RPC runs on TensorPipe's TCP transport only (its
shared-memory and cross-memory-attach channels would bypass the emulated network).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.distributed.rpc as rpc
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ..graph.io import network_from_dict
from .to_module import make_batch, to_module
from .worker import write_result

SERVER = "ps"


class _Server:
    """The server's state: parameters, version, the pending synchronous pushes, staleness per update."""

    def __init__(self, params: torch.Tensor, workers: int, lr: float):
        self.params, self.workers, self.lr = params, workers, lr
        self.version = 0
        self.lock = threading.Lock()
        self.acc = torch.zeros_like(params)
        self.pending: list[torch.futures.Future] = []
        self.staleness: list[int] = []
        self.arrived = 0
        self.start: list[torch.futures.Future] = []
        self.t0 = 0.0


_STATE: _Server | None = None


def get_params() -> tuple[torch.Tensor, int]:
    """The current parameters and their version."""
    st = _STATE
    with st.lock:
        return st.params.clone(), st.version


@rpc.functions.async_execution
def start_barrier() -> torch.futures.Future:
    """Answers every worker at once, when all have arrived, with the common start time."""
    st = _STATE
    fut: torch.futures.Future = torch.futures.Future()
    with st.lock:
        st.arrived += 1
        st.start.append(fut)
        if st.arrived == st.workers:
            st.t0 = time.perf_counter()
            for f in st.start:
                f.set_result(st.t0)
            st.start, st.arrived = [], 0
    return fut


@rpc.functions.async_execution
def push_sync(grad: torch.Tensor) -> torch.futures.Future:
    """Accumulate one worker's gradient; with the last one, apply the average and answer every push."""
    st = _STATE
    fut: torch.futures.Future = torch.futures.Future()
    with st.lock:
        st.acc.add_(grad)
        st.pending.append(fut)
        if len(st.pending) == st.workers:
            st.params.add_(st.acc, alpha=-st.lr / st.workers)
            st.acc.zero_()
            st.version += 1
            out, done, st.pending = st.params.clone(), st.pending, []
            for f in done:
                f.set_result(out)
    return fut


def push_async(grad: torch.Tensor, pulled_version: int) -> tuple[torch.Tensor, int]:
    """Apply one gradient now; record its staleness; answer with the new parameters and version."""
    st = _STATE
    with st.lock:
        st.staleness.append(st.version - pulled_version)
        st.params.add_(grad, alpha=-st.lr)
        st.version += 1
        return st.params.clone(), st.version


def echo(x: torch.Tensor) -> torch.Tensor:
    return x


def _options(threads: int) -> rpc.TensorPipeRpcBackendOptions:
    return rpc.TensorPipeRpcBackendOptions(
        num_worker_threads=threads, rpc_timeout=300,
        init_method=f"tcp://{os.environ['MASTER_ADDR']}:{int(os.environ['MASTER_PORT'])}",
        _transports=["uv"], _channels=["basic"])


def _gloo_group(rank: int, world: int, group: int) -> Any:
    """Workers reducing in their node: a gloo world over every rank (port MASTER_PORT + 1) and this worker's node group."""
    dist.init_process_group("gloo", init_method=f"tcp://{os.environ['MASTER_ADDR']}:{int(os.environ['MASTER_PORT']) + 1}",
                            rank=rank, world_size=world, timeout=_dt.timedelta(seconds=300))
    mine = None
    for first in range(1, world, group):
        g = dist.new_group(list(range(first, min(world, first + group))))
        if first <= rank < first + group:
            mine = g
    return mine


class _Worker:
    def __init__(self, task: dict[str, Any], rank: int, node_group: Any):
        graph = network_from_dict(task["graph"])
        torch.manual_seed(int(task.get("seed", 0)))
        self.model = to_module(graph)
        self.model.train()
        self.x, self.y = make_batch(graph, int(task["batch"]), seed=int(task.get("seed", 0)) + rank)
        self.rank, self.mode, self.group = rank, task["mode"], node_group
        self.k = int(task.get("group", 1))
        self.leader = (rank - 1) % self.k == 0
        self.leader_rank = rank - (rank - 1) % self.k
        self.slow = float(task.get("slow_factor", 1.0)) if task.get("slow_rank") == rank else 1.0
        self.version = 0

    def compute(self) -> tuple[torch.Tensor, float]:
        t0 = time.perf_counter()
        for p in self.model.parameters():
            p.grad = None
        self.model(self.x, self.y).backward()
        g = torch.cat([p.grad.reshape(-1) for p in self.model.parameters()])
        c = time.perf_counter() - t0
        if self.slow > 1.0:
            time.sleep((self.slow - 1.0) * c)
        return g, c

    def exchange(self, g: torch.Tensor, stop: bool) -> bool:
        """Push g, install the answer; with a node group, reduce in the node first and share the answer.
        Returns whether to stop (the pushing worker's decision)."""
        if self.k > 1:
            dist.all_reduce(g, group=self.group)
            g.div_(self.k)
        buf = torch.empty(g.numel() + 1)
        if self.leader:
            if self.mode == "sync":
                p = rpc.rpc_sync(SERVER, push_sync, args=(g,))
            else:
                p, self.version = rpc.rpc_sync(SERVER, push_async, args=(g, self.version))
            if self.k == 1:
                self._install(p)
                return stop
            buf[:-1], buf[-1] = p, float(stop)
        dist.broadcast(buf, src=self.leader_rank, group=self.group)
        self._install(buf[:-1])
        return bool(buf[-1].item())

    def _install(self, p: torch.Tensor) -> None:
        with torch.no_grad():
            vector_to_parameters(p, self.model.parameters())


def _worker_loop(w: _Worker, task: dict[str, Any]) -> dict[str, Any]:
    p, w.version = rpc.rpc_sync(SERVER, get_params)
    w._install(p)
    for _ in range(int(task["warmup"])):
        w.exchange(w.compute()[0], False)
    t0 = rpc.rpc_sync(SERVER, start_barrier)
    steps, budget = int(task["steps"]), float(task.get("duration_s") or 0.0)
    stamps, comp = [], []
    while True:
        s = time.perf_counter()
        g, c = w.compute()
        # sync: a fixed number of steps; async/mixed: until the time budget (the node's leader decides)
        stop = len(stamps) + 1 >= steps if not budget else time.perf_counter() - t0 >= budget
        stop = w.exchange(g, stop)
        stamps.append((s, time.perf_counter()))
        comp.append(c)
        if stop:
            break
    return {"rank": w.rank, "start": t0, "stamps": stamps, "compute_s": comp, "slow_factor": w.slow}


def ps_task(rank: int, world: int, task: dict[str, Any]) -> dict[str, Any]:
    global _STATE
    group = int(task.get("group", 1))
    node_group = _gloo_group(rank, world, group) if group > 1 else None
    workers = (world - 1) // group
    if rank == 0:
        graph = network_from_dict(task["graph"])
        torch.manual_seed(int(task.get("seed", 0)))
        _STATE = _Server(parameters_to_vector(to_module(graph).parameters()).detach().clone(), workers,
                         float(task.get("lr", 1e-3)))
    rpc.init_rpc(SERVER if rank == 0 else f"w{rank}", rank=rank, world_size=world,
                 rpc_backend_options=_options(max(4, 2 * world)))
    res: dict[str, Any] = {}
    if rank > 0:
        res = _worker_loop(_Worker(task, rank, node_group), task)
    rpc.shutdown()  # waits for every worker
    if rank == 0:
        res = {"rank": 0, "staleness": _STATE.staleness, "updates": _STATE.version}
    if group > 1:
        dist.destroy_process_group()
    return res


def rpc_links_task(rank: int, world: int, sizes: Sequence[int], reps: int) -> dict[str, Any]:
    """Round trips of n bytes from rank 1 to the server and back (rpc_sync of an echo), per size."""
    rpc.init_rpc(SERVER if rank == 0 else f"w{rank}", rank=rank, world_size=world, rpc_backend_options=_options(4))
    out: dict[str, list[float]] = {}
    if rank == 1:
        for n in sizes:
            x = torch.ones(max(1, n // 4))
            rpc.rpc_sync(SERVER, echo, args=(x,))
            ts = []
            for _ in range(max(2, min(reps, int(4e7 / max(n, 1))))):
                t0 = time.perf_counter()
                rpc.rpc_sync(SERVER, echo, args=(x,))
                ts.append(time.perf_counter() - t0)
            out[str(n)] = ts
    rpc.shutdown()
    return {"rpc": out}


def main(argv: Sequence[str]) -> int:
    task = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(int(task.get("threads", 1)))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if task["task"] == "ps":
        res = ps_task(rank, world, task)
    elif task["task"] == "rpc_links":
        res = rpc_links_task(rank, world, [int(n) for n in task["sizes"]], int(task.get("reps", 10)))
    else:
        raise SystemExit(f"unknown task {task['task']!r}")
    write_result(argv[1], rank, res)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
