"""Workers of the cluster-emu pipeline and input-pipeline cases, started torchrun-style inside emulated nodes
(perfmodel.validation.cluster_emu_run.run_task with module="perfmodel.torch.pipe_workers").

    python3 -m perfmodel.torch.pipe_workers TASK.json OUT_DIR

{"task": "pipe", "stages": [graph0, graph1], "batch": B, "microbatches": m, "schedule": "gpipe"|"1f1b",
 "warmup": W, "steps": S, "threads": 1}: two-stage pipeline parallel training, one stage per rank (gloo).
Stage 0 runs graph0 (the first layers) and sends its boundary activations to stage 1 (isend); stage 1 runs
graph1 (an input of the boundary's shape, the remaining layers and the loss) and sends the activation
gradients back. Every receive of a step is posted at its start, so transfers run on gloo's threads while
the ranks compute. GPipe: all m forwards, then all m backwards. 1F1B (PipeDream-Flush): stage s runs
pp - 1 - s forwards first, then alternates one forward and one backward, then drains the backwards.
SGD step after the flush. Result per rank: the end time of every step (perf_counter, after a barrier).

{"task": "fetch", "url": U, "sizes": {...}, "reps": R}: times HTTP GETs of files of known sizes from the
emulated source (the storage calibration). {"task": "input", "url": U, "files": N, "graph": g, "batch": B,
"workers": k, "prefetch_factor": f, "warmup": W, "steps": S}: a DataLoader whose dataset fetches sample
file i over HTTP (no local cache) feeds single-process training; result: step end times. Neither of these
two joins a process group.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.distributed as dist

from ..graph.io import network_from_dict
from .to_module import make_batch, to_module
from .worker import write_result


def _stage(task: dict[str, Any], rank: int):
    graph = network_from_dict(task["stages"][rank])
    torch.manual_seed(int(task.get("seed", 0)) + rank)
    model = to_module(graph)
    model.train()
    mb = int(task["batch"]) // int(task["microbatches"])
    x, y = make_batch(graph, mb, seed=rank)
    return graph, model, x, y


def schedule_order(schedule: str, stage: int, stages: int, m: int) -> list[tuple[str, int]]:
    """The (op, micro-batch) order a stage runs: ("F", i) forward, ("B", i) backward."""
    if schedule == "gpipe":
        return [("F", i) for i in range(m)] + [("B", i) for i in range(m)]
    warm = min(m, stages - 1 - stage)
    order = [("F", i) for i in range(warm)]
    for i in range(m - warm):
        order += [("F", warm + i), ("B", i)]
    return order + [("B", i) for i in range(m - warm, m)]


def pipe_step(rank: int, model, x, y, boundary: tuple[int, ...], order, m: int, pending: list) -> float:
    """One training step of a 2-stage pipeline (rank 0: first stage, rank 1: last stage); seconds spent waiting
    for receives."""
    mbsz = next(iter(x.values())).shape[0] if rank == 0 else next(iter(y.values())).shape[0]
    peer = 1 - rank
    bufs = [torch.empty((mbsz, *boundary)) for _ in range(m)]
    recvs = [dist.irecv(b, peer) for b in bufs]  # activations (rank 1) or their gradients (rank 0)
    outs: dict[int, Any] = {}
    waited = 0.0
    for op, i in order:
        if rank == 0 and op == "F":
            a = next(iter(model(x).values()))
            outs[i] = a
            t = a.detach().contiguous()
            pending.append((dist.isend(t, peer), t))
        elif rank == 0:
            waited -= time.perf_counter()
            recvs[i].wait()
            waited += time.perf_counter()
            outs.pop(i).backward(bufs[i])
        elif op == "F":
            waited -= time.perf_counter()
            recvs[i].wait()
            waited += time.perf_counter()
            inp = bufs[i].requires_grad_()
            outs[i] = (inp, model({"boundary": inp}, y))
        else:
            inp, loss = outs.pop(i)
            (loss / m).backward()
            t = inp.grad.contiguous()
            pending.append((dist.isend(t, peer), t))
    return waited


def pipe_task(rank: int, task: dict[str, Any]) -> dict[str, list[float]]:
    """End times (s, after a common barrier) of `steps` pipeline training steps on this rank, and per step the
    time it waited on receives and on its own sends at the flush."""
    graph, model, x, y = _stage(task, rank)
    boundary = tuple(task["boundary_shape"])
    m = int(task["microbatches"])
    order = schedule_order(task["schedule"], rank, 2, m)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    pending: list = []
    out: dict[str, list[float]] = {"ends": [], "recv_wait": [], "send_wait": [], "busy": [], "thread_cpu": [],
                                   "process_cpu": []}

    def step() -> tuple[float, float]:
        opt.zero_grad(set_to_none=True)
        t, tt, pt = time.perf_counter(), time.thread_time(), time.process_time()
        rw = pipe_step(rank, model, x, y, boundary, order, m, pending)
        out["busy"].append(time.perf_counter() - t - rw)
        out["thread_cpu"].append(time.thread_time() - tt)
        out["process_cpu"].append(time.process_time() - pt)
        t = time.perf_counter()
        for w, _ in pending:  # the tensor stays referenced until its send is done
            w.wait()
        sw = time.perf_counter() - t
        pending.clear()
        opt.step()
        return rw, sw

    for _ in range(int(task["warmup"])):
        step()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(int(task["steps"])):
        rw, sw = step()
        out["ends"].append(time.perf_counter() - t0)
        out["recv_wait"].append(rw)
        out["send_wait"].append(sw)
    return out


def _cpu_busy_s() -> float:
    """Busy CPU seconds of the whole machine so far (all cores; /proc/stat: everything but idle and iowait)."""
    v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def p2p_cpu_task(rank: int, task: dict[str, Any]) -> dict[str, float]:
    """Both ranks stream `bytes` messages to each other at once (isend + irecv; "directions": 1: rank 0 to rank 1
    only) for `reps` rounds, without any compute: the wall time, and the machine's busy CPU seconds over it (gloo's threads and the kernel's network
    path of both emulated nodes; rank 0 reads the machine-wide counter)."""
    n = int(task["bytes"]) // 4
    out, inb = torch.ones(n), torch.empty(n)
    peer = 1 - rank
    for _ in range(2):
        r, s = dist.irecv(inb, peer), dist.isend(out, peer)
        r.wait()
        s.wait()
    dist.barrier()
    t0, c0, th, pr = time.perf_counter(), _cpu_busy_s(), time.thread_time(), time.process_time()
    both = task.get("directions", 2) == 2
    for _ in range(int(task["reps"])):
        if both:
            r, s = dist.irecv(inb, peer), dist.isend(out, peer)
            r.wait()
            s.wait()
        elif rank == 0:
            dist.send(out, peer)
        else:
            dist.recv(inb, peer)
    dist.barrier()
    return {"wall_s": time.perf_counter() - t0, "busy_cpu_s": _cpu_busy_s() - c0,
            "thread_cpu_s": time.thread_time() - th, "process_cpu_s": time.process_time() - pr}


# --- input pipeline ----------------------------------------------------------------------------------------

def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as r:
        return r.read()


def fetch_task(task: dict[str, Any]) -> dict[str, list[float]]:
    """Seconds per HTTP GET of each calibration file (name -> times), files interleaved over `reps` passes."""
    out: dict[str, list[float]] = {name: [] for name in task["files"]}
    for name in list(task["files"])[:2]:
        _get(f"{task['url']}/{name}")  # warm-up
    for _ in range(int(task["reps"])):
        for name in task["files"]:
            t0 = time.perf_counter()
            _get(f"{task['url']}/{name}")
            out[name].append(time.perf_counter() - t0)
    return out


class HttpSamples(torch.utils.data.Dataset):
    """Sample i = file s<i>.bin fetched over HTTP (fp32 values, the graph input's shape), label i mod classes."""

    def __init__(self, url: str, files: int, shape: Sequence[int], classes: int):
        self.url, self.files, self.shape, self.classes = url, files, tuple(shape), classes

    def __len__(self) -> int:
        return self.files

    def __getitem__(self, i: int):
        raw = _get(f"{self.url}/s{i}.bin")
        x = torch.frombuffer(bytearray(raw), dtype=torch.float32)[: int(torch.tensor(self.shape).prod())]
        return x.reshape(self.shape), i % self.classes


def input_task(task: dict[str, Any]) -> list[float]:
    """End times of training steps fed by a DataLoader over HttpSamples (with or without loader workers)."""
    graph = network_from_dict(task["graph"])
    torch.manual_seed(0)
    model = to_module(graph)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    inp = graph.inputs[0]
    loss = next(l for l in graph.layers if l.op == "softmax_cross_entropy")
    ds = HttpSamples(task["url"], int(task["files"]), inp.output_shape, int(loss.input_shapes[0][-1]))
    k = int(task["workers"])
    kw = {"num_workers": k, "prefetch_factor": int(task["prefetch_factor"]), "persistent_workers": True} if k else {}
    loader = torch.utils.data.DataLoader(ds, batch_size=int(task["batch"]), shuffle=True, drop_last=True, **kw)
    total = int(task["warmup"]) + int(task["steps"])
    ends, t0, done = [], 0.0, 0
    while done < total:
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            model({inp.name: xb}, {loss.name: yb}).backward()
            opt.step()
            done += 1
            if done == int(task["warmup"]):
                t0 = time.perf_counter()
            elif done > int(task["warmup"]):
                ends.append(time.perf_counter() - t0)
            if done == total:
                break
    return ends


def main(argv: Sequence[str]) -> int:
    task = json.loads(Path(argv[0]).read_text())
    torch.set_num_threads(int(task.get("threads", 1)))
    if task["task"] in ("fetch", "input"):
        res: Any = fetch_task(task) if task["task"] == "fetch" else input_task(task)
        write_result(argv[1], int(os.environ.get("RANK", "0")), res)
        return 0
    from .cluster_workers import run_rank_task

    return run_rank_task(task, argv[1], {"pipe": pipe_task, "p2pcpu": p2p_cpu_task})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
