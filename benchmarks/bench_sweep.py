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
    args = ap.parse_args()
    networks = args.network or ["resnet50", "bert_base"]

    t_imp = time.perf_counter()
    from perfmodel.graph.io import load_network
    from perfmodel.sweep import sweep

    import_s = time.perf_counter() - t_imp
    graphs = [load_network(n) for n in networks]  # loading the network files is not part of the sweep timing
    n = len(graphs) * len(HARDWARE) * len(DEVICES) * len(BATCH) * len(DTYPE) * len(ALLREDUCE)

    def run():
        return sweep(graphs, hardware=HARDWARE, devices=DEVICES, batch=BATCH, dtype=DTYPE, allreduce=ALLREDUCE)

    if args.profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        res = run()
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(20)
    t0 = time.perf_counter()
    res = run()
    wall = time.perf_counter() - t0
    assert len(res) == n
    figures = {
        "scenarios": n, "wall_s": round(wall, 3), "scenarios_per_s": round(n / wall, 1),
        "predict_calls": res.predict_calls, "ok_rows": len(res.ok), "error_rows": len(res.errors),
        "networks": networks, "import_s": round(import_s, 3), "python": platform.python_version(),
        "machine": platform.processor() or platform.machine(), "target_s": 10.0,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"{n} scenarios in {wall:.2f} s ({n / wall:,.0f} scenarios/s; {res.predict_calls} distinct predict() "
              f"calls; {len(res.ok)} feasible rows, {len(res.errors)} error rows); target < 10 s")


if __name__ == "__main__":
    main()
