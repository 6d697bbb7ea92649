"""Write the HTML report (per-layer times, breakdown, memory, scaling) and the sweep plots for a network.

Needs plotly (pip install 'perfmodel[plot]'). Run: python examples/html_report.py [OUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import perfmodel
from perfmodel.report.figures import sweep_figures
from perfmodel.report.html import write_figures_html

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
out.mkdir(parents=True, exist_ok=True)

page = perfmodel.write_report("bert_base", ["v100-sxm2", "a100-sxm4-40gb"], out / "bert_report.html", batch=32,
                              dtype="fp16", devices=[1, 2, 4, 8, 16])
print(f"report: {page} ({page.stat().st_size / 1e6:.1f} MB, opens offline)")

res = perfmodel.sweep("bert_base", hardware=["v100-sxm2", "a100-sxm4-40gb"], devices=[1, 2, 4, 8, 16], batch=32,
                      dtype="fp16")
plots = write_figures_html(sweep_figures(res), out / "bert_sweep.html", title="BERT-base sweep")
print(f"sweep plots: {plots}")
