"""Plotly figures and self-contained HTML reports (plotly is imported lazily, only when a figure is built).

    from perfmodel.report import html
    html.write_report("resnet50", ["v100-sxm2"], "report.html")

figures: sweep_figures, layer_time_figure, breakdown_figure, memory_figure, scaling_figure.
html: write_report (the `perfmodel report` page), figures_html / write_figures_html (any figures as one page).
"""
