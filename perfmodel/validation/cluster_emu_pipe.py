"""cluster-emu pipeline cases: a two-stage pipeline over two emulated nodes (one process of one thread each),
activations and their gradients sent with gloo isend/irecv, GPipe and 1F1B with m micro-batches.

Predicted by perfmodel.predict(devices=2, nodes=2, plan={dp 1, tp 1, pp 2, m, schedule}) on the emulated
cluster (cluster_emu.emu_cluster) whose network is the link's point-to-point fit (`p2p_link`: gloo send/recv
round trips of the suite's link calibration). The stage cut is the model's own (its `stages` output); the
workers run exactly those layers per stage (`stage_graphs`). Torch-free here: the workers are
perfmodel.torch.pipe_workers processes.

Both emulated nodes run on this machine's cores, and so does the network path between them: gloo's threads
and the kernel's TCP/veth/tbf work keep about one core busy while one direction streams and 1.5 while both do
(`measure_stream_cpu`, once per link and run, no compute). That CPU is taken from the stages' compute
(`predict_case`: a measured input like the process-contention factor, the same for every case of a link).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..graph.io import network_from_dict
from ..hardware.schema import Device, Link
from ..parallel.collectives import point_to_point
from ..prediction import predict
from ..store import append_jsonl, read_jsonl
from .cluster_emu_fit import LinkFit
from .cluster_emu import emu_cluster  # the suite loads this module lazily (cluster_emu.PLUGINS)
from .cluster_emu_links import emu_spec, measure_link_profile
from .cluster_emu_net import EmulatedCluster
from .cluster_emu_report import EmuCaseResult
from .cluster_emu_run import run_task, topology
from .profiles import resolve_profile

KIND = "emu_pipe_step"
WORKERS = "perfmodel.torch.pipe_workers"
CPU_KIND = "emu_p2p_cpu"
RANK_SERIES = ("recv_wait", "send_wait", "busy", "thread_cpu", "process_cpu")  # per rank and step, stored
CPU_BENCH_BYTES = 1 << 20  # message size of the network-path CPU microbenchmark

# Two blocks (512 -> 768 -> 512) joined by a 512-wide boundary (the cut the model picks).
EMU_PIPE = {"name": "emu-pipe", "layers": [
    {"op": "input", "name": "x", "shape": [512]},
    {"op": "dense", "name": "fc1", "units": 768}, {"op": "relu", "name": "relu1"},
    {"op": "dense", "name": "fc2", "units": 512}, {"op": "relu", "name": "relu2"},
    {"op": "dense", "name": "fc3", "units": 768}, {"op": "relu", "name": "relu3"},
    {"op": "dense", "name": "fc4", "units": 512}, {"op": "relu", "name": "relu4"},
    {"op": "dense", "name": "fc5", "units": 10}, {"op": "softmax_cross_entropy", "name": "loss"}]}
NETWORKS = {"emu-pipe": EMU_PIPE}


@dataclass(frozen=True)
class PipeCase:
    name: str
    network: str  # key of NETWORKS
    batch: int  # the pipeline's mini-batch (split into `microbatches`)
    microbatches: int
    schedule: str  # "gpipe" or "1f1b"
    link: str  # key of cluster_emu_links.LINKS
    steps: int = 10
    warmup: int = 3


CASES = (  # m and links such that transfers are 20-80% of the step
    PipeCase("pp2-gpipe-m8-1g", "emu-pipe", 1024, 8, "gpipe", "emu-1g"),
    PipeCase("pp2-1f1b-m8-1g", "emu-pipe", 1024, 8, "1f1b", "emu-1g"),
    PipeCase("pp2-1f1b-m16-1g", "emu-pipe", 1024, 16, "1f1b", "emu-1g"),
    PipeCase("pp2-gpipe-m8-500m", "emu-pipe", 1024, 8, "gpipe", "emu-500m"),
    PipeCase("pp2-1f1b-m8-500m", "emu-pipe", 1024, 8, "1f1b", "emu-500m"),
    PipeCase("pp2-1f1b-m16-500m", "emu-pipe", 1024, 16, "1f1b", "emu-500m"),
)
CASE_NAMES = tuple(c.name for c in CASES)


def p2p_link(fit: LinkFit) -> Link:
    """The link as point-to-point traffic sees it: the alpha-beta fit of the gloo send/recv round trips."""
    alpha, bw = fit.fit("sendrecv")
    return Link(name=f"{fit.name}-p2p", type="ethernet", bandwidth=bw, latency=alpha, efficiency=1.0,
                source=f"cluster-emu link calibration: gloo send/recv round trips, {fit.created_utc}")


def stream_cores(recs: list[dict], link: str) -> tuple[float, float]:
    """Cores the network path (gloo's threads + the kernel's TCP/veth/tbf work of both emulated nodes) keeps busy
    while one direction, and while both directions, of `link` stream (this run's CPU microbenchmarks; 0 when not
    measured)."""
    out = []
    for d in (1, 2):
        r = [x for x in recs if x.get("kind") == CPU_KIND and x.get("link") == link and x.get("directions", 2) == d]
        out.append(r[-1]["busy_cpu_s"] / r[-1]["wall_s"] if r else 0.0)
    return out[0], out[1]


def network_cpu_s(case: PipeCase, pred, link: Link, cores: tuple[float, float]) -> float:
    """CPU seconds per step the network path takes: the m transfers per direction keep the link busy m x per
    direction; 1F1B sends activations and gradients at the same time (both directions: cores[1] for m x),
    GPipe one direction after the other (cores[0] for 2 m x)."""
    busy = transfer_share(pred, case, link) * pred.iteration_time_s
    return cores[1] * busy if case.schedule == "1f1b" else cores[0] * 2 * busy


def predict_case(case: PipeCase, device: Device, link: Link, process_speed: float | None = None,
                 memory_speed: float | None = None, net_cores: tuple[float, float] = (0.0, 0.0), passes: int = 3):
    """The model's prediction on the emulated cluster. Both emulated nodes share this machine's cores
    (device.cores), so the CPU the network path takes (network_cpu_s) is missing from compute: each process runs
    at process_speed x (1 - network CPU / (step x cores)), the step from the previous pass (fixed point)."""
    plan = {"dp": 1, "tp": 1, "pp": 2, "microbatches": case.microbatches, "schedule": case.schedule}
    base = process_speed if process_speed is not None else 1.0
    speed, pred = base, None
    for _ in range(passes if max(net_cores) > 0 else 1):
        cl = emu_cluster(device, link, 2, 1, speed, memory_speed)
        pred = predict(network_from_dict(NETWORKS[case.network]), cl, batch=case.batch, devices=2, threads=1,
                       optimizer="sgd", plan=plan, layers=False)
        lost = network_cpu_s(case, pred, link, net_cores) / (pred.iteration_time_s * max(1, device.cores or 1))
        speed = base * max(0.05, 1.0 - lost)
    return pred


def stage_graphs(net: dict[str, Any], first_stage_layers: int) -> tuple[dict, dict, list[int]]:
    """Cut a chain network after its first `first_stage_layers` layers (input included): stage 0's graph, stage 1's
    graph (an input named 'boundary' of the cut's shape, then the remaining layers) and the boundary shape."""
    g = network_from_dict(net)
    layers = net["layers"]
    if any("inputs" in l for l in layers) or not 1 < first_stage_layers < len(layers):
        raise ValueError("stage_graphs cuts a plain chain of layers strictly inside it")
    shape = list(g.layers[first_stage_layers - 1].output_shape)
    s0 = {"name": f"{net['name']}-s0", "layers": layers[:first_stage_layers]}
    s1 = {"name": f"{net['name']}-s1", "layers": [{"op": "input", "name": "boundary", "shape": shape},
                                                   *layers[first_stage_layers:]]}
    return s0, s1, shape


def _first_stage_count(pred, net: dict[str, Any]) -> int:
    last = pred.parallel["stages"][0]["layers"][-1]
    return 1 + [l["name"] for l in net["layers"]].index(last)


def measure_stream_cpu(link: str, base: dict, store: Path, say) -> None:
    """The network path's CPU while one direction, then both directions, of `link` stream (no compute)."""
    reps = max(4, int(emu_spec(link, 2).links[0].rate_bps / 8 / CPU_BENCH_BYTES))  # about one second
    for d in (1, 2):
        say(f"link {link}: CPU of the network path while streaming {d} way(s) ...")
        with EmulatedCluster(emu_spec(link, 2)) as cl:
            res = run_task(cl, 1, {"task": "p2pcpu", "bytes": CPU_BENCH_BYTES, "reps": reps, "threads": 1,
                                   "directions": d}, module=WORKERS)
        append_jsonl(store, {**base, "kind": CPU_KIND, "link": link, "bytes": CPU_BENCH_BYTES, "reps": reps,
                             "directions": d, **res[0], "rank_results": res,
                             "topology": topology(emu_spec(link, 2), 1)})
        say(f"  {res[0]['busy_cpu_s'] / res[0]['wall_s']:.2f} cores busy")


def measure(names, rounds, base: dict, store: Path, say, steps: int | None, links: dict[str, LinkFit],
            device: Device, process_speed: float | None, memory_speed: float | None,
            cores: dict[str, tuple[float, float]]) -> None:
    """Measure every selected case in each of `rounds` (fresh emulated cluster and processes each); append
    records. The workers run the model's stage cut (the prediction the report makes: `cores` per link)."""
    sel = [c for c in CASES if c.name in names]
    for r in rounds:
        for c in sel:
            c = c if steps is None else PipeCase(**{**asdict(c), "steps": steps})
            net = NETWORKS[c.network]
            pred = predict_case(c, device, p2p_link(links[c.link]), process_speed, memory_speed,
                                cores.get(c.link, (0.0, 0.0)))
            s0, s1, shape = stage_graphs(net, _first_stage_count(pred, net))
            task = {"task": "pipe", "stages": [s0, s1], "boundary_shape": shape, "batch": c.batch,
                    "microbatches": c.microbatches, "schedule": c.schedule, "warmup": c.warmup, "steps": c.steps,
                    "threads": 1}
            say(f"round {r}, case {c.name} ...")
            with EmulatedCluster(emu_spec(c.link, 2)) as cl:
                res = run_task(cl, 1, task, module=WORKERS)
            ends = [x["ends"] for x in res]
            per_step = step_times(ends)
            append_jsonl(store, {**base, "kind": KIND, "case": c.name, "case_spec": asdict(c), "round": r,
                                 "topology": topology(emu_spec(c.link, 2), 1), "stage_layers": [len(s0["layers"]),
                                                                                                 len(s1["layers"])],
                                 "rank_end_times_s": ends, "step_times_s": per_step,
                                 **{f"rank_{k}_s": [x[k] for x in res] for k in RANK_SERIES},
                                 "load_avg_before": os.getloadavg(),
                                 "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
            say(f"  median {statistics.median(per_step) * 1e3:.1f} ms")


def step_times(rank_ends: list[list[float]]) -> list[float]:
    """Per step, the slowest rank's time since its previous step ended (step 0: since the common barrier)."""
    out = []
    for i in range(len(rank_ends[0])):
        out.append(max(e[i] - (e[i - 1] if i else 0.0) for e in rank_ends))
    return out


def transfer_share(pred, case: PipeCase, link: Link) -> float:
    """Time the boundary link is busy in one direction per step (m activation transfers, each alpha + n/B as the
    model prices a point-to-point message) over the predicted step."""
    net = NETWORKS[case.network]
    _, _, shape = stage_graphs(net, _first_stage_count(pred, net))
    n = case.batch // case.microbatches * 4.0 * math.prod(shape)
    return case.microbatches * point_to_point(n, 2, link.bandwidth_Bps, link.latency_s) / pred.iteration_time_s


def results(recs: list[dict], device: Device, links: dict[str, LinkFit], process_speed: float | None,
            memory_speed: float | None) -> list[EmuCaseResult]:
    """The report rows of one run's pipeline records (torch-free)."""
    out = []
    for name in dict.fromkeys(r["case"] for r in recs if r.get("kind") == KIND):
        rs = [r for r in recs if r.get("case") == name and r.get("kind") == KIND]
        c = PipeCase(**rs[0]["case_spec"])
        link = p2p_link(links[c.link])
        cores = stream_cores(recs, c.link)
        pred = predict_case(c, device, link, process_speed, memory_speed, cores)
        res = EmuCaseResult.build(c.name, f"pp2 {c.schedule} m={c.microbatches} {c.link}", rs, pred,
                                  rs[0]["topology"], c.batch)
        comm = {**res.communication, "exposed_pipeline_transfer_s": pred.parallel.get("pipeline_transfer_s"),
                "bubble_s": pred.parallel.get("bubble_s"), "link": link.name, "stream_cores": list(cores),
                "network_cpu_s": network_cpu_s(c, pred, link, cores),
                "stage0_layers_predicted": _first_stage_count(pred, NETWORKS[c.network]), "link_bandwidth_Bps": link.bandwidth_Bps,
                "comm_s": transfer_share(pred, c, link) * pred.iteration_time_s}
        out.append(replace(res, communication=comm))
    return out


# --- the cluster-emu suite's hooks (cluster_emu.PLUGINS) ---------------------------------------------------

def run_context(store: Path, run_id: str, profile: Any = None):
    """(device, link fits, process speed, memory speed, records) of one stored run (torch-free)."""
    recs = [r for r in read_jsonl(store) if r.get("run_id") == run_id] if Path(store).is_file() else []
    fits = {r["name"]: LinkFit.from_record(r) for r in recs if r.get("kind") == "link_fit"}
    pc = [r for r in recs if r.get("kind") == "process_contention_microbenchmark"]
    ps, ms = (pc[-1]["process_speed"], pc[-1].get("memory_speed")) if pc else (None, None)
    return resolve_profile(profile, "cpu"), fits, ps, ms, recs


def measure_suite(store: Path, base: dict, cases=(), rounds=(1, 2), calibrate: bool = True, say=print) -> None:
    """Measure the selected pipeline cases (all when `cases` is empty) under run
    base["run_id"]: link fits missing from the run are calibrated first; with `calibrate`, the network-path CPU
    microbenchmark of each link too."""
    names = [n for n in CASE_NAMES if n in cases] if cases else list(CASE_NAMES)
    if not names:
        return
    links = list(dict.fromkeys(c.link for c in CASES if c.name in names))
    dev, fits, _, _, recs = run_context(store, base["run_id"])
    for link in links:
        if link not in fits:
            fits[link] = measure_link_profile(link, base, store, say)
        if calibrate or min(stream_cores(recs, link)) <= 0:
            measure_stream_cpu(link, base, store, say)
    dev, fits, ps, ms, recs = run_context(store, base["run_id"])
    measure(names, rounds, base, store, say, None, fits, dev, ps, ms, {k: stream_cores(recs, k) for k in links})


def report_rows(recs: list[dict], device: Device, fits: dict[str, LinkFit], ps: float | None,
                ms: float | None) -> list[EmuCaseResult]:
    """The pipeline rows of one run's report."""
    return results(recs, device, fits, ps, ms)
