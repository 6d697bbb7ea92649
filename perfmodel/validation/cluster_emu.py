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
import importlib
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import InputError, NotFoundError, PerfModelError
from ..graph.io import network_from_dict, network_to_dict
from ..hardware.schema import Device, Link
from ..hardware.loader import load_hardware
from ..hardware.topology import Cluster, Node
from .cluster_emu_net import EmulatedCluster, unavailable_reason
from ..parallel.predict import cpu_process_share
from ..paths import repo_root
from ..prediction import predict
from ..store import append_jsonl, atomic_write_text, read_jsonl
from .cluster_emu_fit import LinkFit
from .cluster_emu_links import (LINKS, SUITE_NAME, _base, calibrate_links, emu_spec,  # noqa: F401 (re-exported)
                                measure_link_profile)
from .cluster_emu_ps import PS_CASES, PsCase, measure_ps_case, measured_staleness, predict_ps_case
from .cluster_emu_run import run_task, topology
from .cluster_emu_report import EmuCaseResult, EmuReport, splice_readme, terminal_text
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
    slow_factor: float = 1.0  # the last rank computes this many times slower (a straggler)

    @property
    def mode(self) -> str:
        return "sync"

    @property
    def workers(self) -> int:
        return self.nodes * self.ranks_per_node


CASES = (
    EmuCase("ddp-2x1-2g-b256", "emu-mlp", 256, "emu-2g"),
    EmuCase("ddp-2x1-2g-b512", "emu-mlp", 512, "emu-2g"),
    EmuCase("ddp-2x1-500m-b512", "emu-mlp", 512, "emu-500m"),
    EmuCase("ddp-2x2-2g-b256", "emu-mlp", 256, "emu-2g", ranks_per_node=2),  # 4 processes: flat gloo ring
    EmuCase("ddp-2x1-1g-b1024", "emu-mlp", 1024, "emu-1g"),  # ring beside ps-sync-2x1-1g-b1024
    EmuCase("ddp-2x1-1g-b1024-slow2", "emu-mlp", 1024, "emu-1g", slow_factor=2.0),  # a straggler, synchronous
    EmuCase("ddp-2x2-1g-b512", "emu-mlp", 512, "emu-1g", ranks_per_node=2),  # ring beside ps-sync-2x2-1g-b512
)
ALL_CASES = CASES + PS_CASES
# case modules with their own workers (EMU-PIPE): CASE_NAMES, measure_suite(store, base, cases, rounds, calibrate,
# say), report_rows(recs, dev, fits, ps, ms)
PLUGINS = (".cluster_emu_pipe", ".cluster_emu_input")


def _plugins() -> list:
    return [importlib.import_module(n, __package__) for n in PLUGINS]
# (faster expected?, slower) pairs whose measured and predicted throughput order must agree
PAIRS = (("ddp-2x1-1g-b1024", "ps-sync-2x1-1g-b1024", "ring vs parameter server, 2 workers"),
         ("ddp-2x2-1g-b512", "ps-sync-2x2-1g-b512", "ring vs parameter server, 2 nodes x 2"),
         ("ps-async-2x1-1g-b1024", "ps-sync-2x1-1g-b1024", "async vs sync, 2 workers"),
         ("ps-async-2x2-1g-b512", "ps-sync-2x2-1g-b512", "async vs sync, 2 nodes x 2"),
         ("ps-mixed-2x2-1g-b512", "ps-sync-2x2-1g-b512", "mixed vs sync, 2 nodes x 2"),
         ("ps-async-2x2-1g-b512", "ps-mixed-2x2-1g-b512", "async vs mixed, 2 nodes x 2"),
         ("ps-async-2x1-1g-b1024-slow2", "ddp-2x1-1g-b1024-slow2", "async PS vs sync ring, one worker 2x slower"),
         ("ps-async-2x1-1g-b1024-slow2", "ps-sync-2x1-1g-b1024-slow2", "async vs sync PS, one worker 2x slower"))


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
                   bucket_bytes=case.bucket_cap_mb * 2**20, slow_worker_factor=case.slow_factor, layers=False)


# --- measuring ---------------------------------------------------------------------------------------------

def _measure_case(c: EmuCase, r: int, base: dict, store: Path, say) -> None:
    graph = network_to_dict(network_from_dict(NETWORKS[c.network]), flat=True)
    task = {"task": "ddp", "graph": graph, "batch": c.batch, "warmup": c.warmup, "steps": c.steps, "threads": 1,
            "bucket_cap_mb": c.bucket_cap_mb, "slow_rank": c.workers - 1 if c.slow_factor > 1 else None,
            "slow_factor": c.slow_factor}
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


def measure(store: Path, run_id: str, cases: tuple[str, ...] = (), rounds: tuple[int, ...] = (1, 2), *,
            calibrate: bool = True, say=lambda m: None, prof_dir: Path | None = None) -> None:
    """Measure under run `run_id` into `store`: (calibrate) the contention microbenchmark and the links of the
    selected cases, then every selected case (all when `cases` is empty) in each of `rounds`. Callable in parts
    (a case or a round at a time) with one run id."""
    sel = [c for c in ALL_CASES if not cases or c.name in cases]
    base = _base(run_id)
    if calibrate:
        _measure_process_speed(base, store, say)
        for link in dict.fromkeys(c.link for c in sel):
            measure_link_profile(link, base, store, say, prof_dir)
    for r in rounds:
        for c in sel:
            for attempt in (1, 2):  # a worker that crashes (no record written) is run once more
                try:
                    if isinstance(c, PsCase):
                        measure_ps_case(c, r, base, store, say, NETWORKS)
                    else:
                        _measure_case(c, r, base, store, say)
                    break
                except PerfModelError as e:
                    if attempt == 2:
                        raise
                    say(f"  {str(e)[-200:]}; once more")
    for pl in _plugins():
        pl.measure_suite(store, base, tuple(cases), tuple(rounds), calibrate, say)


