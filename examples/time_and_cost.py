"""Train ResNet-50 for 90 epochs of ImageNet-1k within 8 hours and $100: which 8-GPU option is cheapest?

Prices are yours to give (USD per device-hour); the two in prices/cloud_prices.yaml are dated
examples. Run: python examples/time_and_cost.py
"""

import perfmodel
from perfmodel.planning import compare, time_to_train

EPOCHS, SAMPLES = 90, 1_281_167

# one prediction -> time to train and cost
p = perfmodel.predict("resnet50", "v100-sxm2", batch=64, dtype="fp16", devices=8, layers=False)
est = time_to_train(p, epochs=EPOCHS, dataset_samples=SAMPLES, price_per_device_hour=2.48)
print(f"8 x V100: {p.iteration_time_s * 1e3:.1f} ms/iteration, {est.iterations_per_epoch} iterations/epoch, "
      f"{est.hours:.1f} h, {est.device_hours:.0f} device-hours, ${est.cost:,.0f}")

# several options side by side against a deadline and a budget
c = compare("resnet50", ["v100-sxm2", "a100-sxm4-40gb", "h100-sxm", "t4"], devices=8, batch=64, dtype="fp16",
            epochs=EPOCHS, dataset_samples=SAMPLES, deadline_s=8 * 3600, budget=100,
            price_per_hour={"v100-sxm2": 2.48, "t4": 0.53})
for r in c.rows:
    print(f"{r.hardware:15} {r.time_to_train_s / 3600:5.1f} h  ${r.cost:7,.0f}  "
          f"deadline {'met' if r.meets_deadline else 'missed'}, budget {'ok' if r.meets_budget else 'over'}  "
          f"(price from {r.price_source.split(' (')[0]})")
best = c.best()
print(f"cheapest option meeting both: {best.hardware if best else 'none'}")
