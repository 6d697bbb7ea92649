"""Benchmark: a 10,080-scenario sweep (target from issue 5: under 10 s on the 2-core development machine).

Grid: 2 networks (ResNet-50, BERT-base) x 8 GPU profiles x 7 device counts (1..64) x 6 per-device
batches x 3 dtypes (fp32, fp16, bf16: bf16 is an error row on pre-Ampere GPUs) x 5 all-reduce
algorithms = 10,080 rows. Prints the wall time, scenarios per second and the number of distinct
predict() calls; `--json` for machine-readable figures, `--profile` for a cProfile of the sweep,
`--network NAME` (repeatable) to time other networks.

    python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HARDWARE = ["k80", "p100-sxm2", "v100-pcie", "v100-sxm2", "t4", "a100-sxm4-40gb", "a100-sxm4-80gb", "h100-sxm"]
DEVICES = [1, 2, 4, 8, 16, 32, 64]
BATCH = [8, 16, 32, 64, 128, 256]
DTYPE = ["fp32", "fp16", "bf16"]
ALLREDUCE = ["ring", "tree", "halving-doubling", "hierarchical", "ps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", action="append", help="network(s) to sweep (default: resnet50 and bert_base)")
    ap.add_argument("--json", action="store_true", help="print figures as JSON")
    ap.add_argument("--profile", action="store_true", help="print the 20 costliest functions (cProfile)")
    ap.add_argument("--workers", default="1,2", help="worker processes to time, comma-separated (default 1,2)")
    args = ap.parse_args()
    networks = args.network or ["resnet50", "bert_base"]

    t_imp = time.perf_counter()
    from perfmodel.graph.io import load_network
    from perfmodel.sweeps import sweep

    import_s = time.perf_counter() - t_imp
    graphs = [load_network(n) for n in networks]  # loading the network files is not part of the sweep timing
    n = len(graphs) * len(HARDWARE) * len(DEVICES) * len(BATCH) * len(DTYPE) * len(ALLREDUCE)

    def run(workers: int = 1):
        return sweep(graphs, hardware=HARDWARE, devices=DEVICES, batch=BATCH, dtype=DTYPE, allreduce=ALLREDUCE,
                     workers=workers)

    if args.profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        run()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)
    timings = {}
    cpu = {}
    ref = None
    for w in [int(x) for x in args.workers.split(",")]:
        t0, c0 = time.perf_counter(), time.process_time()
        res = run(w)
        timings[w] = time.perf_counter() - t0
        cpu[w] = time.process_time() - c0  # this process only (workers not counted)
        assert len(res) == n
        if ref is None:
            ref = res
        else:
            assert res.rows == ref.rows, "rows differ between worker counts"
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover
        load = None
    figures = {
        "scenarios": n, "wall_s": {str(w): round(t, 3) for w, t in timings.items()},
        "scenarios_per_s": {str(w): round(n / t, 1) for w, t in timings.items()},
        "cpu_s_serial": round(cpu[1], 3) if 1 in cpu else None,
        "predict_calls": ref.predict_calls, "ok_rows": len(ref.ok), "error_rows": len(ref.errors),
        "networks": networks, "import_s": round(import_s, 3), "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_average_1min": load, "target_s": 10.0,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for w, t in timings.items():
            extra = f"; CPU time {cpu[w]:.2f} s (what an idle core would take)" if w == 1 else ""
            print(f"{n} scenarios, {w} worker(s): {t:.2f} s ({n / t:,.0f} scenarios/s){extra}")
        print(f"{ref.predict_calls} distinct predict() calls; {len(ref.ok)} feasible rows, {len(ref.errors)} error rows; "
              f"{os.cpu_count()} CPUs, load average {load}; target < 10 s")


if __name__ == "__main__":
    main()
