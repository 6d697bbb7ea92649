"""Serving: latency and throughput of a CNN, an LSTM and a transformer per batch size (forward only).

Run: python examples/serving_latency.py
"""

import perfmodel
from perfmodel.units import fmt_bytes

for net, hw, dtype in (("resnet50", "t4", "fp16"), ("lstm32", "v100-sxm2", "fp32"), ("bert_base", "a100-sxm4-40gb", "fp16")):
    r = perfmodel.serve(net, hw, [1, 8, 32, 128], dtype=dtype)
    print(f"{r.network} on {r.hardware} ({dtype}); largest batch that fits: {r.max_batch:,}")
    for p in r.points:
        print(f"  batch {p.batch:4d}: latency {p.latency_s * 1e3:7.2f} ms, {p.throughput:9,.0f} samples/s, "
              f"memory {fmt_bytes(p.memory.total_bytes)}")
