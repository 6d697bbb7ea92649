"""Does GPT-2 small fit on a 16 GB V100 for training, and how much does activation recomputation buy?

Run: python examples/memory_fit.py
"""

import perfmodel
from perfmodel.units import fmt_bytes

for recompute in (None, "blocks", "sqrt"):
    r = perfmodel.fit("gpt2_small", "v100-sxm2", dtype="fp16", optimizer="adam", recompute=recompute)
    m = r.memory
    print(f"recompute={recompute!s:6}: largest batch {r.batch:3d} "
          f"(activations {fmt_bytes(m.activations_bytes)}, total {fmt_bytes(m.total_bytes)} of "
          f"{fmt_bytes(m.capacity_bytes)}); step {r.iteration_time_s * 1e3:.0f} ms, "
          f"{r.throughput:.1f} samples/s, recomputation {r.recompute_time_s * 1e3:.0f} ms")

# the same question for every built-in GPU at once: the sweep's max_batch column
res = perfmodel.sweep("bert_base", hardware=["t4", "v100-sxm2", "a100-sxm4-80gb", "h100-sxm"], batch=32,
                      dtype="fp16", optimizer="adam")
for row in res.rows:
    print(f"BERT-base on {row['hardware']:15}: largest batch per device {row['max_batch']}")
