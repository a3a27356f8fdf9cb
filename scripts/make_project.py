#!/usr/bin/env python3
"""Turn `make demo` output into one QGIS project a user can open: styled forecast on the
Temporal Controller, hillshade, AOI, and the print-layout report (also exported as PDF/PNG).

Usage: QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/make_project.py DEMO_DIR
  reads  DEMO_DIR/forecast/ (required), DEMO_DIR/backtest/metrics.json and DEMO_DIR/data/ (optional)
  writes DEMO_DIR/groundcast_demo.qgz, DEMO_DIR/report.pdf, DEMO_DIR/report.png
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AREA = "demo region"


def _import_plugin_package():
    """Make the checkout importable as the package `groundcast`, as QGIS loads it."""
    parent = Path(tempfile.mkdtemp(prefix="groundcast-pkg-"))
    atexit.register(shutil.rmtree, parent, ignore_errors=True)
    (parent / "groundcast").symlink_to(ROOT, target_is_directory=True)
    sys.path.insert(0, str(parent))


def add_hillshade(project, dem_path: Path, group):
    """The DEM as a soft hillshade under the forecast: relief shows where no cell has a forecast."""
    from qgis.core import QgsBilinearRasterResampler, QgsHillshadeRenderer, QgsRasterLayer

    dem = QgsRasterLayer(str(dem_path), "Hillshade (demo DEM)", "gdal")
    if not dem.isValid():
        return None
    renderer = QgsHillshadeRenderer(dem.dataProvider(), 1, 315.0, 45.0)
    renderer.setZFactor(1.5)  # the demo's gentle relief needs some exaggeration to read
    dem.setRenderer(renderer)
    # smooth when zoomed in: nearest-neighbour shading of a 25 m DEM looks like noise
    dem.resampleFilter().setZoomedInResampler(QgsBilinearRasterResampler())
    dem.resampleFilter().setZoomedOutResampler(QgsBilinearRasterResampler())
    dem.setOpacity(0.55)
    project.addMapLayer(dem, False)
    group.addLayer(dem)  # last in the group: drawn under everything
    return dem


def file_aoi(project, aoi_path: Path, result: dict, group):
    """Replace the result's in-memory AOI outline (lost on saving) by the AOI file itself."""
    from qgis.core import QgsVectorLayer

    from groundcast.ui import layers

    layer = QgsVectorLayer(str(aoi_path), "Area of interest", "ogr")
    if not layer.isValid():
        return result.get("aoi")
    old = result.get("aoi")
    position = len(group.children())  # the outline stays under the results
    if old is not None and old.id() in project.mapLayers():
        node = group.findLayer(old.id())
        if node is not None:
            position = group.children().index(node)
        project.removeMapLayer(old.id())
    layers.style_aoi(layer)
    project.addMapLayer(layer, False)
    group.insertLayer(position, layer)
    return layer


def build_project(demo_dir: Path) -> Path:
    from qgis.core import (
        Qgis,
        QgsCoordinateReferenceSystem,
        QgsProject,
        QgsReferencedRectangle,
    )

    from groundcast.engine.errors import InputError
    from groundcast.engine.results import ForecastRun
    from groundcast.ui import layers, report

    forecast_dir = demo_dir / "forecast"
    try:
        forecast = ForecastRun.open(forecast_dir, kind="forecast")
    except InputError as exc:
        raise SystemExit(f"make_project: {exc} Run `make demo` first.") from None
    data_dir = demo_dir / "data"
    summary = forecast.summary or {}
    try:
        metrics = ForecastRun.open(demo_dir / "backtest", kind="backtest").metrics
    except InputError:
        metrics = None

    project = QgsProject.instance()
    project.clear()
    project.setCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    project.setTitle("GroundCast demo")
    project.setFilePathStorage(Qgis.FilePathType.Relative)

    result = layers.add_result_layers(str(forecast_dir), None, project=project, aoi_name=AREA)
    group = result["group"]
    if (data_dir / "aoi.geojson").is_file():
        result["aoi"] = file_aoi(project, data_dir / "aoi.geojson", result, group)
    if (data_dir / "dem.tif").is_file():
        result["hillshade"] = add_hillshade(project, data_dir / "dem.tif", group)
    result = {k: v for k, v in result.items() if v is not None}

    # open zoomed on the area; the time range comes from layers.set_temporal
    frame = result.get("aoi") or result["forecast"]
    extent = frame.extent()
    extent.scale(1.1)
    project.viewSettings().setDefaultViewExtent(QgsReferencedRectangle(extent, frame.crs()))

    example = report.load_series_example(str(forecast_dir))
    layout = report.build_report(project, result, str(demo_dir), None, example, metrics, summary, area=AREA)
    report.export_report(layout, str(demo_dir / "report.pdf"), str(demo_dir / "report.png"))

    # written in place: paths inside are stored relative to this very file
    path = demo_dir / "groundcast_demo.qgz"
    if not project.write(str(path)):
        raise SystemExit(f"make_project: could not write {path}: {project.error()}")
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", type=Path, help="the folder `make demo` wrote (demo_out)")
    args = parser.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    _import_plugin_package()

    from qgis.core import QgsApplication

    app = QgsApplication([], True)  # GUI classes: layouts render text and pictures
    app.initQgis()
    try:
        path = build_project(args.demo_dir.resolve())
        print(f"make_project: wrote {path}, {args.demo_dir / 'report.pdf'}, {args.demo_dir / 'report.png'}")
    finally:
        from qgis.core import QgsProject

        QgsProject.instance().clear()
        app.exitQgis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
