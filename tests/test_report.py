"""HTML report and plots: self-contained pages, figures present, rendered in headless Chromium when installed;
`import perfmodel` and `perfmodel --help` stay free of plotly and torch."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from perfmodel.cli import app

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("plotly")


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_report_render", ROOT / "scripts" / "check_report_render.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _self_contained(text: str) -> None:
    assert "<script src=\"http" not in text and "cdn.plot.ly" not in text.split("/*")[0]
    assert re.search(r"plotly\.js v\d", text) or "Plotly.newPlot" in text  # the library is inlined
    assert text.count("Plotly.newPlot") == len(re.findall(r'class="plotly-graph-div"', text))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from perfmodel.report.html import write_report

    out = tmp_path_factory.mktemp("report") / "report.html"
    return write_report("resnet50", ["v100-sxm2"], out, batch=64, dtype="fp16", devices=[1, 2, 4, 8])


def test_report_has_every_chart(report):
    text = report.read_text()
    _self_contained(text)
    assert len(re.findall(r'class="plotly-graph-div"', text)) == 4  # layers, breakdown, memory, scaling
    for title in ("Time per layer", "Iteration time", "Memory per device vs batch", "Scaling of ResNet-50"):
        assert title in text
    assert text.count("plotly.js v") <= 2  # embedded once (the banner may repeat inside the bundle)


def test_report_without_parallel_model_has_a_note(tmp_path, monkeypatch):
    from perfmodel.report.html import write_report

    monkeypatch.setitem(sys.modules, "perfmodel.parallel.predict", None)  # import now raises ImportError
    p = write_report("fcn5", "v100-sxm2", tmp_path / "r.html", devices=[1, 2])
    text = p.read_text()
    assert "multi-device model is not available" in text
    assert len(re.findall(r'class="plotly-graph-div"', text)) == 3


def test_report_and_plot_cli(tmp_path):
    out = tmp_path / "r.html"
    run = CliRunner().invoke(app, ["report", "lstm32", "--hardware", "v100-sxm2,t4", "--out", str(out),
                                   "--devices", "1,2"])
    assert run.exit_code == 0, run.output
    text = out.read_text()
    _self_contained(text)
    assert "lstm" in text.lower() and "t4" in text
    plot = tmp_path / "s.html"
    csv = tmp_path / "s.csv"
    run = CliRunner().invoke(app, ["sweep", "fcn5", "--hardware", "v100-sxm2,t4", "--devices", "1,2,4", "--batch",
                                   "32,64", "--plot", str(plot), "--csv", str(csv), "--quiet"])
    assert run.exit_code == 0, run.output
    text = plot.read_text()
    _self_contained(text)
    assert len(re.findall(r'class="plotly-graph-div"', text)) == 3
    assert "Throughput vs devices" in text and "Scaling efficiency" in text and "Breakdown" in text
    assert csv.read_text().count("\n") == 1 + 2 * 3 * 2
    plot = tmp_path / "serve.html"
    run = CliRunner().invoke(app, ["serve", "fcn5", "-H", "t4", "--batch", "1,64", "--plot", str(plot)])
    assert run.exit_code == 0 and "Serving" in plot.read_text()


def test_import_and_help_do_not_load_plotly_or_torch():
    code = ("import sys, perfmodel; from typer.testing import CliRunner; from perfmodel.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0; "
            "r = CliRunner().invoke(app, ['sweep', '--help']); assert r.exit_code == 0; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('plotly', 'torch', 'pandas')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_png_decoder(tmp_path):
    import struct
    import zlib

    chk = _load_checker()
    # 4x3 RGB image, rows filtered with types 0..2 ... (sub, up) to exercise the unfiltering
    w, h = 4, 3
    rows = [bytes([0] + [255, 255, 255] * w), bytes([1] + [200, 0, 0] + [0, 0, 0] * (w - 1)),
            bytes([2] + [0, 0, 0] * w)]
    raw = b"".join(rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    path = tmp_path / "t.png"
    path.write_bytes(png)
    sys.modules.pop("PIL", None)
    ww, hh, ch, px = chk.read_png(path)
    assert (ww, hh, ch) == (4, 3, 3)
    assert px[:3] == b"\xff\xff\xff"
    assert px[12:24] == bytes([200, 0, 0] * 4)  # sub filter: every pixel = left + 0
    assert px[24:36] == bytes([200, 0, 0] * 4)  # up filter: copies the row above


@pytest.mark.skipif(_load_checker().find_chromium() is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    chk = _load_checker()
    res = chk.check(report, tmp_path / "shot.png", width=1400, height=2400, scale=0.5)  # half size: faster decoding
    assert res["figures_in_page"] == 4
    assert res["dom_ok"], res
    assert res["pixels_ok"], res
    assert res["bands_with_charts"] >= 3
