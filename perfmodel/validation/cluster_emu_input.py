"""cluster-emu input-pipeline cases: a DataLoader reading sample files from a rate-limited source.

Node 0 of a 2-node emulated cluster (cluster_emu_net) runs an HTTP file server (python3 -m http.server) over a
folder of sample files (fp32, one file per sample); node 1 trains one process of one thread whose DataLoader
fetches every sample over the tbf-shaped link (no local cache: each epoch reads the source again), without
prefetch (num_workers=0: the training process reads a batch, then computes) and with it (loader worker
processes fetch ahead, prefetch_factor batches each).

The source is measured like a disk: HTTP GETs of a small and of a sample-sized file from node 1 give its access
latency and read bandwidth: a Storage profile of type "network" (dataflow: read per sample, never page-cached).
Predicted by perfmodel.predict with that storage, dataset_size, input_bytes_per_sample and prefetch.
"""

from __future__ import annotations

import datetime as _dt
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..graph.io import network_from_dict
from ..hardware.schema import Device, Storage
from ..hardware.topology import Node
from ..prediction import predict
from ..store import append_jsonl, read_jsonl
from .cluster_emu_links import emu_spec
from .cluster_emu_net import EmulatedCluster, run_processes
from .cluster_emu_report import EmuCaseResult
from .cluster_emu_run import topology

KIND = "emu_input_step"
SOURCE_KIND = "emu_input_source"
WORKERS = "perfmodel.torch.pipe_workers"
SAMPLE_VALUES = 262144  # fp32 values per sample file: 1 MiB
SMALL_FILE = 4096  # bytes of the latency probe file
FILES = 48  # sample files on the source (the dataset)
FETCH_REPS = 6

# A sample is a 512 x 512 fp32 matrix (1 MiB); a row-wise dense (small weights, compute-bound) reads all of it.
EMU_INPUT = {"name": "emu-input", "layers": [
    {"op": "input", "name": "x", "shape": [512, 512]},
    {"op": "dense", "name": "fc1", "units": 768}, {"op": "relu", "name": "relu1"},
    {"op": "dense", "name": "fc2", "units": 8}, {"op": "relu", "name": "relu2"},
    {"op": "flatten", "name": "flat"},
    {"op": "dense", "name": "fc3", "units": 10}, {"op": "softmax_cross_entropy", "name": "loss"}]}
NETWORKS = {"emu-input": EMU_INPUT}


@dataclass(frozen=True)
class InputCase:
    name: str
    network: str
    batch: int
    link: str  # cluster_emu_links.LINKS key: the source's link (both nodes)
    workers: int  # DataLoader worker processes (0: no prefetch)
    prefetch_factor: int = 2
    steps: int = 10
    warmup: int = 2


CASES = (
    InputCase("input-500m-noprefetch", "emu-input", 4, "emu-500m", 0),
    InputCase("input-500m-prefetch", "emu-input", 4, "emu-500m", 2),
    InputCase("input-2g-noprefetch", "emu-input", 4, "emu-2g", 0),
    InputCase("input-2g-prefetch", "emu-input", 4, "emu-2g", 2),
)
CASE_NAMES = tuple(c.name for c in CASES)


def source_storage(rec: dict[str, Any]) -> Storage:
    """The emulated source as a storage profile: latency = median GET of the small file, bandwidth = sample bytes
    over (median GET of a sample file - that latency)."""
    lat = statistics.median(rec["small_s"])
    big = statistics.median(rec["sample_s"])
    return Storage(name=f"emu-http-{rec['link']}", type="network", read_bandwidth=rec["sample_bytes"] / (big - lat),
                   latency=lat, source=f"cluster-emu: HTTP GETs over {rec['link']}, {rec['created_utc']}")


def predict_case(case: InputCase, device: Device, storage: Storage):
    node = Node(name="emu-input-node", source="one network namespace of the emulated cluster", device=device,
                devices=1, host_memory=8e9, storage=storage, fabric_type="host")
    b = SAMPLE_VALUES * 4.0
    return predict(network_from_dict(NETWORKS[case.network]), node, batch=case.batch, devices=1, threads=1,
                   optimizer="sgd", dataset_size=FILES * b, input_bytes_per_sample=b, prefetch=case.workers > 0,
                   layers=False)


