"""Fitting device profiles from microbenchmark samples (torch-free; the benchmarks are in perfmodel.torch.calibrate).

- `fit`: samples -> FitResult (peaks, bandwidths, overhead, thread scaling, efficiency curves) -> profile mapping.
- `kernels`: kernel classes of CPU work (depthwise/grouped/1x1 conv, thin GEMM, streaming memory) and their curves.
- `samples`: stored calibration runs (append, load, pool, statistic); `profile`: fit + notes -> YAML, refit.
- `grid`, `timing`: the benchmark shapes and the timing loop, both plain Python.
"""

from .fit import FitOptions, FitResult, Sample, fit_profile, predicted_sample_time, profile_dict, residuals
from .samples import check_quiet_enough, load_samples, pool_samples, save_samples, with_statistic

__all__ = [
    "FitOptions", "FitResult", "Sample", "fit_profile", "predicted_sample_time", "profile_dict", "residuals",
    "check_quiet_enough", "load_samples", "pool_samples", "save_samples", "with_statistic",
]
