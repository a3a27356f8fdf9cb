"""The GroundCast dock in real QGIS: inputs, AOI, settings, cancel, and a full demo forecast."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsLayerTreeLayer,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRasterLayerTemporalProperties,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QPoint, Qt

from groundcast.ui import task as task_module
from groundcast.ui.dock import GroundCastDock, points_file

REPO_ROOT = Path(__file__).resolve().parent.parent
EGMS_ZIP = REPO_ROOT.parent / "shared" / "data" / "egms" / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"


def wait_for(condition, timeout):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s")
        QCoreApplication.processEvents()
        time.sleep(0.02)


def memory_points(fields: str) -> QgsVectorLayer:
    layer = QgsVectorLayer(f"Point?crs=EPSG:3035&field=pid:string{fields}", "pts", "memory")
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(4_500_000, 1_700_000)))
    feature["pid"] = "a"
    layer.dataProvider().addFeatures([feature])
    QgsProject.instance().addMapLayer(layer)
    return layer


@pytest.fixture()
def dock(qgis_iface, qgis_new_project):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    widget = GroundCastDock(qgis_iface)
    widget.output_widget.setFilePath("")
    yield widget
    widget.cleanup()
    widget.deleteLater()


def test_points_need_date_fields(dock):
    plain = memory_points("&field=height:double")
    dock.points_combo.setLayer(plain)
    assert "no date fields" in dock.points_info.text()
    assert not dock.forecast_button.isEnabled()
    egms_like = memory_points("&field=D20200101:double&field=D20200107:double")
    dock.points_combo.setLayer(egms_like)
    assert "2 dates, 2020-01-01 to 2020-01-07" in dock.points_info.text()
    assert dock.forecast_button.isEnabled() and dock.backtest_button.isEnabled()


def test_open_egms_csv_and_zip(dock, demo_data_dir):
    csv = demo_data_dir / "EGMS_L2b_demo_2020_2024.csv"
    layer = dock.open_points_file(str(csv))
    assert layer is not None and layer.providerType() == "delimitedtext"
    assert layer.crs().authid() == "EPSG:3035" and layer.featureCount() > 0
    assert dock.points_combo.currentLayer() is layer and dock.points_ok
    assert points_file(layer, "/nonexistent") == str(csv)

    layer = dock.open_points_file(str(EGMS_ZIP))
    assert layer is not None and layer.source().startswith("/vsizip/")
    assert layer.featureCount() == 11590 and layer.crs().authid() == "EPSG:3035"
    assert "210 dates" in dock.points_info.text()
    assert points_file(layer, "/nonexistent") == str(EGMS_ZIP)

    assert dock.open_points_file(str(demo_data_dir / "dem.tif")) is None  # not an EGMS CSV


def test_draw_aoi_on_canvas(dock, qgis_iface):
    canvas = qgis_iface.mapCanvas()
    canvas.setExtent(QgsRectangle(4_500_000, 1_700_000, 4_508_000, 1_706_000))
    dock.draw_button.setChecked(True)
    assert canvas.mapTool() is dock.aoi_tool
    for xy in [(100, 100), (300, 100), (300, 300), (100, 300)]:
        event = QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(*xy), Qt.LeftButton)
        dock.aoi_tool.canvasReleaseEvent(event)
    dock.aoi_tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(5, 5),
                                                      Qt.RightButton))
    assert dock.aoi_geometry is not None and dock.aoi_name == "Drawn area"
    assert dock.aoi_band.numberOfVertices() >= 4  # shown while you work
    assert "km\u00b2" in dock.aoi_label.text()
    assert dock.aoi_text().startswith("EPSG:3035;Polygon")
    assert canvas.mapTool() is not dock.aoi_tool and not dock.draw_button.isChecked()
    dock.clear_aoi()
    assert dock.aoi_geometry is None and dock.aoi_band.numberOfVertices() == 0 and dock.aoi_text() is None


def test_aoi_from_selection_and_extent(dock, qgis_iface):
    polygons = QgsVectorLayer("Polygon?crs=EPSG:4326&field=name:string", "zones", "memory")
    features = []
    for i in range(2):
        feature = QgsFeature(polygons.fields())
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(13 + i, 38, 13.5 + i, 38.5)))
        features.append(feature)
    polygons.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(polygons)
    dock.aoi_layer_combo.setLayer(polygons)
    dock.use_selected_features()
    assert dock.aoi_geometry is None  # nothing selected: a warning, no AOI
    polygons.selectAll()
    dock.use_selected_features()
    assert dock.aoi_name == "zones (2 selected)" and dock.aoi_text().startswith("EPSG:4326;MultiPolygon")

    dock.use_canvas_extent()
    assert dock.aoi_name == "Canvas extent" and dock.aoi_text().startswith("EPSG:3035;Polygon")


def test_settings_are_remembered(dock, qgis_iface):
    dock.horizon_spin.setValue(120)
    dock.cell_spin.setValue(250)
    dock.threshold_spin.setValue(-25)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    dock.epochs_spin.setValue(7)
    dock.seed_spin.setValue(42)
    dock.horizon_date_radio.setChecked(True)
    dock.save_settings()
    again = GroundCastDock(qgis_iface)
    try:
        assert again.horizon_spin.value() == 120 and again.cell_spin.value() == 250
        assert again.threshold_spin.value() == -25 and again.device_combo.currentData() == "cpu"
        assert again.epochs_spin.value() == 7 and again.seed_spin.value() == 42
        assert again.horizon_date_radio.isChecked() and not again.horizon_spin.isEnabled()
    finally:
        again.horizon_days_radio.setChecked(True)
        again.epochs_spin.setValue(0)
        again.seed_spin.setValue(0)
        again.device_combo.setCurrentIndex(0)
        again.save_settings()
        again.cleanup()


def test_backtest_table(dock, tmp_path):
    metrics = {"horizons_days": [12, 90, 180, 365],
               "models": {"mmstt": {"rmse_mm": [3.0, 4.0, 4.1, 4.6]},
                          "persistence": {"rmse_mm": [3.5, 5.3, 5.5, 5.8]},
                          "timefn": {"rmse_mm": [3.9, 4.6, 4.0, 4.7]}},
               "mmstt_coverage90": 0.9, "mmstt_crps_mm": 2.1, "variogram_range_m": 850.0, "n_points": 10}
    dock.fill_metrics_table(metrics)
    table = dock.metrics_table
    assert [table.verticalHeaderItem(r).text() for r in range(3)] == ["MM-STT", "Persistence", "Time fn"]
    assert [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())] == [
        "12 d", "90 d", "180 d", "365 d", "Cov.", "CRPS", "Range"]
    assert table.item(0, 0).text() == "3.00" and table.item(0, 0).font().bold()
    assert table.item(2, 2).font().bold() and not table.item(0, 2).font().bold()
    assert table.item(0, 4).text() == "0.90" and table.item(0, 6).text() == "850"
    assert table.item(1, 4).text() == "\u2013"


def test_backtest_from_dock_shows_table_and_plot(dock, tmp_path, monkeypatch):
    import json

    from groundcast.engine.fileio import atomic_dir

    metrics = {"horizons_days": [12, 90], "models": {
        "mmstt": {"rmse_mm": [3.0, 4.0]}, "persistence": {"rmse_mm": [3.5, 5.3]},
        "timefn": {"rmse_mm": [3.9, 4.6]}}, "mmstt_coverage90": 0.88}

    def fake_backtest(config, progress):
        assert config.holdout_days == dock.holdout_spin.value()
        with atomic_dir(config.out_dir) as tmp:
            (tmp / "metrics.json").write_text(json.dumps(metrics))
            from matplotlib.figure import Figure

            Figure(figsize=(6, 3)).savefig(tmp / "backtest.png")
        return metrics

    monkeypatch.setattr(task_module, "engine_function", lambda kind: fake_backtest)
    dock.points_combo.setLayer(memory_points("&field=D20200101:double&field=D20200107:double"))
    dock.output_widget.setFilePath(str(tmp_path))
    assert dock.start("backtest") is not None
    wait_for(lambda: dock.task is None, 30)
    assert dock.status_label.text() == "Backtest done."
    assert not dock.backtest_box.isHidden() and dock.tabs.currentIndex() == 1
    assert dock.metrics_table.rowCount() == 3 and dock.metrics_table.item(0, 2).text() == "0.88"
    assert dock.backtest_image.pixmap() is not None and not dock.backtest_image.pixmap().isNull()
    assert [p.name for p in tmp_path.iterdir()][0].startswith("backtest_")


def test_cancel_from_dock_leaves_no_layers_no_files(dock, tmp_path, monkeypatch):
    from groundcast.engine.errors import Cancelled
    from groundcast.engine.fileio import atomic_dir

    def slow(config, progress):
        with atomic_dir(config.out_dir) as tmp:
            for i in range(1000):
                (tmp / f"f{i}").write_text("x")
                progress.progress(i / 1000, "training")
                if progress.should_cancel():
                    raise Cancelled("cancelled")
                time.sleep(0.01)
        return {}

    monkeypatch.setattr(task_module, "engine_function", lambda kind: slow)
    layer = memory_points("&field=D20200101:double&field=D20200107:double")
    dock.points_combo.setLayer(layer)
    dock.output_widget.setFilePath(str(tmp_path))
    layers_before = set(QgsProject.instance().mapLayers())
    task = dock.start("forecast")
    assert task is not None and not dock.forecast_button.isEnabled() and dock.cancel_button.isEnabled()
    wait_for(lambda: dock.status_label.text() == "training", 20)
    dock.cancel()
    wait_for(lambda: dock.task is None, 20)
    assert "Cancelled" in dock.status_label.text()
    assert list(tmp_path.iterdir()) == []  # no run folder, no temporary folder
    assert set(QgsProject.instance().mapLayers()) == layers_before
    assert dock.tmp_dir is None  # the exported memory layer is gone too
    assert dock.forecast_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_full_forecast_on_demo_region(dock, qgis_iface, demo_data_dir, tmp_path):
    """The real engine: demo points, priors and AOI in, styled layers on the timeline out."""
    project = QgsProject.instance()
    dock.open_points_file(str(demo_data_dir / "EGMS_L2b_demo_2020_2024.csv"))
    dem = QgsRasterLayer(str(demo_data_dir / "dem.tif"), "dem", "gdal")
    geology = QgsVectorLayer(str(demo_data_dir / "geology.gpkg"), "geology", "ogr")
    aoi = QgsVectorLayer(str(demo_data_dir / "aoi.geojson"), "Demo AOI", "ogr")
    project.addMapLayers([dem, geology, aoi])
    dock.dem_combo.setLayer(dem)
    dock.geology_combo.setLayer(geology)
    dock.geology_field.setField("unit")
    aoi.selectAll()
    dock.aoi_layer_combo.setLayer(aoi)
    dock.use_selected_features()
    dock.horizon_days_radio.setChecked(True)
    dock.horizon_spin.setValue(60)
    dock.cell_spin.setValue(200)
    dock.epochs_spin.setValue(1)
    dock.device_combo.setCurrentIndex(dock.device_combo.findData("cpu"))
    dock.output_widget.setFilePath(str(tmp_path))

    assert dock.start("forecast") is not None
    wait_for(lambda: dock.task is None, 280)
    assert dock.status_label.text() == "Forecast done; layers added.", dock.status_label.text()

    group = project.layerTreeRoot().children()[0]
    assert group.name().startswith("Demo AOI \u2013 ")
    layers = dock.result_layers
    names = [c.layer() for c in group.children() if isinstance(c, QgsLayerTreeLayer)]
    assert names == [layers[k] for k in ("aoi", "points", "forecast", "interval90", "exceedance")]
    forecast = layers["forecast"]
    renderer = forecast.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert renderer.classificationMin() < 0 < renderer.classificationMax()
    assert renderer.band() == forecast.bandCount() > 1
    props = forecast.temporalProperties()
    assert props.isActive() and props.mode() == QgsRasterLayerTemporalProperties.ModeRedrawLayerOnly
    assert project.timeSettings().temporalRange().begin().isValid()
    assert layers["points"].featureCount() > 0

    run_dir = Path(forecast.source()).parent
    assert run_dir.parent == tmp_path and (run_dir / "series.npz").exists()
    # clicking a point plots its series, and the plot exports
    point = next(layers["points"].getFeatures()).geometry().asPoint()
    assert dock.show_series_at(point, layers["points"].crs())
    assert dock.plot.example is not None and "q50_mm" in dock.plot.example
    cell = dock.series.cell_example(point.x(), point.y())  # the forecast cell holding that point
    assert cell is not None and len(cell["q50_mm"]) == forecast.bandCount()
    assert Path(dock.plot.export(str(tmp_path / "series.png"))).stat().st_size > 1000
    assert "<svg" in Path(dock.plot.export(str(tmp_path / "series.svg"))).read_text()[:500]
