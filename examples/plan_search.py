"""Which data / tensor / pipeline split trains GPT-3 175B fastest on 1,024 A100-80GB GPUs (DGX A100 over HDR)?

The search prunes plans that cannot fit, ranks the rest by predicted iteration time and explains the winner.
Run: python examples/plan_search.py
"""

import perfmodel

res = perfmodel.plan_search("gpt3_175b", "dgx-a100-ib-hdr", devices=1024, global_batch=1536,
                            device="a100-sxm4-80gb")
print(f"{res.candidates} plans searched in {res.search_time_s:.2f} s; {res.fitting} fit")
print(f"{'plan':52} {'s/iter':>7} {'MFU':>6} {'GB/dev':>7}")
for p in res.plans[:3]:
    print(f"{p.label():52} {p.iteration_time_s:7.2f} {p.mfu:6.1%} {p.memory_bytes / 1e9:7.1f}")
best = res.plans[0]
print("\nwhere the best plan's time goes (s):")
for part, t in best.breakdown.items():
    if t > 0:
        print(f"  {part:24} {t:8.3f}")
print(f"\n{res.why}")
