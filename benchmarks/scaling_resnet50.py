"""Scaling table: ResNet-50 on DGX-1 (V100) clusters, 1 to 64 GPUs, over 100 GbE and EDR InfiniBand.

Synchronous ring all-reduce vs synchronous parameter servers (one dedicated server, or one shard per
node co-located with the workers) vs asynchronous training (parameter servers sharded over the
nodes). Weak scaling: the batch per GPU is fixed. Prints markdown tables (throughput in images/s and
scaling efficiency = throughput / (GPUs x one GPU's throughput)).

    python benchmarks/scaling_resnet50.py [--batch 64] [--dtype fp32] [--json]
"""

from __future__ import annotations

import argparse
import json

from perfmodel import predict

CLUSTERS = {
    "100 GbE (1 port/node)": "dgx1-v100-eth100g",
    "EDR IB (1 port/node)": "dgx1-v100-ib-edr-1nic",
    "EDR IB (4 ports/node)": "dgx1-v100-ib-edr",
}
GPUS = (1, 2, 4, 8, 16, 32, 64)
MODES = {
    "ring": dict(sync="sync", allreduce="ring"),
    "ps x1": dict(sync="sync", allreduce="ps"),
    "ps sharded": dict(sync="sync", allreduce="ps", ps_colocated=True),
    "async (ps sharded)": dict(sync="async", ps_colocated=True),
    "mixed (ring in node, async ps between)": dict(sync="mixed", ps_colocated=True),
}


def scaling_table(batch: int = 64, dtype: str = "fp32", network: str = "resnet50") -> list[dict]:
    """One row per (cluster, GPUs, mode): iteration time, throughput, efficiency, exposed communication."""
    rows = []
    for label, hw in CLUSTERS.items():
        for n in GPUS:
            for mode, opts in MODES.items():
                p = predict(network, hw, batch=batch, dtype=dtype, devices=n, layers=False, **opts)
                rows.append({
                    "cluster": label, "hardware": hw, "gpus": n, "mode": mode,
                    "iteration_s": p.iteration_time_s, "images_per_s": p.throughput_samples_per_s,
                    "efficiency": p.parallel["scaling_efficiency"],
                    "exposed_comm_s": p.breakdown["communication"],
                    "staleness": p.parallel["staleness"],
                })
    return rows


def markdown(rows: list[dict], batch: int, dtype: str) -> str:
    out = [f"ResNet-50, {dtype}, batch {batch} per GPU (weak scaling); images/s (scaling efficiency)", ""]
    for label in CLUSTERS:
        out.append(f"**DGX-1 cluster over {label}**")
        out.append("")
        out.append("| GPUs | " + " | ".join(MODES) + " |")
        out.append("|---:|" + "---:|" * len(MODES))
        for n in GPUS:
            cells = []
            for mode in MODES:
                r = next(r for r in rows if r["cluster"] == label and r["gpus"] == n and r["mode"] == mode)
                cells.append(f"{r['images_per_s']:,.0f} ({r['efficiency']:.0%})")
            out.append(f"| {n} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", default="fp32")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    rows = scaling_table(a.batch, a.dtype)
    print(json.dumps(rows, indent=1) if a.json else markdown(rows, a.batch, a.dtype))


if __name__ == "__main__":
    main()
