"""Freeze today's outputs of predict, plan_search and sweep into tests/golden/*.json.

Run `python3 tests/golden/make_golden.py` only to regenerate deliberately (and list every intended
difference in the commit message); tests/golden/test_golden.py compares against these files.
The calibrated CPU profile and a 2-process CPU node are frozen copies in this folder, so a
recalibration of this machine does not move the golden numbers.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CPU_CAL = str(HERE / "frozen-amd-epyc-2c-kvm.yaml")
CPU_NODE = str(HERE / "frozen-cpu-2proc-node.yaml")

ZOO = ("alexnet", "alexnet_dlbench", "autoencoder", "bert_base", "dcgan", "deconvnet", "fcn5", "fcn8", "googlenet",
       "gpt2_small", "gpt3_175b", "lstm32", "lstm64", "rbm", "resnet50", "vae", "vgg16")
SMALL_ZOO = ("alexnet", "fcn5", "lstm32", "resnet50", "autoencoder", "vae", "rbm", "dcgan")


def predict_cases() -> list[tuple[str, str, str, dict[str, Any]]]:
    """(id, network, hardware, predict keyword options) of every golden predict case."""
    cases: list[tuple[str, str, str, dict[str, Any]]] = []

    def add(net: str, hw: str, **kw: Any) -> None:
        cid = f"{net}@{Path(hw).stem}:" + ",".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(kw.items()))
        cases.append((cid, net, hw, kw))

    for n in ZOO:  # one device, two GPUs
        add(n, "v100-sxm2", batch=16)
        add(n, "a100-sxm4-40gb", batch=8, dtype="bf16", optimizer="adam")
    for n in SMALL_ZOO:  # CPUs: datasheet with threads, and the frozen calibrated profile
        add(n, "xeon-e5-2630v3-2s", batch=8, threads=8)
        add(n, CPU_CAL, batch=4, optimizer="momentum")
    add("resnet50", "xeon-e5-2630v3-2s", batch=8, threads=32)
    add("fcn5", "t4", batch=64, dtype="fp16")
    add("vgg16", "h100-sxm", batch=32, dtype="fp8")
    # data parallel on nodes, every all-reduce algorithm
    for ar in ("ring", "tree", "halving-doubling", "hierarchical", "ps"):
        add("resnet50", "dgx1-v100", batch=32, devices=8, allreduce=ar)
    add("resnet50", "dgx1-v100", batch=32, devices=8, overlap=False, bucket_bytes=5e6)
    add("resnet50", "dgx1-v100", batch=256, devices=8, scaling="strong")
    add("resnet50", "dgx1-v100", batch=32, devices=8, grad_accumulation=3, straggler_cv=0.05)
    add("resnet50", "v100-sxm2", batch=32, devices=4)
    add("lstm32", "k80-server", batch=64, devices=4, grad_accumulation=2, bucket_bytes=1e6)
    # clusters: sync modes, stragglers, parameter servers
    for hw in ("dgx1-v100-eth10g", "dgx1-v100-ib-edr"):
        for sync in ("sync", "async", "mixed"):
            add("resnet50", hw, batch=32, devices=32, sync=sync, straggler_cv=0.1)
    add("alexnet", "dgx1-v100-eth10g", batch=64, devices=16, sync="async", ps_servers=2)
    add("alexnet", "dgx1-v100-eth10g", batch=64, devices=16, sync="async", ps_colocated=True)
    add("alexnet", "dgx1-v100-eth10g", batch=64, devices=16, sync="mixed", ps_servers=4)
    add("alexnet", "dgx1-v100-eth10g", batch=64, devices=16, allreduce="ps", ps_servers=2)
    add("vgg16", "dgx1-v100-eth25g", batch=32, devices=16, nodes=2, allreduce="hierarchical")
    add("vgg16", "pcie-8x-gtx1080", batch=16, devices=8, p2p=False)
    add("vgg16", "pcie-8x-gtx1080", batch=16, devices=8, p2p=True, sync="async")
    add("alexnet", "cpu-cluster-eth10g", batch=32, devices=4)
    add("fcn5", "cpu-cluster-eth10g", batch=32, devices=4, sync="async")
    add("fcn5", CPU_NODE, batch=16, devices=2)
    add("resnet50", CPU_NODE, batch=4, devices=2, threads=1)
    # storage and data flow
    add("resnet50", "dgx1-v100", batch=64, devices=8, storage="hdd", dataset_size=150e9)
    add("resnet50", "dgx1-v100", batch=64, devices=8, storage="hdd", raid0=4, dataset_size=1.2e12, prefetch=False)
    add("resnet50", "dgx-a100", batch=128, devices=8, storage="nvme-pcie4", dataset_size=1.2e12,
        input_bytes_per_sample=110e3, dtype="bf16")
    add("alexnet", "v100-sxm2", batch=128, storage="sata-ssd", dataset_size=2e12)
    # tensor and pipeline parallelism
    add("gpt2_small", "dgx-a100", batch=16, dtype="bf16", optimizer="adam",
        plan={"dp": 2, "tp": 2, "pp": 2, "microbatches": 4})
    add("gpt2_small", "dgx-a100", batch=16, dtype="bf16", optimizer="adam",
        plan={"dp": 2, "tp": 2, "pp": 2, "microbatches": 4, "schedule": "gpipe"})
    add("gpt2_small", "dgx-a100", batch=8, plan={"dp": 1, "tp": 8, "pp": 1})
    add("bert_base", "dgx1-v100-ib-edr", batch=32, optimizer="adam", dtype="fp16",
        plan={"dp": 4, "tp": 2, "pp": 2, "microbatches": 8})
    add("vgg16", "dgx1-v100", batch=32, plan={"dp": 2, "tp": 1, "pp": 4, "microbatches": 4})
    add("resnet50", "dgx1-v100", batch=32, plan={"dp": 1, "tp": 2, "pp": 4, "microbatches": 8},
        grad_accumulation=2)
    add("gpt3_175b", "dgx-a100-ib-hdr", batch=192, dtype="bf16", optimizer="adam",
        plan={"dp": 8, "tp": 8, "pp": 16, "microbatches": 192})
    add("fcn8", "dgx1-v100", batch=64, plan={"dp": 1, "tp": 1, "pp": 4})
    return cases


PLAN_CASES: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("gpt2-dgx-a100-8", "gpt2_small", "dgx-a100", {"devices": 8, "global_batch": 64, "top": 5}),
    ("bert-dgx1-ib-16", "bert_base", "dgx1-v100-ib-edr", {"devices": 16, "global_batch": 128, "top": 5,
                                                          "objective": "cost"}),
    ("gpt3-a100-1024", "gpt3_175b", "dgx-a100-ib-hdr", {"devices": 1024, "global_batch": 1536, "top": 5,
                                                         "microbatch": [1, 2], "tp": [4, 8], "pp": [8, 16]}),
)

SWEEP_CASE: dict[str, Any] = dict(network=["resnet50", "gpt2_small"], hardware=["dgx1-v100", "a100-sxm4-40gb"],
                                  devices=[1, 2, 8], batch=[16, 64], dtype=["fp32", "fp16"], allreduce=["ring", "tree"])


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of nested dicts/lists as {"a.b.0": value} (numbers, strings, bools, None)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
    else:
        if isinstance(obj, float) and not math.isfinite(obj):
            obj = repr(obj)
        out[prefix[:-1]] = obj
    return out


def prediction_digest(p) -> dict[str, Any]:
    """What a golden predict case pins: every result field but the free-text assumptions and warnings,
    plus each layer's total time."""
    d = p.to_dict(layers=False)
    d.pop("assumptions", None)
    d.pop("warnings", None)
    d.pop("layers", None)
    out = flatten(d)
    out["layer_total_s"] = [r.time_s["total"] for r in p.layers]
    return out


