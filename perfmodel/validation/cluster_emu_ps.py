"""Parameter-server cases of the `cluster-emu` suite: synchronous, asynchronous and mixed training over
torch.distributed.rpc (perfmodel.torch.ps_workers), and a slow worker, in an emulated cluster.

Layout: node 0 holds the server alone; worker nodes 1..N hold `ranks_per_node` workers each; every node has its
own link of the case's rate to the switch. Modes, as the model reads them (perfmodel.parallel.sync_modes):
- sync: the workers of a node all-reduce in the node (gloo over the node's loopback) when there are several; one
  push per node; the server waits for every node, averages, answers with the parameters (allreduce="ps").
- async: every worker pushes its own gradient and gets the parameters back; nobody waits (sync="async").
- mixed: all-reduce in the node, then the node pushes asynchronously (sync="mixed").
Predicted with the rpc round-trip fit of the link (what the server's traffic runs on) and no overlap of the push
with backward (the push follows backward). Measured "iteration": sync, the time per step (slowest worker); async
and mixed, workers / (sum of the pushing workers' rates), the model's iteration = workers / updates per second.
"""

from __future__ import annotations

import datetime as _dt
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..graph.io import network_from_dict, network_to_dict
from ..hardware.loader import load_hardware
from ..hardware.schema import Device, Link
from ..prediction import predict
from ..store import append_jsonl
from .cluster_emu_links import LINKS
from .cluster_emu_net import ClusterSpec, EmuLinkSpec, EmulatedCluster
from .cluster_emu_run import run_task, topology

PS_MODES = ("sync", "async", "mixed")
ONE_BUCKET_BYTES = 2.0**30  # the push is one flat gradient, sent after backward