def run_suite(o: RunOptions) -> EmuReport:
    """Calibrate each link, measure every selected case in ROUNDS rounds, and report from the stored records."""
    reason = unavailable_reason()
    if reason:
        raise InputError(f"suite 'cluster-emu' cannot run here: {reason}")
    store = measurement_store(SUITE_NAME, o.store, o.commit)
    run_id = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    prof_dir = _repo() / "hardware_profiles" / "links" / "calibrated" if o.commit else None
    measure(store, run_id, tuple(o.cases), tuple(range(1, (o.rounds or ROUNDS) + 1)), say=o.say, prof_dir=prof_dir)
    return report_from_measurements(store, run_id, profile=o.profile)


# --- report from records -----------------------------------------------------------------------------------

def _repo() -> Path:
    return repo_root() or Path.cwd()


def report_from_measurements(path: str | Path | None = None, run_id: str | None = None, *,
                             profile: Any = None) -> EmuReport:
    """Predict every case of one stored run (default: the latest in the tracked store) and pair it with its
    measurement, beside the run before it (its cases' errors); torch-free."""
    p = Path(path) if path else _repo() / "validation" / "measurements" / f"{SUITE_NAME}.jsonl"
    recs = [r for r in read_jsonl(p) if r.get("suite") == SUITE_NAME and r.get("run_id")]
    if not recs:
        raise NotFoundError(f"no cluster-emu run in {p}")
    runs = sorted({r["run_id"] for r in recs if r.get("kind") in STEP_KINDS})
    run_id = run_id or (runs[-1] if runs else max(r["run_id"] for r in recs))
    dev = resolve_profile(profile, "cpu")
    rep = _run_report(p, [r for r in recs if r["run_id"] == run_id], run_id, dev)
    earlier = [r for r in runs if r < run_id]
    if earlier:
        prev = _run_report(p, [r for r in recs if r["run_id"] == earlier[-1]], earlier[-1], dev)
        rep = replace(rep, previous=prev)
    return rep


STEP_KINDS = ("emu_ddp_step", "emu_ps_step")


def _run_report(p: Path, recs: list[dict], run_id: str, dev: Device) -> EmuReport:
    """The report of one run's records."""
    fits = {r["name"]: LinkFit.from_record(r) for r in recs if r.get("kind") == "link_fit"}
    pc = [r for r in recs if r.get("kind") == "process_contention_microbenchmark"]
    ps, ms = (pc[-1]["process_speed"], pc[-1].get("memory_speed")) if pc else (None, None)
    cases = []
    for name in dict.fromkeys(r["case"] for r in recs if r.get("kind") in STEP_KINDS):
        rs = [r for r in recs if r.get("case") == name and r.get("kind") in STEP_KINDS]
        if rs[0]["kind"] == "emu_ps_step":
            c: Any = PsCase(**rs[0]["case_spec"])
            pred = predict_ps_case(c, dev, fits[c.link].rpc_link(), NETWORKS, emu_cluster, ps, ms)
            group = f"PS {c.mode} {c.nodes}x{c.ranks_per_node} {c.link}"
        else:
            c = EmuCase(**rs[0]["case_spec"])
            pred = predict_case(c, dev, fits[c.link].link(), ps, ms)
            group = f"ring {c.nodes}x{c.ranks_per_node} {c.link}"
        if c.slow_factor > 1:
            group += f", one worker {c.slow_factor:g}x slower"
        cases.append(EmuCaseResult.build(c.name, group, rs, pred, rs[0]["topology"], c.workers * c.batch,
                                         measured_staleness(rs)))
    cases += [row for pl in _plugins() for row in pl.report_rows(recs, dev, fits, ps, ms)]
    pairs = tuple(x for x in PAIRS if {x[0], x[1]} <= {c.case for c in cases})
    return EmuReport(SUITE_NAME, run_id, dev.name, str(p), tuple(fits.values()), ps, ms, tuple(cases), pairs)


class _ClusterEmuSuite:
    """The registered `cluster-emu` suite (perfmodel.validation.protocol.Suite)."""

    name = SUITE_NAME
    help = "torch.distributed training across an emulated cluster (network namespaces, tc-shaped links; root)"
    measured = True

    def case_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in ALL_CASES) + tuple(n for pl in _plugins() for n in pl.CASE_NAMES)

    def run(self, o: RunOptions) -> EmuReport:
        if o.replay is not None:
            return report_from_measurements(o.replay, profile=o.profile)
        try:
            import torch.distributed  # noqa: F401
        except ImportError as e:
            raise InputError(f"suite 'cluster-emu' needs PyTorch with torch.distributed ({e})") from None
        rep = run_suite(o)
        if o.commit:  # the README's generated block follows the committed report
            readme = _repo() / "README.md"
            if readme.exists():
                atomic_write_text(readme, splice_readme(readme.read_text(encoding="utf-8"), rep.readme_section()))
        return rep

    def text(self, report: EmuReport) -> list:
        return terminal_text(report)


SUITE = _ClusterEmuSuite()