def run_predict() -> dict[str, Any]:
    from perfmodel import predict

    out = {}
    for cid, net, hw, kw in predict_cases():
        try:
            out[cid] = prediction_digest(predict(net, hw, **kw))
        except Exception as e:  # an error is an output too
            out[cid] = {"error": f"{type(e).__name__}: {e}"}
    return out


def run_plan_search() -> dict[str, Any]:
    from perfmodel.planning.search import plan_search

    out = {}
    for cid, net, hw, kw in PLAN_CASES:
        r = plan_search(net, hw, **kw)
        d = r.to_dict()
        d.pop("search_time_s")
        d.pop("assumptions")
        out[cid] = flatten(d)
    return out


def run_sweep() -> dict[str, Any]:
    from perfmodel.sweeps import sweep

    res = sweep(**SWEEP_CASE)
    return {str(i): flatten(r) for i, r in enumerate(res.rows)}


FILES = {"predict.json": run_predict, "plan_search.json": run_plan_search, "sweep.json": run_sweep}


def main(argv: list[str]) -> None:
    for name, fn in FILES.items():
        if len(argv) > 1 and name not in argv[1:]:
            continue
        data = fn()
        (HERE / name).write_text(json.dumps(data, indent=0, sort_keys=True) + "\n")
        print(f"{name}: {len(data)} cases")


if __name__ == "__main__":
    main(sys.argv)
