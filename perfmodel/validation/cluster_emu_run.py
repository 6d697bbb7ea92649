"""Running torch workers inside an emulated cluster (torch-free here: the workers are separate processes).

`run_task(cluster, ranks_per_node, task)` writes the task as JSON, starts one `perfmodel.torch.cluster_workers`
process per rank inside its node's namespace with a torchrun-style environment (RANK, WORLD_SIZE, MASTER_ADDR =
node 0's emulated address, MASTER_PORT, GLOO_SOCKET_IFNAME, one thread), and returns every rank's result.
"""

from __future__ import annotations

import datetime as _dt
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from ..errors import PerfModelError
from ..torch.worker import read_results
from .cluster_emu_net import IFACE, ClusterSpec, EmulatedCluster, run_processes
from .cluster_emu_fit import LinkFit, medians

LINK_SIZES = tuple(4 * 1024 * 4**i for i in range(8))  # 4 KiB .. 64 MiB
LINK_ROUNDS = 2
TASK_TIMEOUT_S = 600.0


def rank_env(rank: int, world: int, master: str, port: int, threads: int = 1) -> dict[str, str]:
    """The torchrun-style environment of one worker process."""
    return {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank), "MASTER_ADDR": master,
            "MASTER_PORT": str(port), "GLOO_SOCKET_IFNAME": IFACE, "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads), "TP_SOCKET_IFNAME": IFACE}


def run_task(cluster: EmulatedCluster, ranks_per_node: int, task: dict[str, Any],
             timeout_s: float = TASK_TIMEOUT_S, *, nodes_of_ranks: Sequence[int] | None = None,
             module: str = "perfmodel.torch.cluster_workers") -> list[Any]:
    """Run `task` on ranks_per_node processes in every node (or rank r in node nodes_of_ranks[r]) with the worker
    `module`; each rank's result (rank order)."""
    place = list(nodes_of_ranks) if nodes_of_ranks is not None else \
        [r // ranks_per_node for r in range(cluster.spec.nodes * ranks_per_node)]
    world = len(place)
    port = random.randint(20000, 60000)
    master = cluster.spec.address(place[0])
    argv_base = [sys.executable, "-m", module]
    with tempfile.TemporaryDirectory(prefix="perfmodel-emu-") as d:
        tf = Path(d, "task.json")
        tf.write_text(json.dumps(task))
        procs = [(place[r], [*argv_base, str(tf), d], rank_env(r, world, master, port,
                                                                            int(task.get("threads", 1))))
                 for r in range(world)]
        res = run_processes(cluster, procs, timeout_s)
        bad = [(r, err) for r, (rc, err) in enumerate(res) if rc != 0]
        if bad:
            raise PerfModelError(f"emulated cluster worker rank {bad[0][0]} failed: {bad[0][1][-600:]}")
        return read_results(d, world)


def measure_links(cluster: EmulatedCluster, name: str, sizes: Sequence[int] = LINK_SIZES,
                  rounds: int = LINK_ROUNDS) -> LinkFit:
    """gloo all-reduce and send/recv, and rpc round trips, between the nodes (one rank each) -> a LinkFit `name`."""
    res = run_task(cluster, 1, {"task": "links", "sizes": list(sizes), "rounds": rounds, "threads": 1})
    rpc = run_task(cluster, 1, {"task": "rpc_links", "sizes": list(sizes), "reps": 10 * rounds, "threads": 1},
                   module="perfmodel.torch.ps_workers")
    return LinkFit(name, len(res), tuple(medians([r["allreduce"] for r in res])),
                   tuple(medians([r["sendrecv"] for r in res[:2]])), topology(cluster.spec, 1),
                   _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), tuple(medians([rpc[1]["rpc"]])))


def topology(spec: ClusterSpec, ranks_per_node: int) -> dict[str, Any]:
    """The emulated topology as stored beside every measurement."""
    return {**spec.to_dict(), "ranks_per_node": ranks_per_node}
