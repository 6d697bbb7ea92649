#!/usr/bin/env python
"""Render a perfmodel HTML report in headless Chromium and check that its charts were drawn.

    python scripts/check_report_render.py [REPORT.html] [--png shot.png] [--network resnet50 --hardware v100-sxm2]

Without REPORT.html a report is generated first (perfmodel.report.html.write_report). Two checks:
1. DOM: Chromium's --dump-dom after the page's scripts ran must contain, for every plotly figure
   div of the page, a rendered plot (plotly's `main-svg` <svg> elements), and no figure left empty.
2. Pixels: a screenshot (--screenshot) must show coloured chart marks (bars, lines) in at least
   min(`--min-bands`, figures on the page) separate horizontal bands of the page, i.e. the charts drew
   something (a one-figure page such as the `serve --plot` page needs one band); the PNG
   is decoded with PIL when installed, else with zlib + struct here.
Exit status 0 when both pass, 1 when a check fails, 2 when Chromium is not installed.
Chromium is Debian's `chromium` package (apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")
COLOUR_SPREAD = 60  # a pixel is a chart mark when max(r,g,b) - min(r,g,b) exceeds this (text and grid are grey)
BAND_PX = 100  # height of the horizontal bands the screenshot is cut into
BAND_MIN_MARKS = 200  # coloured pixels a band needs to count as showing a chart


def find_chromium() -> str | None:
    for n in CHROMIUM_NAMES:
        p = shutil.which(n)
        if p:
            return p
    return None


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def render(chromium: str, html: Path, png: Path, width: int = 1400, height: int = 2400, scale: float = 1.0,
           budget_ms: int = 5000, timeout: float = 180) -> str:
    """Load `html` once in headless Chromium: write a screenshot to `png` and return the DOM after the scripts ran."""
    png = png.resolve()
    if png.exists():
        png.unlink()
    with tempfile.TemporaryDirectory() as prof:
        cmd = [chromium, *FLAGS, f"--user-data-dir={prof}", f"--screenshot={png}", f"--window-size={width},{height}",
               f"--virtual-time-budget={budget_ms}", "--dump-dom", html.resolve().as_uri()]
        if scale != 1.0:
            cmd.insert(-1, f"--force-device-scale-factor={scale}")
        r = _run(cmd, timeout)
    if not png.exists():
        raise RuntimeError(f"chromium --screenshot wrote nothing ({r.returncode}): {r.stderr[-2000:]}")
    if not r.stdout:
        raise RuntimeError(f"chromium --dump-dom printed nothing ({r.returncode}): {r.stderr[-2000:]}")
    return r.stdout


# ---- PNG decoding (8-bit RGB / RGBA / grey, non-interlaced), used when PIL is missing -------------------------

def read_png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixel bytes) of an 8-bit non-interlaced PNG."""
    try:
        from PIL import Image  # type: ignore

        im = Image.open(path).convert("RGB")
        return im.width, im.height, 3, im.tobytes()
    except ImportError:
        pass
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    pos, idat = 8, []
    w = h = depth = ctype = interlace = 0
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat.append(chunk)
        elif kind == b"IEND":
            break
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if depth != 8 or channels is None or interlace:
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {ctype}, interlace {interlace})")
    raw = zlib.decompress(b"".join(idat))
    stride = w * channels
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a perfmodel dependency
        np = None
    out = bytearray(h * stride)
    prev = bytearray(stride)
    i = 0
    for y in range(h):
        f = raw[i]
        line = bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if np is not None and f in (1, 2):  # vectorised: sub = running sum per channel, up = add the row above
            a = np.frombuffer(bytes(line), dtype=np.uint8)
            if f == 1:
                a = (np.cumsum(a.reshape(w, channels).astype(np.int64), axis=0) % 256).astype(np.uint8).ravel()
            else:
                a = (a.astype(np.uint16) + np.frombuffer(bytes(prev), dtype=np.uint8)).astype(np.uint8)
            line = bytearray(a.tobytes())
        elif f == 1:
            for x in range(channels, stride):
                line[x] = (line[x] + line[x - channels]) & 255
        elif f == 2:
            for x in range(stride):
                line[x] = (line[x] + prev[x]) & 255
        elif f == 3:
            for x in range(stride):
                left = line[x - channels] if x >= channels else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 255
        elif f == 4:
            for x in range(channels):  # left and upper-left are 0: the predictor is the byte above
                line[x] = (line[x] + prev[x]) & 255
            for x in range(channels, stride):
                a, b, c = line[x - channels], prev[x], prev[x - channels]
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    return w, h, channels, bytes(out)


