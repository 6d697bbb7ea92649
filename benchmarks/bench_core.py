"""Benchmark the core: `perfmodel --help` wall time, network loading, and predict() once loaded.

Run: python benchmarks/bench_core.py [--json]. Prints medians over repeats; numbers depend on the machine.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time


def timeit(fn, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    res = {}
    helps = timeit(lambda: subprocess.run([sys.executable, "-m", "perfmodel", "--help"], capture_output=True, check=True), 7)
    res["help_python_m_wall_s"] = statistics.median(helps)
    import shutil

    exe = shutil.which("perfmodel")
    if exe:
        res["help_console_script_wall_s"] = statistics.median(
            timeit(lambda: subprocess.run([exe, "--help"], capture_output=True, check=True), 7))
    t = time.perf_counter()
    import perfmodel
    from perfmodel.graph.io import load_network

    perfmodel.predict  # import the model
    res["import_model_s"] = time.perf_counter() - t
    for name in ("resnet50", "gpt2_small"):
        res[f"load_{name}_s"] = statistics.median(timeit(lambda: load_network(name), 5))
    g = load_network("resnet50")
    hw = perfmodel.load_hardware("v100-sxm2")
    t = time.perf_counter()
    perfmodel.predict(g, hw, batch=64)
    res["predict_resnet50_first_s"] = time.perf_counter() - t
    res["predict_resnet50_new_batch_s"] = statistics.median(
        timeit(lambda it=iter(range(1, 10_000)): perfmodel.predict(g, hw, batch=next(it), layers=False), 50))
    res["predict_resnet50_s"] = statistics.median(timeit(lambda: perfmodel.predict(g, hw, batch=64), 200))
    res["predict_resnet50_no_layers_s"] = statistics.median(
        timeit(lambda: perfmodel.predict(g, hw, batch=64, layers=False), 200))
    if "--json" in sys.argv:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:34s} {v * 1e3:9.2f} ms")


if __name__ == "__main__":
    main()