def _write_files(folder: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(FILES):
        (folder / f"s{i}.bin").write_bytes(rng.standard_normal(SAMPLE_VALUES, dtype=np.float32).tobytes())
    (folder / "small.bin").write_bytes(b"\0" * SMALL_FILE)


def _with_server(link: str, tasks: list[dict[str, Any]]) -> list[Any]:
    """Start the file server in node 0, run each task in node 1 (one process after another); their results."""
    import json

    out = []
    with tempfile.TemporaryDirectory(prefix="perfmodel-emu-input-") as d:
        data = Path(d, "data")
        data.mkdir()
        _write_files(data)
        spec = emu_spec(link, 2)
        port = random.randint(20000, 60000)
        with EmulatedCluster(spec) as cl:
            srv = subprocess.Popen([*cl.exec_prefix(0), sys.executable, "-m", "http.server", str(port), "--bind",
                                    spec.address(0), "--directory", str(data)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            try:
                time.sleep(1.5)  # the server binds
                for i, t in enumerate(tasks):
                    tf = Path(d, f"task{i}.json")
                    tf.write_text(json.dumps({**t, "url": f"http://{spec.address(0)}:{port}", "threads": 1}))
                    res = run_processes(cl, [(1, [sys.executable, "-m", WORKERS, str(tf), d],
                                              {"OMP_NUM_THREADS": "1", "RANK": "0"})], 600)
                    if res[0][0] != 0:
                        raise RuntimeError(f"input worker failed: {res[0][1][-600:]}")
                    out.append(json.loads(Path(d, "rank0.json").read_text()))
            finally:
                srv.kill()
                srv.wait()
    return out


def measure_source(link: str, base: dict, store: Path, say) -> None:
    say(f"input source over {link}: HTTP GET of {SMALL_FILE} B and {SAMPLE_VALUES * 4} B files ...")
    res = _with_server(link, [{"task": "fetch", "files": ["small.bin", "s0.bin"], "reps": FETCH_REPS}])[0]
    rec = {**base, "kind": SOURCE_KIND, "link": link, "small_bytes": SMALL_FILE, "sample_bytes": SAMPLE_VALUES * 4,
           "small_s": res["small.bin"], "sample_s": res["s0.bin"], "topology": topology(emu_spec(link, 2), 1),
           "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    append_jsonl(store, rec)
    st = source_storage(rec)
    say(f"  latency {st.latency_s * 1e3:.2f} ms, {st.read_bandwidth_Bps / 1e6:.1f} MB/s")


def measure_cases(names, rounds, base: dict, store: Path, say) -> None:
    sel = [c for c in CASES if c.name in names]
    for r in rounds:
        for link in dict.fromkeys(c.link for c in sel):
            cs = [c for c in sel if c.link == link]
            say(f"round {r}, input cases over {link}: {', '.join(c.name for c in cs)} ...")
            tasks = [{"task": "input", "files": FILES, "graph": NETWORKS[c.network], "batch": c.batch,
                      "workers": c.workers, "prefetch_factor": c.prefetch_factor, "warmup": c.warmup,
                      "steps": c.steps} for c in cs]
            for c, ends in zip(cs, _with_server(link, tasks)):
                per_step = [e - (ends[i - 1] if i else 0.0) for i, e in enumerate(ends)]
                append_jsonl(store, {**base, "kind": KIND, "case": c.name, "case_spec": asdict(c), "round": r,
                                     "topology": topology(emu_spec(link, 2), 1), "step_times_s": per_step,
                                     "load_avg_before": os.getloadavg(),
                                     "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
                say(f"  {c.name}: median {statistics.median(per_step) * 1e3:.1f} ms")


# --- the cluster-emu suite's hooks ---------------------------------------------------------------------------

def measure_suite(store: Path, base: dict, cases=(), rounds=(1, 2), calibrate: bool = True, say=print) -> None:
    """Measure the source of each selected link (with `calibrate`, or when this run has none), then the cases."""
    names = [n for n in CASE_NAMES if n in cases] if cases else list(CASE_NAMES)
    if not names:
        return
    recs = [r for r in read_jsonl(store) if r.get("run_id") == base["run_id"]] if Path(store).is_file() else []
    for link in dict.fromkeys(c.link for c in CASES if c.name in names):
        if calibrate or not any(r.get("kind") == SOURCE_KIND and r.get("link") == link for r in recs):
            measure_source(link, base, store, say)
    measure_cases(names, rounds, base, store, say)


def report_rows(recs: list[dict], device: Device, fits=None, ps=None, ms=None) -> list[EmuCaseResult]:
    """The input-pipeline rows of one run's report (the source profile of the run's last source record)."""
    out = []
    for name in dict.fromkeys(r["case"] for r in recs if r.get("kind") == KIND):
        rs = [r for r in recs if r.get("case") == name and r.get("kind") == KIND]
        c = InputCase(**rs[0]["case_spec"])
        src = [r for r in recs if r.get("kind") == SOURCE_KIND and r.get("link") == c.link][-1]
        st = source_storage(src)
        pred = predict_case(c, device, st)
        res = EmuCaseResult.build(c.name, f"input {c.link}, {c.workers} loader workers", rs, pred, rs[0]["topology"],
                                  c.batch)
        par = pred.parallel or {}
        comm = {**res.communication, "io_s": par.get("io_s"), "exposed_io_s": par.get("exposed_io_s"),
                "prefetch": par.get("prefetch"), "storage_latency_s": st.latency_s,
                "storage_read_Bps": st.read_bandwidth_Bps, "comm_s": par.get("io_s")}
        out.append(replace(res, communication=comm))
    return out
