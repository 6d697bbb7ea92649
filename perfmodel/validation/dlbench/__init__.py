"""Replication of the 2016 DLBench table (Shi, Wang, Xu and Chu) with the model.

The published table (`validation/published/dlbench_2016.csv`) holds times per mini-batch of FCN-5,
FCN-8, AlexNet, ResNet-50, LSTM-32 and LSTM-64 trained with CNTK, TensorFlow and Torch (and Caffe in
the paper's desktop FCN table) on an i7-3820 desktop CPU (1-8 threads, 4 physical cores), a
two-socket Xeon E5-2630 v3 server (1-32 threads, 16 physical cores) and one GTX 980, GTX 1080 or
Tesla K80 die. Every row is predicted from datasheet profiles and the zoo networks.

Method (every choice is a named constant below):
- each row's hardware maps to a profile (`HARDWARE_PROFILES`), network to a zoo file
  (`ZOO_NETWORKS`), and gets a mini-batch size from `BATCH_ASSUMPTIONS` (per network and device
  class, each with its reason) unless the table states it (metric `time_per_minibatch_b64`);
- frameworks of 2016 differed by several times on the same hardware, so one multiplicative
  efficiency factor per (framework, device class) is fitted, on the FCN-5 rows of that framework
  and class only (`FIT_NETWORK`); every other row is predicted with it. A (framework, class)
  without FCN-5 rows gets factor 1 and the device profile as it is;
- on the two CPUs the 2016 frameworks' thread scaling is a software property far from the
  profiles' (Amdahl serial fraction 0.03-0.05, mild hyper-thread penalty), so on each CPU the same
  FCN-5 rows also fit the framework's own `ThreadScaling` (`fit_thread_scaling`): its serial
  fraction when the rows have two or more thread counts up to the physical cores, its hyper-thread
  penalty when they have a row past the cores, and the factor, by least squares on log time with
  the factor profiled out. Never more parameters than distinct thread counts; one thread count
  gives the factor only. The fit runs the model itself: each candidate is a copy of the device
  profile with that ThreadScaling (`Device.model_copy`), predicted by `perfmodel.predict`, and
  the framework's other rows on that CPU are predicted with the fitted copy. Bounds keep the
  fitted profiles physical: serial fraction in [0, 1], penalty in [0, `PENALTY_MAX`];
- GPU rows keep the single factor; nothing else is fitted: efficiencies and all other profile
  numbers are used as they are. `predict_published(..., thread_fit=False)` gives the factor-only
  fit (the suite's previous method), which the report shows as "before".

`run_dlbench(report_dir)` returns a frozen `DLBenchResult` and, given a folder, writes
`report.md`, `report.html` (plotly, imported lazily, skipped when missing), `results.json` and
`README_SECTION.md` through the shared writer (perfmodel.validation.writer). Library code never prints.

Modules: `data` (the table, named constants, result objects), `fit` (the model side and the fits),
`analysis` (rows, summaries, claims), `report` and `readme` (the report's text), `result` (DLBenchResult, a
SuiteReport, and `run_dlbench`).
"""


from __future__ import annotations

from typing import Any

from ...errors import InputError
from ..protocol import RunOptions, TextTable
from .analysis import predict_published
from .data import CLASS_LABEL, DEVICE_CLASSES, FIT_NETWORK, PENALTY_MAX, SUITE as SUITE_NAME, default_csv_path, load_published
from .fit import fit_thread_scaling, thread_scaled
from .result import DLBenchResult, run_dlbench

__all__ = ["CLASS_LABEL", "DEVICE_CLASSES", "FIT_NETWORK", "PENALTY_MAX", "DLBenchResult", "SUITE", "default_csv_path",
           "fit_thread_scaling", "load_published", "predict_published", "run_dlbench", "thread_scaled"]


class _DLBenchSuite:
    """The registered `dlbench-2016` suite (perfmodel.validation.protocol.Suite): a published table."""

    name = SUITE_NAME
    help = "Shi et al. 2016 table: 6 networks x 4 frameworks x 2 CPUs (threads) + 3 GPUs (published, no torch)"
    measured = False

    def case_names(self) -> tuple[str, ...]:
        return ()  # every row of the table is compared: --case does not apply

    def run(self, options: RunOptions) -> DLBenchResult:
        if options.cases:
            raise InputError(f"suite '{SUITE_NAME}' compares every row of the published table; --case does not apply")
        return run_dlbench(None, csv_path=options.data)

    def text(self, res: DLBenchResult) -> list[Any]:
        rows = []
        for cls in DEVICE_CLASSES + ("all",):
            s = res.summary_for(cls)
            if s is not None:
                rows.append((CLASS_LABEL.get(cls, "all"), s.n, f"{s.median_abs_error_pct:.0f}%",
                             f"{s.p90_abs_error_pct:.0f}%", f"{s.worst_abs_error_pct:.0f}%", s.worst_row))
        factors = [(f.framework, f.device_class, f"{f.factor:.3f}", len(f.rows) if f.fitted else "none: 1")
                   for f in res.factors]
        return [f"{res.suite}: {len(res.rows)} published rows predicted ({res.source})", "",
                "error per device class (held-out rows: all but the FCN-5 rows that fit the framework factors)",
                TextTable(["device class", "rows", "median", "p90", "worst", "worst row"], rows, "lrrrrl"),
                "", "fitted factors (published / model on FCN-5 rows)",
                TextTable(["framework", "device class", "factor", "rows"], factors, "llrr"),
                "", "claims", *[f"  {c.reproduced:7s} {c.claim}" for c in res.claims]]


SUITE = _DLBenchSuite()
