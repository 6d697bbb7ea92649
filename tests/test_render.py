"""Terminal tables (one unit per column, plurals), `--version`, and the HTML report's wording and layer chart."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfmodel.cli import app
from perfmodel.cli.render import plural, table, unify_units

ROOT = Path(__file__).resolve().parents[1]


def test_mixed_time_units_become_one_unit():
    assert unify_units(["555.328 s", "10.1 min", "-"]) == ["9.26 min", "10.10 min", "-"]
    assert unify_units(["148.33 ms", "58.63 ms", "30.1 us"]) == ["148.33 ms", "58.63 ms", "0.03 ms"]


def test_mixed_byte_units_use_the_largest():
    assert unify_units(["11339.22 GB", "80.00 GB"]) == ["11339.22 GB", "80.00 GB"]  # one unit: left alone
    assert unify_units(["11.34 TB", "80.00 GB", "512.00 MB"]) == ["11.34 TB", "0.08 TB", "<0.01 TB"]


def test_columns_that_are_not_quantities_are_kept():
    assert unify_units(["a", "b s"]) == ["a", "b s"]
    assert unify_units(["1.00 ms", "2 cases"]) == ["1.00 ms", "2 cases"]  # 'cases' is not a unit
    text = table(["name", "time"], [("x", "555.328 s"), ("y", "10.1 min")])
    assert "9.26 min" in text and "555.328 s" not in text


def test_plural():
    assert [plural(1, "case"), plural(2, "case"), plural(1000, "box", "boxes")] == ["1 case", "2 cases", "1,000 boxes"]


def test_version():
    import perfmodel

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"perfmodel {perfmodel.__version__}"


plotly = pytest.importorskip("plotly")


def test_report_names_where_efficiencies_come_from(tmp_path):
    from perfmodel.report.html import write_report

    text = write_report("fcn5", ["v100-sxm2"], tmp_path / "r.html", batch=8, devices=None).read_text()
    assert "default efficiency guesses" in text and "calibrated efficiencies" not in text
    text = write_report("fcn5", ["amd-epyc-2c-kvm"], tmp_path / "c.html", batch=8, devices=None).read_text()
    assert "calibrated efficiencies" in text and "default efficiency guesses" not in text


def test_layer_chart_of_a_large_network_has_a_row_per_layer():
    import perfmodel
    from perfmodel.report.figures import HORIZONTAL_LAYERS, LAYER_ROW_PX, layer_time_figure

    p = perfmodel.predict("resnet50", "v100-sxm2", batch=8)
    fig = layer_time_figure(p)
    assert len(p.layers) > HORIZONTAL_LAYERS
    assert fig.data[0].orientation == "h" and list(fig.data[0].y) == [r.name for r in p.layers]
    assert fig.layout.height >= LAYER_ROW_PX * len(p.layers) and fig.layout.yaxis.dtick == 1
    small = layer_time_figure(perfmodel.predict("fcn5", "v100-sxm2", batch=8))
    assert small.data[0].orientation in (None, "v")


def _checker():
    spec = importlib.util.spec_from_file_location("check_report_render", ROOT / "scripts" / "check_report_render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_render_check_asks_one_band_per_figure():
    chk = _checker()
    assert [chk.bands_needed(n, 3) for n in (0, 1, 2, 3, 9)] == [1, 1, 2, 3, 3]


def test_serve_plot_passes_the_render_check(tmp_path, monkeypatch):
    """The one-figure `serve --plot` page renders and is reported as rendered (it was reported as failed)."""
    chk = _checker()
    if chk.find_chromium() is None:
        pytest.skip("chromium is not installed")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["serve", "bert_base", "--hardware", "a100-sxm4-40gb", "--batch", "1,8,32,128",
                                 "--dtype", "fp16", "--plot", "serve.html"])
    assert r.exit_code == 0, r.output
    res = chk.check(tmp_path / "serve.html", tmp_path / "serve.png", height=900, scale=0.5)
    assert res["figures_in_page"] == 1 and res["ok"], res


def test_huge_counts_use_the_next_prefix():
    from perfmodel.units import fmt_bytes, fmt_count

    assert fmt_count(3.387e18, "FLOP") == "3.39 EFLOP" and fmt_bytes(1.134e13) == "11.34 TB"
