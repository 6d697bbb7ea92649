"""How does ResNet-50 scale from 1 to 64 GPUs on V100 vs A100, and which all-reduce is best?

A sweep predicts every combination; its rows are flat dicts (pandas.DataFrame(result.rows) if you
have pandas). Run: python examples/sweep_scaling.py
"""

import perfmodel

res = perfmodel.sweep("resnet50", hardware=["v100-sxm2", "a100-sxm4-40gb"], devices=[1, 2, 4, 8, 16, 32, 64],
                      batch=64, dtype="fp16", allreduce=["ring", "tree"])
print(f"{len(res)} scenarios in {res.elapsed_s:.2f} s, {len(res.errors)} impossible")

print(f"{'hardware':16} {'devices':>7} {'allreduce':>9} {'samples/s':>10} {'efficiency':>10} {'comm ms':>8}")
for r in res.rows:
    if r["devices"] in (1, 8, 64):
        print(f"{r['hardware']:16} {r['devices']:7d} {r['allreduce']:>9} {r['throughput']:10,.0f} "
              f"{r['scaling_efficiency']:10.3f} {r['communication_s'] * 1e3:8.2f}")

best = res.best("throughput")
print(f"\nfastest: {best['hardware']} x {best['devices']} ({best['allreduce']}), {best['throughput']:,.0f} samples/s")

try:  # optional: the rows load straight into pandas
    import pandas as pd

    df = pd.DataFrame(res.rows)
    print(df.groupby(["hardware", "allreduce"])["scaling_efficiency"].min())
except ImportError:
    pass
