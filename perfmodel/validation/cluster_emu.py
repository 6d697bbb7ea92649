"""The `cluster-emu` suite: torch.distributed training across an emulated cluster (perfmodel.validation.cluster_emu_net), predicted
vs measured.

Per link speed: an emulated cluster of 2 nodes (a namespace each, a rate-limited link to a switch), the link
calibrated inside it by gloo all-reduce and send/recv microbenchmarks (4 KiB .. 64 MiB, `measure_links`; the
only input fitted), then DDP training steps of the cases at that speed (one process of one thread per node,
bucketed gradient all-reduce overlapped with backward). Each case is predicted by perfmodel.predict on a
Cluster built as data: 2 nodes whose device is one process's share of this machine's CPU (both emulated nodes
run on the same cores: the ddp-cpu contention microbenchmark gives that share), joined by the fitted link.

Every record (with the emulated topology) goes to one JSONL store under one run id; `report_from_measurements`
rebuilds the report from it without torch or root.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, NotFoundError
from ..graph.io import network_from_dict, network_to_dict
from ..hardware.schema import Device, Link
from ..hardware.loader import load_hardware
from ..hardware.topology import Cluster, Node
from .cluster_emu_net import EmulatedCluster, unavailable_reason
from ..parallel.predict import cpu_process_share
from ..paths import repo_root
from ..prediction import predict
from ..store import append_jsonl, read_jsonl
from .cluster_emu_fit import LinkFit
from .cluster_emu_links import (LINKS, SUITE_NAME, _base, calibrate_links, emu_spec,  # noqa: F401 (re-exported)
                                measure_link_profile)
from .cluster_emu_run import run_task, topology
from .cluster_emu_report import EmuCaseResult, EmuReport, terminal_text
from .profiles import resolve_profile
from .protocol import RunOptions
from .storage import measurement_store

ROUNDS = 2  # each case is measured in this many rounds (fresh processes), step times pooled
INTRA_NODE_LINK = "local-gloo-loopback"  # gloo between processes of one node (ddp-cpu's calibrated loopback)
OVERLAP = True  # gloo's threads wait on the emulated wire, not on a core: DDP's bucketed all-reduce overlaps

# A fully connected net sized so that its 8 MB of fp32 gradients take 20-80% of a step on these links.
EMU_MLP = {"name": "emu-mlp", "layers": [
    {"op": "input", "name": "x", "shape": [1024]},
    {"op": "dense", "name": "fc1", "units": 1280}, {"op": "relu", "name": "relu1"},
    {"op": "dense", "name": "fc2", "units": 512}, {"op": "relu", "name": "relu2"},
    {"op": "dense", "name": "fc3", "units": 10}, {"op": "softmax_cross_entropy", "name": "loss"}]}
NETWORKS = {"emu-mlp": EMU_MLP}


@dataclass(frozen=True)
class EmuCase:
    name: str
    network: str  # key of NETWORKS
    batch: int  # per process
    link: str  # key of LINKS
    nodes: int = 2
    ranks_per_node: int = 1
    steps: int = 10
    warmup: int = 3
    bucket_cap_mb: float = 25.0


CASES = (
    EmuCase("ddp-2x1-2g-b256", "emu-mlp", 256, "emu-2g"),
    EmuCase("ddp-2x1-2g-b512", "emu-mlp", 512, "emu-2g"),
    EmuCase("ddp-2x1-500m-b512", "emu-mlp", 512, "emu-500m"),
    EmuCase("ddp-2x2-2g-b256", "emu-mlp", 256, "emu-2g", ranks_per_node=2),  # 4 processes: flat gloo ring
)


# --- prediction -------------------------------------------------------------------------------------------

def node_share(device: Device, nodes: int) -> Device:
    """1/nodes of this machine's CPU (cores, peak FLOP/s, memory bandwidth): what one emulated node has."""
    if nodes == 1:
        return device
    cores = max(1, (device.cores or 1) // nodes)
    return device.model_copy(update={"cores": cores, "peak_flops": {k: v / nodes for k, v in device.peak_flops.items()},
                                     "memory_bandwidth_Bps": device.memory_bandwidth_Bps / nodes})


def emu_cluster(device: Device, link: Link, nodes: int, ranks_per_node: int = 1, process_speed: float | None = None,
                memory_speed: float | None = None, fabric: Link | None = None) -> Cluster:
    """The emulated cluster as data: `nodes` nodes on one machine's CPU, joined by `link`. With one worker per node,
    each node's device is one of `nodes` processes' share of the CPU (the measured contention, cpu_process_share);
    with several, each node is 1/nodes of the machine and its workers share it (the model's per-node sharing),
    talking over `fabric` (gloo over the namespace's own loopback)."""
    if ranks_per_node == 1:
        dev, _, _ = cpu_process_share(device, nodes, 1, process_speed, memory_speed)
    else:
        dev = node_share(device, nodes)
    node = Node(name="emu-node", source="one network namespace of perfmodel.validation.cluster_emu_net on this machine",
                device=dev, devices=ranks_per_node, host_memory=8e9, fabric_type="loopback", fabric=fabric or link)
    return Cluster(name=f"emu-{nodes}x{ranks_per_node}-{link.name}", source="perfmodel.validation.cluster_emu_net",
                   node=node, nodes=nodes, network=link)


def predict_case(case: EmuCase, device: Device, link: Link, process_speed: float | None = None,
                 memory_speed: float | None = None):
    fabric = load_hardware(INTRA_NODE_LINK, kind="link") if case.ranks_per_node > 1 else None
    cl = emu_cluster(device, link, case.nodes, case.ranks_per_node, process_speed, memory_speed, fabric)
    return predict(network_from_dict(NETWORKS[case.network]), cl, batch=case.batch,
                   devices=case.nodes * case.ranks_per_node, threads=1, optimizer="sgd", overlap=OVERLAP,
                   bucket_bytes=case.bucket_cap_mb * 2**20, layers=False)


# --- measuring ---------------------------------------------------------------------------------------------

def _measure_case(c: EmuCase, r: int, base: dict, store: Path, say) -> None:
    graph = network_to_dict(network_from_dict(NETWORKS[c.network]), flat=True)
    task = {"task": "ddp", "graph": graph, "batch": c.batch, "warmup": c.warmup, "steps": c.steps, "threads": 1,
            "bucket_cap_mb": c.bucket_cap_mb}
    say(f"round {r}, case {c.name} ...")
    with EmulatedCluster(emu_spec(c.link, c.nodes)) as cl:
        res = run_task(cl, c.ranks_per_node, task)
    per_step = [max(x[i] for x in res) for i in range(c.steps)]
    append_jsonl(store, {**base, "kind": "emu_ddp_step", "case": c.name, "case_spec": asdict(c), "round": r,
                         "topology": topology(emu_spec(c.link, c.nodes), c.ranks_per_node),
                         "rank_step_times_s": res, "step_times_s": per_step, "load_avg_before": os.getloadavg(),
                         "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    say(f"  median {sorted(per_step)[len(per_step) // 2] * 1e3:.1f} ms")


def _measure_process_speed(base: dict, store: Path, say) -> None:
    from ..torch.ddp import calibrate_process_speed  # imports torch

    say("process contention microbenchmark (2 processes on this CPU) ...")
    proc = calibrate_process_speed()
    append_jsonl(store, {**base, "kind": "process_contention_microbenchmark", **proc})
    say(f"  process_speed {proc['process_speed']:.2f}, memory_speed {proc['memory_speed']:.2f}")


def run_suite(o: RunOptions) -> EmuReport:
    """Calibrate each link, measure every selected case in ROUNDS rounds, and report from the stored records."""
    reason = unavailable_reason()
    if reason:
        raise InputError(f"suite 'cluster-emu' cannot run here: {reason}")
    sel = [c for c in CASES if not o.cases or c.name in o.cases]
    store = measurement_store(SUITE_NAME, o.store, o.commit)
    run_id = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    base = _base(run_id)
    prof_dir = _repo() / "hardware_profiles" / "links" / "calibrated" if o.commit else None
    _measure_process_speed(base, store, o.say)
    for link in dict.fromkeys(c.link for c in sel):
        measure_link_profile(link, base, store, o.say, prof_dir)
    for r in range(1, (o.rounds or ROUNDS) + 1):
        for c in sel:
            _measure_case(c if o.steps is None else EmuCase(**{**asdict(c), "steps": o.steps}), r, base, store,
                          o.say)
    return report_from_measurements(store, run_id, profile=o.profile)


# --- report from records -----------------------------------------------------------------------------------

def _repo() -> Path:
    return repo_root() or Path.cwd()


def report_from_measurements(path: str | Path | None = None, run_id: str | None = None, *,
                             profile: Any = None) -> EmuReport:
    """Predict every case of one stored run (default: the latest in the tracked store) and pair it with its
    measurement; torch-free."""
    p = Path(path) if path else _repo() / "validation" / "measurements" / f"{SUITE_NAME}.jsonl"
    recs = [r for r in read_jsonl(p) if r.get("suite") == SUITE_NAME and r.get("run_id")]
    if not recs:
        raise NotFoundError(f"no cluster-emu run in {p}")
    run_id = run_id or max(r["run_id"] for r in recs)
    recs = [r for r in recs if r["run_id"] == run_id]
    dev = resolve_profile(profile, "cpu")
    fits = {r["name"]: LinkFit.from_record(r) for r in recs if r.get("kind") == "link_fit"}
    pc = [r for r in recs if r.get("kind") == "process_contention_microbenchmark"]
    ps, ms = (pc[-1]["process_speed"], pc[-1].get("memory_speed")) if pc else (None, None)
    cases = []
    for name in dict.fromkeys(r["case"] for r in recs if r.get("kind") == "emu_ddp_step"):
        rs = [r for r in recs if r.get("case") == name and r.get("kind") == "emu_ddp_step"]
        c = EmuCase(**rs[0]["case_spec"])
        pred = predict_case(c, dev, fits[c.link].link(), ps, ms)
        cases.append(EmuCaseResult.build(c.name, f"{c.nodes}x{c.ranks_per_node} {c.link}", rs, pred,
                                         rs[0]["topology"]))
    return EmuReport(SUITE_NAME, run_id, dev.name, str(p), tuple(fits.values()), ps, ms, tuple(cases))


class _ClusterEmuSuite:
    """The registered `cluster-emu` suite (perfmodel.validation.protocol.Suite)."""

    name = SUITE_NAME
    help = "torch.distributed training across an emulated cluster (network namespaces, tc-shaped links; root)"
    measured = True

    def case_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in CASES)

    def run(self, o: RunOptions) -> EmuReport:
        if o.replay is not None:
            return report_from_measurements(o.replay, profile=o.profile)
        try:
            import torch.distributed  # noqa: F401
        except ImportError as e:
            raise InputError(f"suite 'cluster-emu' needs PyTorch with torch.distributed ({e})") from None
        return run_suite(o)

    def text(self, report: EmuReport) -> list:
        return terminal_text(report)


SUITE = _ClusterEmuSuite()