def coloured_bands(path: Path, band_px: int = BAND_PX) -> tuple[list[int], int, int]:
    """Coloured (chart-mark) pixel counts per horizontal band of `band_px` rows (every other row and column
    sampled); also width and height."""
    w, h, ch, px = read_png(path)
    bands = [0] * ((h + band_px - 1) // band_px)
    if ch < 3:
        return bands, w, h
    try:
        import numpy as np

        a = np.frombuffer(px, dtype=np.uint8).reshape(h, w, ch)[::2, ::2, :3].astype(np.int16)
        marks = (a.max(axis=2) - a.min(axis=2)) > COLOUR_SPREAD
        per_row = marks.sum(axis=1)
        for k, y in enumerate(range(0, h, 2)):
            bands[y // band_px] += int(per_row[k])
        return bands, w, h
    except ImportError:  # pragma: no cover
        pass
    stride = w * ch
    for y in range(0, h, 2):
        row = px[y * stride:(y + 1) * stride]
        n = 0
        for x in range(0, stride, 2 * ch):
            r, g, b = row[x], row[x + 1], row[x + 2]
            if max(r, g, b) - min(r, g, b) > COLOUR_SPREAD:
                n += 1
        bands[y // band_px] += n
    return bands, w, h


def bands_needed(n_figs: int, min_bands: int) -> int:
    """Bands that must show chart marks: one per figure up to `min_bands` (a page of one line chart, such as
    the `serve --plot` page, draws its marks in one or two bands)."""
    return max(1, min(min_bands, n_figs))


def check(html: Path, png: Path, *, width: int = 1400, height: int = 2400, min_bands: int = 3, scale: float = 1.0,
          chromium: str | None = None) -> dict:
    """Run both checks; returns a dict with `ok` and the evidence."""
    chromium = chromium or find_chromium()
    if chromium is None:
        raise FileNotFoundError("chromium is not installed (apt-get install -y chromium)")
    source = html.read_text(encoding="utf-8")
    n_figs = len(re.findall(r'class="plotly-graph-div"', source))
    dom = render(chromium, html, png, width, height, scale)
    # each rendered figure: <div ... class="plotly-graph-div js-plotly-plot" ...> with <svg class="main-svg">
    rendered = len(re.findall(r'class="[^"]*\bjs-plotly-plot\b', dom))
    main_svgs = len(re.findall(r'class="main-svg"', dom))
    traces = len(re.findall(r'class="(?:trace|point|bars|scatterlayer)\b', dom))
    band_px = max(1, round(BAND_PX * scale))
    bands, w, h = coloured_bands(png, band_px)
    chart_bands = sum(1 for b in bands if b >= BAND_MIN_MARKS * scale * scale)
    ok_dom = n_figs > 0 and rendered >= n_figs and main_svgs >= n_figs and traces > 0
    need_bands = bands_needed(n_figs, min_bands)
    ok_px = chart_bands >= need_bands
    return {"ok": ok_dom and ok_px, "dom_ok": ok_dom, "pixels_ok": ok_px, "figures_in_page": n_figs,
            "figures_rendered": rendered, "main_svg_elements": main_svgs, "trace_elements": traces,
            "screenshot": str(png), "screenshot_size": [w, h], "bands_with_charts": chart_bands,
            "bands_needed": need_bands,
            "coloured_pixels_per_band": bands, "chromium": chromium}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("html", nargs="?", help="report to check (default: generate one)")
    ap.add_argument("--png", default=None, help="screenshot path (default: next to the report)")
    ap.add_argument("--network", default="resnet50")
    ap.add_argument("--hardware", default="v100-sxm2")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--dtype", default="fp16")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--min-bands", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="device scale factor of the screenshot (0.5: half size)")
    args = ap.parse_args(argv)
    chromium = find_chromium()
    if chromium is None:
        print("chromium is not installed (apt-get install -y chromium); nothing checked", file=sys.stderr)
        return 2
    if args.html:
        html = Path(args.html)
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from perfmodel.report.html import write_report

        html = write_report(args.network, args.hardware.split(","), Path(tempfile.mkdtemp()) / "report.html",
                            batch=args.batch, dtype=args.dtype)
    png = Path(args.png) if args.png else html.with_suffix(".png")
    res = check(html, png, width=args.width, height=args.height, min_bands=args.min_bands, scale=args.scale,
                chromium=chromium)
    print(json.dumps(res, indent=2))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
