"""The issue-10 speed targets, asked by name through the public API (medians of repeated calls).

Run: python3 benchmarks/bench_engine.py [--json] [--quick]. Numbers depend on the machine; measure on a
quiet one (this project: under `flock -x /tmp/perfmodel-cpu.lock`).

Targets: GPT-3 175B on 1,024 A100s (TP8 x PP16 x DP8, global batch 1,536) <= 0.3 ms; ResNet-50 on a
V100 <= 1 ms; a sweep of 10,000 scenarios <= 1 s; plan search for GPT-3 175B at 16,384 GPUs <= 1 s; plan search
for GPT-3 175B on 1,024 A100s with every large-model option (issue 14) <= 3 s.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

GPT3 = dict(batch=192, dtype="bf16", optimizer="adam", devices=1024,
            plan={"dp": 8, "tp": 8, "pp": 16, "microbatches": 192}, layers=False)


def median_s(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    import perfmodel

    quick = "--quick" in sys.argv
    res: dict[str, float] = {}
    t = time.perf_counter()
    perfmodel.predict("gpt3_175b", "dgx-a100-ib-hdr", **GPT3)
    res["gpt3_1024_first_call_s"] = time.perf_counter() - t
    res["gpt3_1024_by_name_s"] = median_s(lambda: perfmodel.predict("gpt3_175b", "dgx-a100-ib-hdr", **GPT3), 200)
    new = iter([m for m in range(1, 193) if 192 % m == 0 and m != 192])  # plans not asked before
    res["gpt3_1024_new_microbatching_s"] = median_s(lambda: perfmodel.predict(
        "gpt3_175b", "dgx-a100-ib-hdr", **{**GPT3, "plan": {**GPT3["plan"], "microbatches": next(new)}}), 7)
    res["gpt3_1024_with_layers_s"] = median_s(
        lambda: perfmodel.predict("gpt3_175b", "dgx-a100-ib-hdr", **{**GPT3, "layers": True}), 20)
    perfmodel.predict("resnet50", "v100-sxm2")
    res["resnet50_v100_by_name_s"] = median_s(lambda: perfmodel.predict("resnet50", "v100-sxm2"), 200)
    res["resnet50_v100_no_layers_s"] = median_s(lambda: perfmodel.predict("resnet50", "v100-sxm2", layers=False), 200)
    grid = dict(network=["resnet50", "vgg16", "alexnet", "gpt2_small", "bert_base"],
                hardware=["dgx1-v100", "dgx-a100"], devices=[1, 2, 4, 8], batch=[8, 16, 32, 64, 128],
                dtype=["fp32", "fp16"], allreduce=["ring", "tree", "halving-doubling", "hierarchical", "ps"],
                straggler_cv=[0.0, 0.05, 0.1, 0.2, 0.3])  # 10,000 scenarios
    if quick:
        grid["straggler_cv"] = [0.0]
    n = 1
    for v in grid.values():
        n *= len(v)
    t = time.perf_counter()
    r = perfmodel.sweep(**grid, workers=1)
    res[f"sweep_{n}_scenarios_s"] = time.perf_counter() - t
    assert len(r) == n
    big = perfmodel.load_hardware("dgx-a100-ib-hdr").model_copy(update={"nodes": 2048})  # 16,384 GPUs
    res["plan_gpt3_16384_s"] = median_s(lambda: perfmodel.plan_search(
        "gpt3_175b", big, devices=16384, global_batch=1536, device="a100-sxm4-80gb"), 1 if quick else 3)
    # issue 14: every large-model option searched, global batch from the network file (1,536)
    res["plan_gpt3_1024_s"] = median_s(lambda: perfmodel.plan_search("gpt3_175b", "dgx-a100-ib-hdr", devices=1024),
                                       1 if quick else 3)
    if "--json" in sys.argv:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:34s} {v * 1e3:10.3f} ms")


if __name__ == "__main__":
    main()