@dataclass(frozen=True)
class PsCase:
    name: str
    mode: str  # one of PS_MODES
    network: str  # key of cluster_emu.NETWORKS
    batch: int  # per worker
    link: str  # key of LINKS
    nodes: int = 2  # worker nodes (the server has a node of its own)
    ranks_per_node: int = 1
    steps: int = 12  # sync: timed steps
    warmup: int = 3
    duration_s: float = 5.0  # async / mixed: timed seconds
    slow_factor: float = 1.0  # the last worker computes this many times slower

    @property
    def workers(self) -> int:
        return self.nodes * self.ranks_per_node

    @property
    def group(self) -> int:
        """Workers that reduce in their node before one push (1: each worker pushes its own)."""
        return 1 if self.mode == "async" else self.ranks_per_node

    @property
    def pushers(self) -> int:
        return self.workers // self.group

    def spec(self) -> ClusterSpec:
        return ClusterSpec(links=tuple(EmuLinkSpec(rate_bps=LINKS[self.link]) for _ in range(1 + self.nodes)))

    def placement(self) -> list[int]:
        """Node of every rank: the server (rank 0) on node 0, then ranks_per_node workers per worker node."""
        return [0] + [1 + i // self.ranks_per_node for i in range(self.workers)]


PS_CASES = (
    PsCase("ps-sync-2x1-1g-b1024", "sync", "emu-mlp", 1024, "emu-1g"),
    PsCase("ps-async-2x1-1g-b1024", "async", "emu-mlp", 1024, "emu-1g"),
    PsCase("ps-async-2x1-1g-b1024-slow2", "async", "emu-mlp", 1024, "emu-1g", slow_factor=2.0),
    PsCase("ps-sync-2x1-1g-b1024-slow2", "sync", "emu-mlp", 1024, "emu-1g", slow_factor=2.0),
    PsCase("ps-sync-2x2-1g-b512", "sync", "emu-mlp", 512, "emu-1g", ranks_per_node=2),
    PsCase("ps-async-2x2-1g-b512", "async", "emu-mlp", 512, "emu-1g", ranks_per_node=2),
    PsCase("ps-mixed-2x2-1g-b512", "mixed", "emu-mlp", 512, "emu-1g", ranks_per_node=2),
)


# --- measuring ---------------------------------------------------------------------------------------------

def iteration_samples(case: PsCase, workers: list[dict[str, Any]]) -> list[float]:
    """Per step: sync, the slowest worker's step; async/mixed, pushers / (sum of the pushing workers' rates),
    over the steps every pusher finished before the first of them stopped."""
    if case.mode == "sync":
        return [max(w["stamps"][i][1] - w["stamps"][i][0] for w in workers)
                for i in range(min(len(w["stamps"]) for w in workers))]
    push = [w for w in workers if (w["rank"] - 1) % case.group == 0]
    end = min(w["stamps"][-1][1] for w in push)
    d = [[e - s for s, e in w["stamps"] if e <= end + 1e-9] for w in push]
    n = min(len(x) for x in d)
    return [len(push) / sum(1.0 / x[i] for x in d) for i in range(n)]


def measure_ps_case(c: PsCase, r: int, base: dict, store: Path, say, networks: dict) -> None:
    """One round of one case in a fresh emulated cluster; the record goes to `store`."""
    graph = network_to_dict(network_from_dict(networks[c.network]), flat=True)
    task = {"task": "ps", "mode": c.mode, "graph": graph, "batch": c.batch, "warmup": c.warmup, "steps": c.steps,
            "duration_s": c.duration_s if c.mode != "sync" else 0.0, "group": c.group, "threads": 1,
            "slow_rank": c.workers if c.slow_factor > 1 else None, "slow_factor": c.slow_factor}
    say(f"round {r}, case {c.name} ...")
    with EmulatedCluster(c.spec()) as cl:
        res = run_task(cl, 1, task, nodes_of_ranks=c.placement(), module="perfmodel.torch.ps_workers")
    server, workers = res[0], res[1:]
    samples = iteration_samples(c, workers)
    stale = server["staleness"][c.pushers * c.warmup:]  # timed updates only
    append_jsonl(store, {**base, "kind": "emu_ps_step", "case": c.name, "case_spec": asdict(c), "round": r,
                         "topology": {**topology(c.spec(), c.ranks_per_node), "server_node": 0,
                                      "worker_nodes": list(range(1, 1 + c.nodes))},
                         "workers": [{"rank": w["rank"], "stamps": [[s - w["start"], e - w["start"]] for s, e in w["stamps"]],
                                      "compute_s": w["compute_s"], "slow_factor": w["slow_factor"]} for w in workers],
                         "updates": server["updates"], "staleness": stale, "step_times_s": samples,
                         "load_avg_before": os.getloadavg(),
                         "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    st = f", staleness {statistics.mean(stale):.2f}" if stale else ""
    say(f"  median {statistics.median(samples) * 1e3:.1f} ms{st}")


# --- prediction --------------------------------------------------------------------------------------------

def predict_ps_case(c: PsCase, device: Device, rpc_link: Link, networks: dict, cluster_fn,
                    process_speed: float | None = None, memory_speed: float | None = None):
    """perfmodel.predict of one case: sync/async/mixed with one dedicated server on a link like the workers'."""
    fabric = load_hardware("local-gloo-loopback", kind="link") if c.ranks_per_node > 1 else None
    cl = cluster_fn(device, rpc_link, c.nodes, c.ranks_per_node, process_speed, memory_speed, fabric)
    return predict(network_from_dict(networks[c.network]), cl, batch=c.batch, devices=c.workers, threads=1,
                   optimizer="sgd", sync=c.mode, allreduce="ps", ps_servers=1, overlap=False,
                   bucket_bytes=ONE_BUCKET_BYTES, slow_worker_factor=c.slow_factor, layers=False)


def measured_staleness(records: list[dict]) -> float | None:
    """Mean staleness of the applied updates over the records (None for synchronous cases)."""
    xs = [s for r in records for s in r.get("staleness", [])]
    return statistics.mean(xs) if xs else None
