"""The print-layout report (ui/report.py) in real QGIS, on outputs written in the documented format."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from qgis.core import QgsLayoutItemLabel, QgsLayoutItemPicture, QgsProject

from groundcast.ui import layers, report

OBS = [dt.date(2020, 1, 5) + dt.timedelta(days=6 * i) for i in range(60)]
FC = [OBS[-1] + dt.timedelta(days=6 * (i + 1)) for i in range(10)]
X0, Y0, CELL, H, W = 4_500_000.0, 1_800_000.0, 100.0, 24, 30


def _stack(path, values):
    profile = dict(driver="GTiff", width=W, height=H, count=len(FC), dtype="float32", crs="EPSG:3035",
                   transform=from_origin(X0, Y0, CELL, CELL), nodata=-9999.0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.where(np.isfinite(values), values, -9999.0).astype("float32"))
        for i, day in enumerate(FC, start=1):
            dst.set_band_description(i, day.isoformat())


def write_synthetic_outputs(out):
    """forecast/backtest files as the engine documents them: a subsidence bowl growing with time."""
    yy, xx = np.mgrid[0:H, 0:W]
    bowl = -40.0 * np.exp(-(((xx - 18) / 6.0) ** 2 + ((yy - 10) / 5.0) ** 2)) + 3.0 * (xx / W)
    grow = np.linspace(0.9, 1.2, len(FC))[:, None, None]
    median = bowl[None] * grow
    median[:, 20:, :4] = np.nan  # cells without points
    width = 4.0 + 0.2 * np.abs(median) * np.linspace(1, 2, len(FC))[:, None, None]
    _stack(out / "forecast.tif", median)
    change = bowl[None] * (grow - 0.85)  # the growth since the origin
    change[:, 20:, :4] = np.nan
    _stack(out / "change.tif", change)
    _stack(out / "change_q05.tif", change - 2.0)
    _stack(out / "change_q95.tif", change + 2.0)
    _stack(out / "forecast_q05.tif", median - width / 2)
    _stack(out / "forecast_q95.tif", median + width / 2)
    _stack(out / "interval90.tif", width)
    _stack(out / "exceedance.tif", np.clip(-median / 30.0, 0, 1))

    import fiona

    n = 40
    rng = np.random.default_rng(1)
    px = X0 + rng.uniform(0, W * CELL, n)
    py = Y0 - rng.uniform(0, H * CELL, n)
    col = ((px - X0) / CELL).astype(int)
    row = ((Y0 - py) / CELL).astype(int)
    fc_last = bowl[row, col] * 1.2
    schema = {"geometry": "Point", "properties": {"pid": "str", "velocity_mm_yr": "float",
                                                  "forecast_mm": "float", "p_exceed": "float",
                                                  "horizon_date": "str"}}
    with fiona.open(out / "points.gpkg", "w", driver="GPKG", layer="points", crs="EPSG:3035",
                    schema=schema) as dst:
        for i in range(n):
            dst.write({"geometry": {"type": "Point", "coordinates": (px[i], py[i])},
                       "properties": {"pid": f"P{i:03d}", "velocity_mm_yr": float(fc_last[i] / 5),
                                      "forecast_mm": float(fc_last[i]),
                                      "p_exceed": float(min(1, -fc_last[i] / 30)),
                                      "horizon_date": FC[-1].isoformat()}})
    t_obs = np.arange(len(OBS)) / 60.0
    obs = fc_last[:, None] * t_obs[None, :] * 0.8 + rng.normal(0, 1.0, (n, len(OBS)))
    t_fc = np.linspace(1.0, 1.2, len(FC))
    q50 = fc_last[:, None] * t_fc[None, :] / 1.2
    np.savez_compressed(
        out / "series.npz", pid=np.array([f"P{i:03d}" for i in range(n)]), x=px, y=py,
        level_mm=obs[:, -5:].mean(axis=1),
        dates_obs=np.array(OBS, dtype="datetime64[D]").astype(np.int64), obs_mm=obs.astype("float32"),
        dates_fc=np.array(FC, dtype="datetime64[D]").astype(np.int64), q05_mm=q50 - 4, q50_mm=q50,
        q95_mm=q50 + 4, timefn_mm=q50 * 0.9, persistence_mm=np.repeat(obs[:, -1:], len(FC), axis=1))
    summary = {"inputs": {"threshold_mm": -10.0, "aoi": None, "points": "demo.csv"}, "n_points": n,
               "observed_from": OBS[0].isoformat(), "observed_to": OBS[-1].isoformat(),
               "forecast_dates": [d.isoformat() for d in FC],
               "references": {"cumulative_since": OBS[0].isoformat(), "change_since": OBS[-1].isoformat()},
               "grid": {"crs": "EPSG:3035", "width": W, "height": H, "cell_size_m": CELL},
               "variogram_range_m": 612.5, "device": "cpu", "training": {"epochs_run": 40, "seconds": 12.3},
               "attribution": "Contains modified Copernicus EGMS data"}
    (out / "summary.json").write_text(json.dumps(summary))
    metrics = {"horizons_days": [12, 90, 180, 365],
               "models": {"mmstt": {"rmse_mm": [1.1, 1.9, 2.8, 4.0]},
                          "persistence": {"rmse_mm": [1.5, 3.2, 5.5, 9.1]},
                          "timefn": {"rmse_mm": [1.3, 2.4, 3.6, 5.2]}},
               "mmstt_coverage90": 0.88, "mmstt_crps_mm": 1.2, "device": "cpu",
               "epochs_held_out": ["2021-01-05", "2021-12-31"]}
    from engine.results import MANIFEST, SCHEMA_VERSION

    files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    manifest = {"schema_version": SCHEMA_VERSION, "kind": "forecast", "files": files}
    (out / MANIFEST).write_text(json.dumps(manifest))
    return summary, metrics


@pytest.fixture()
def synthetic_run(tmp_path):
    out = tmp_path / "forecast"
    out.mkdir()
    summary, metrics = write_synthetic_outputs(out)
    return out, summary, metrics


def _labels(layout):
    return [item.text() for item in layout.items() if isinstance(item, QgsLayoutItemLabel)]


def _render_first_page(pdf, out_png_stem):
    subprocess.run(["pdftoppm", "-png", "-r", "60", "-f", "1", "-l", "1", "-singlefile", str(pdf),
                    str(out_png_stem)], check=True, timeout=60)
    from PIL import Image

    return np.asarray(Image.open(str(out_png_stem) + ".png").convert("RGB"), dtype=np.float64)


def _mm_to_px(rect, dpi=60):
    return [int(round(v * dpi / 25.4)) for v in rect]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_report_builds_exports_and_stays_in_project(synthetic_run, tmp_path, qgis_app):
    out, summary, metrics = synthetic_run
    project = QgsProject()
    result = layers.add_result_layers(str(out), "GroundCast test", project=project)
    example = report.load_series_example(str(out / "series.npz"))
    assert example is not None and example["pid"]
    layout = report.build_report(project, result, str(out), None, example, metrics, summary)

    # editable afterwards: it lives in the project's layout manager
    assert project.layoutManager().layoutByName(layout.name()) is layout
    assert layout.name().startswith("GroundCast report")
    page = layout.pageCollection().page(0).pageSize()
    assert (round(page.width()), round(page.height())) == (297, 210)
    texts = _labels(layout)
    assert any("Contains modified Copernicus EGMS data" in t for t in texts)
    title = layout.itemById("title").text()
    assert title == f"Ground-motion forecast \u2014 demo \u2014 change to {FC[-1].isoformat()}"
    assert any(f"since {OBS[-1].isoformat()}" in t for t in texts)  # the change's reference is stated
    pictures = [i for i in layout.items() if isinstance(i, QgsLayoutItemPicture)]
    assert any(p.picturePath().endswith("NorthArrow_02.svg") for p in pictures)

    # the change map and the exceedance map, each showing the chosen date's band
    change_map, exceed_map = layout.itemById("map"), layout.itemById("exceedance_map")
    shown = [lyr for lyr in change_map.layers() if lyr.name().startswith("Change since")]
    assert shown and shown[0].source() == result["change"].source() and shown[0].renderer().band() == len(FC)
    assert any(lyr.source() == result["exceedance"].source() for lyr in exceed_map.layers())
    # legends beside the maps, never over their cells
    for legend in (layout.itemById("legend"), layout.itemById("exceedance_legend")):
        box = legend.sceneBoundingRect()
        for map_item in (change_map, exceed_map):
            assert not box.intersects(map_item.sceneBoundingRect()), legend.id()
    # the lower third holds the chart, the skill table and the notes
    lower = [layout.itemById(i) for i in ("series_chart", "skill_table", "how_to_read")]
    assert all(item is not None and item.pos().y() > 130 for item in lower)
    assert "Right map" in layout.itemById("how_to_read").text()

    # the chart PNG carries the attribution (drawn on it and in its metadata)
    from PIL import Image

    chart = Image.open(out / "report_series.png")
    assert "Contains modified Copernicus EGMS data" in chart.text.get("Copyright", "")

    pdf, png = tmp_path / "report.pdf", tmp_path / "report.png"
    report.export_report(layout, str(pdf), str(png))
    assert pdf.stat().st_size > 10_000 and png.stat().st_size > 10_000
    assert not list(tmp_path.glob(".*partial*"))
    pixels = _render_first_page(pdf, tmp_path / "page")
    assert pixels.std() > 20, "the page looks blank"
    # the change map's frame on the rendered page shows the subsidence bowl in red
    x0, y0, w, h = _mm_to_px(report.CHANGE_RECT)
    inside = pixels[y0 + 2:y0 + h - 2, x0 + 2:x0 + w - 2]
    red = (inside[..., 0] > 150) & (inside[..., 0] - inside[..., 2] > 60)
    assert red.mean() > 0.01, red.mean()
    lower_third = pixels[_mm_to_px([140])[0]:_mm_to_px([195])[0]]
    assert (lower_third < 200).any(axis=2).mean() > 0.02, "the lower third looks empty"

    # a second build with the same name replaces the first instead of piling up copies
    name = layout.name()
    again = report.build_report(project, result, str(out), name, example, metrics, summary)
    assert [lay.name() for lay in project.layoutManager().layouts()].count(name) == 1
    assert project.layoutManager().layoutByName(name) is again


def test_report_without_backtest_or_series(synthetic_run, qgis_app):
    out, summary, _ = synthetic_run
    project = QgsProject()
    result = layers.add_result_layers(str(out), "GroundCast test", project=project)
    layout = report.build_report(project, result, str(out), "My report", None, None, None,
                                 when=FC[2].isoformat())
    assert layout.name() == "My report"
    assert any("no backtest" in " ".join(r) for r in report.skill_table(None)[1])
    name = f"on {FC[2].isoformat()} (report map)"
    fixed = [lyr for lyr in project.mapLayers().values()
             if lyr.name().startswith("Change since") and lyr.name().endswith(name)]
    assert fixed and fixed[0].renderer().band() == 3


def test_fastest_moving_point_is_the_default(synthetic_run, qgis_app):
    out, _, _ = synthetic_run
    run = layers.open_run(out)
    pid, _, change = layers.point_changes(run)
    fastest = report.fastest_moving_pid(run)
    assert abs(change[list(pid).index(fastest), -1]) == pytest.approx(np.nanmax(np.abs(change[:, -1])))
    assert report.load_series_example(str(out))["pid"] == fastest
    assert report.load_series_example(str(out), "P007")["pid"] == "P007"


def test_skill_table_reads_metrics_layout():
    headers, rows = report.skill_table({"horizons_days": [30, 365], "mmstt_coverage90": 0.9,
                                         "models": {"persistence": {"rmse_mm": [2.0, 8.0]},
                                                    "mmstt": {"rmse_mm": [1.0, 4.0]}}})
    assert headers == ["Score", "MM-STT", "Persistence"]
    assert rows[0] == ["RMSE at 30 days (mm)", "1.00", "2.00"]
    assert rows[-1] == ["90% interval coverage", "0.90", "–"]


def test_make_project_writes_one_openable_project(tmp_path, qgis_app):
    """scripts/make_project.py on a demo folder: project, PDF and PNG; the project reopens whole."""
    import sys

    from qgis.core import QgsRasterLayer

    demo = tmp_path / "demo_out"
    (demo / "forecast").mkdir(parents=True)
    (demo / "backtest").mkdir()
    (demo / "data").mkdir()
    _, metrics = write_synthetic_outputs(demo / "forecast")
    (demo / "backtest" / "metrics.json").write_text(json.dumps(metrics))
    yy, xx = np.mgrid[0:H * 4, 0:W * 4]
    profile = dict(driver="GTiff", width=W * 4, height=H * 4, count=1, dtype="float32", crs="EPSG:3035",
                   transform=from_origin(X0, Y0, CELL / 4, CELL / 4))
    with rasterio.open(demo / "data" / "dem.tif", "w", **profile) as dst:
        dst.write((100 + 20 * np.sin(xx / 9.0) * np.cos(yy / 7.0)).astype("float32"), 1)
    ring = [[X0 + 300, Y0 - 300], [X0 + 2700, Y0 - 300], [X0 + 2700, Y0 - 2100], [X0 + 300, Y0 - 2100],
            [X0 + 300, Y0 - 300]]
    aoi = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:3035"}},
           "features": [{"type": "Feature", "properties": {},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    (demo / "data" / "aoi.geojson").write_text(json.dumps(aoi))

    script = Path(__file__).resolve().parent.parent / "scripts" / "make_project.py"
    run = subprocess.run([sys.executable, str(script), str(demo)], capture_output=True, text=True,
                         timeout=240, env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for name in ("groundcast_demo.qgz", "report.pdf", "report.png"):
        assert (demo / name).stat().st_size > 5_000, name

    # moved elsewhere, the project still finds everything: its paths are relative
    moved = tmp_path / "moved"
    shutil.copytree(demo, moved)
    shutil.rmtree(demo)
    project = QgsProject()
    assert project.read(str(moved / "groundcast_demo.qgz"))
    loaded = list(project.mapLayers().values())
    invalid = [lyr.name() for lyr in loaded if not lyr.isValid()]
    assert loaded and not invalid, invalid
    assert any(isinstance(lyr, QgsRasterLayer) and lyr.name().startswith("Hillshade") for lyr in loaded)
    assert any(lyr.name() == "Area of interest" and lyr.providerType() == "ogr" for lyr in loaded)
    layouts = project.layoutManager().layouts()
    assert len(layouts) == 1 and layouts[0].name().startswith("GroundCast report")
    assert layouts[0].itemById("title").text().startswith("Ground-motion forecast \u2014 ")
    assert any("Contains modified Copernicus EGMS data" in t for t in _labels(layouts[0]))
    time_range = project.timeSettings().temporalRange()
    assert time_range.begin().date().toPyDate() == FC[0]


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="poppler-utils not installed")
def test_report_dialog_exports_a_pdf_showing_the_change_map(synthetic_run, tmp_path, qgis_iface,
                                                            qgis_new_project):
    from groundcast.ui.report_dialog import find_result_layers, open_report_dialog

    out, _, _ = synthetic_run
    project = QgsProject.instance()
    result = layers.add_result_layers(str(out), None, project)
    assert find_result_layers(out, project)["change"] is result["change"]
    dialog = open_report_dialog(qgis_iface, str(out))
    assert dialog is not None and dialog.result_layers["change"] is result["change"]
    assert dialog.chosen_date() == FC[-1].isoformat() and dialog.chosen_pid() is None
    dialog.date_combo.setCurrentIndex(4)
    dialog.point_combo.setCurrentIndex(dialog.point_combo.findData("P007"))
    assert dialog.chosen_pid() == "P007"

    pdf = dialog.export("pdf", str(tmp_path / "report.pdf"))
    png = dialog.export("png", str(tmp_path / "report.png"))
    assert pdf and png and Path(png).stat().st_size > 10_000
    layout = dialog.layout
    assert FC[4].isoformat() in layout.itemById("title").text()
    assert layout.itemById("chart_title").text().endswith("P007")
    change_map = layout.itemById("map")
    shown = [lyr for lyr in change_map.layers() if lyr.source() == result["change"].source()]
    assert shown and shown[0].renderer().band() == 5
    pixels = _render_first_page(pdf, tmp_path / "page")
    x0, y0, w, h = _mm_to_px(report.CHANGE_RECT)
    inside = pixels[y0 + 2:y0 + h - 2, x0 + 2:x0 + w - 2]
    assert (inside < 235).any(axis=2).mean() > 0.2, "the change map's frame is nearly empty"
    red = (inside[..., 0] > 150) & (inside[..., 0] - inside[..., 2] > 60)
    assert red.mean() > 0.01
    dialog.close()
