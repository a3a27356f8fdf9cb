"""The GroundCast dock in real QGIS: its panels, the typed run it starts, and what a user sees."""
from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path

import numpy as np
import pytest

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsGeometry,
    QgsLayerTreeLayer,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QPoint, Qt
from qgis.PyQt.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QSpinBox

from groundcast.engine import params as engine_params
from groundcast.engine.definitions import COORDINATE_PAIRS, STEP_DAYS
from groundcast.engine.params import Parameter, RunConfig
from groundcast.ui import task as task_module
from groundcast.ui.dock import GroundCastDock, user_words
from groundcast.ui.layer_io import points_file
from groundcast.ui.panels import parameters as parameters_panel

TESTS_DATA = Path(__file__).resolve().parent / "data"
L2B_ZIP = TESTS_DATA / "EGMS_L2b_022_0845_IW2_VV_2020_2024_1.zip"
L3_ZIP = TESTS_DATA / "EGMS_L3_E45N17_100km_U_2020_2024_1.zip"


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


def write_csv(path: Path, x: str, y: str, date_prefix: str = "", delimiter: str = ",", n: int = 4,
              xy=(4_500_000.0, 1_700_000.0)) -> Path:
    """A small point table with `n` points and 20 dates, in the column names given."""
    dates = [dt.date(2020, 1, 1) + dt.timedelta(days=6 * i) for i in range(20)]
    header = ["pid", x, y] + [f"{date_prefix}{d:%Y%m%d}" for d in dates]
    rows = [delimiter.join(header)]
    for i in range(n):
        values = [f"p{i}", f"{xy[0] + 50 * i}", f"{xy[1] + 30 * i}"] + [f"{-0.1 * k:.1f}" for k in range(20)]
        rows.append(delimiter.join(values))
    path.write_text("\n".join(rows) + "\n")
    return path


def open_file(dock, path):
    """Open through the dock as a user does, and wait for the background task."""
    task = dock.inputs.open_points_file(str(path))
    assert task is not None
    wait_for(lambda: dock.inputs.load_task is None, 60)
    return dock.inputs.points_combo.currentLayer()


@pytest.fixture(autouse=True)
def fresh_settings():
    """Each test starts from the specification's defaults: nothing remembered by an earlier one."""
    from qgis.core import QgsSettings

    from groundcast.ui import settings

    QgsSettings().remove(settings.PREFIX.rstrip("/"))
    yield
    QgsSettings().remove(settings.PREFIX.rstrip("/"))


@pytest.fixture()
def dock(qgis_iface, qgis_new_project):
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    widget = GroundCastDock(qgis_iface)
    widget.parameters.widget("out_dir").setFilePath("")
    yield widget
    widget.cleanup()
    widget.deleteLater()


# -- inputs ------------------------------------------------------------------------------------
def test_points_need_date_fields(dock):
    plain = memory_points("&field=height:double")
    dock.inputs.points_combo.setLayer(plain)
    assert "no date fields" in dock.inputs.points_info.text()
    assert not dock.run_panel.forecast_button.isEnabled()
    # both EGMS header generations, D and d, as the engine reads them
    egms_like = memory_points("&field=d20200101:double&field=D20200107:double")
    dock.inputs.points_combo.setLayer(egms_like)
    assert "2 dates, 2020-01-01 to 2020-01-07; 1 point." in dock.inputs.points_info.text()
    assert dock.run_panel.forecast_button.isEnabled() and dock.run_panel.backtest_button.isEnabled()


@pytest.mark.parametrize("x, y, prefix, delimiter", [
    (x, y, prefix, delimiter)
    for (x, y, _), prefix, delimiter in zip(COORDINATE_PAIRS * 2, ["", "d", "D", "", "d", "D", "", "d"],
                                            [",", ";"] * 4)])
def test_a_file_the_engine_reads_never_greys_out_forecast(dock, tmp_path, x, y, prefix, delimiter):
    from groundcast.engine.points import read_points

    geographic = x in ("lon", "longitude")
    path = write_csv(tmp_path / "points.csv", x.upper() if prefix == "D" else x, y, prefix, delimiter,
                     xy=(13.17, 38.70) if geographic else (4_500_000.0, 1_700_000.0))
    engine_view = read_points(path)
    assert engine_view.n_points == 4 and len(engine_view.dates) == 20
    layer = open_file(dock, path)
    assert layer is not None and layer.featureCount() == 4
    assert dock.inputs.points_ok and dock.run_panel.forecast_button.isEnabled()
    assert len(dock.inputs.dates) == len(engine_view.dates)
    assert layer.crs().authid() == ("EPSG:4326" if geographic else "EPSG:3035")
    assert points_file(layer, "/nonexistent") == str(path)


def test_open_egms_zips_in_a_task(dock):
    project = QgsProject.instance()
    task = dock.inputs.open_points_file(str(L2B_ZIP))
    # the scan runs in the background: the call returns before the layer exists
    assert task is not None and dock.inputs.load_task is task and not project.mapLayers()
    assert not dock.inputs.open_button.isEnabled()
    wait_for(lambda: dock.inputs.load_task is None, 60)
    layer = dock.inputs.points_combo.currentLayer()
    assert layer is not None and layer.source().startswith("/vsizip/")
    assert layer.featureCount() == 300 and layer.crs().authid() == "EPSG:3035"
    assert "210 dates" in dock.inputs.points_info.text() and "300 points" in dock.inputs.points_info.text()
    assert points_file(layer, "/nonexistent") == str(L2B_ZIP)
    assert dock.inputs.open_button.isEnabled()

    layer = open_file(dock, L3_ZIP)
    assert layer.featureCount() == 200 and "304 dates" in dock.inputs.points_info.text()
    assert len(project.mapLayers()) == 2


def test_a_refused_file_leaves_no_layer(dock, tmp_path, demo_data_dir, qgis_iface):
    project = QgsProject.instance()
    # a result group selected in the layer tree, as after a run
    group = project.layerTreeRoot().insertGroup(0, "Earlier run")
    view = qgis_iface.layerTreeView()
    if view is not None:
        view.setCurrentNode(group)
    no_dates = tmp_path / "wells.csv"
    no_dates.write_text("pid,easting,northing,depth\nw1,4500000,1700000,12\n")
    no_xy = tmp_path / "table.csv"
    no_xy.write_text("pid,20200101,20200107\na,0,1\n")
    for path, words in ((no_dates, "no date columns"), (no_xy, "no coordinate columns"),
                        (demo_data_dir / "dem.tif", "holds no points")):
        messages = []
        dock.inputs.problem.connect(messages.append)
        open_file(dock, path)
        dock.inputs.problem.disconnect(messages.append)
        assert len(messages) == 1 and path.name in messages[0] and words in messages[0], messages
        assert project.mapLayers() == {} and group.children() == []
        assert not dock.run_panel.forecast_button.isEnabled()
    # an accepted file goes to the top of the tree, not into the selected group
    layer = open_file(dock, write_csv(tmp_path / "ok.csv", "easting", "northing"))
    node = project.layerTreeRoot().findLayer(layer.id())
    assert node.parent() is project.layerTreeRoot() and group.children() == []


# -- area --------------------------------------------------------------------------------------
def test_draw_aoi_on_canvas(dock, qgis_iface):
    canvas = qgis_iface.mapCanvas()
    area = dock.area
    canvas.setExtent(QgsRectangle(4_500_000, 1_700_000, 4_508_000, 1_706_000))
    area.draw_button.setChecked(True)
    assert canvas.mapTool() is area.tool
    for xy in [(100, 100), (300, 100), (300, 300), (100, 300)]:
        area.tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(*xy),
                                                      Qt.LeftButton))
    area.tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, QPoint(5, 5),
                                                  Qt.RightButton))
    assert area.geometry is not None and area.name == "Drawn area"
    assert area.band.numberOfVertices() >= 4 and area.band.isVisible()
    assert "km\u00b2" in area.label.text()
    assert area.text().startswith("EPSG:3035;Polygon")
    assert canvas.mapTool() is not area.tool and not area.draw_button.isChecked()
    area.clear()
    assert area.geometry is None and area.band.numberOfVertices() == 0 and area.text() is None


def test_aoi_from_selection_and_extent(dock, qgis_iface):
    polygons = QgsVectorLayer("Polygon?crs=EPSG:4326&field=name:string", "zones", "memory")
    features = []
    for i in range(2):
        feature = QgsFeature(polygons.fields())
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(13 + i, 38, 13.5 + i, 38.5)))
        features.append(feature)
    polygons.dataProvider().addFeatures(features)
    QgsProject.instance().addMapLayer(polygons)
    area = dock.area
    area.layer_combo.setLayer(polygons)
    messages = []
    area.problem.connect(messages.append)
    area.use_selected_features()
    assert area.geometry is None and messages == ["Select one or more polygons of the chosen polygon layer "
                                                  "first."]
    polygons.selectAll()
    area.use_selected_features()
    assert area.name == "zones (2 selected)" and area.text().startswith("EPSG:4326;MultiPolygon")
    # once a run's layer outlines the area, the band and the selection that made it go
    area.shown_by_layer()
    assert not area.band.isVisible() and polygons.selectedFeatureCount() == 0
    area.use_canvas_extent()
    assert area.name == "Canvas extent" and area.text().startswith("EPSG:3035;Polygon")
    assert area.band.isVisible()


# -- parameters --------------------------------------------------------------------------------
def _range(widget):
    return widget.minimum(), widget.maximum()


def test_parameter_widgets_follow_the_specification(dock):
    shown = parameters_panel.dock_parameters()
    names = [p.name for p in shown]
    assert {"cell_size_m", "horizon_days", "holdout_days", "threshold_mm", "use_priors", "model",
            "init_from", "epochs", "seed", "device", "out_dir"} <= set(names)
    for p in shown:
        widget = dock.parameters.widget(p.name)
        in_advanced = dock.parameters.advanced.isAncestorOf(widget)
        assert in_advanced == p.advanced, p.name
        if p.kind in ("int", "float"):
            assert isinstance(widget, QSpinBox if p.kind == "int" else QDoubleSpinBox)
            low = p.minimum - (1 if p.optional and p.default is None else 0)
            assert _range(widget) == (low, p.maximum), p.name
            assert widget.suffix() == (f" {p.unit}" if p.unit else "")
        elif p.kind == "bool":
            assert isinstance(widget, QCheckBox) and widget.text() == p.label
        elif p.kind == "choice":
            assert isinstance(widget, QComboBox)
            assert [widget.itemData(i) for i in range(widget.count())] == list(p.choices)


def test_a_new_parameter_appears_in_the_dock(qgis_iface, qgis_new_project, monkeypatch):
    dummy = Parameter("wobble_mm", "float", "Wobble", "a test parameter", default=2.5, unit="mm",
                      minimum=-7.0, maximum=42.0, optional=False, advanced=True)
    widget = parameters_panel.widgets_for([dummy])["wobble_mm"]
    assert _range(widget) == (-7.0, 42.0) and widget.value() == 2.5 and widget.suffix() == " mm"
    monkeypatch.setattr(engine_params, "PARAMETERS", engine_params.PARAMETERS + [dummy])
    dock = GroundCastDock(qgis_iface)
    try:
        widget = dock.parameters.widget("wobble_mm")
        assert _range(widget) == (-7.0, 42.0) and dock.parameters.advanced.isAncestorOf(widget)
        assert dock.parameters.values("forecast")["wobble_mm"] == 2.5
    finally:
        dock.cleanup()


def test_run_config_is_typed_and_carries_every_dock_parameter(dock, tmp_path):
    dock.inputs.points_combo.setLayer(memory_points("&field=D20200101:double&field=D20200107:double"))
    widgets = dock.parameters.widgets
    widgets["cell_size_m"].setValue(250)
    widgets["horizon_days"].setValue(90)
    widgets["use_priors"].setChecked(False)
    widgets["init_from"].setFilePath(str(tmp_path / "model.safetensors"))
    widgets["epochs"].setValue(3)
    widgets["device"].setCurrentIndex(widgets["device"].findData("cpu"))
    widgets["out_dir"].setFilePath(str(tmp_path))
    config = dock.run_config("forecast")
    assert isinstance(config, RunConfig)
    assert config.cell_size_m == 250.0 and config.horizon_days == 90 and config.use_priors is False
    assert config.init_from == str(tmp_path / "model.safetensors") and config.epochs == 3
    assert config.device == "cpu" and config.dem is None and config.aoi is None
    assert Path(config.out_dir).parent == tmp_path and Path(config.out_dir).name.startswith("forecast_")
    assert Path(config.points).suffix == ".gpkg" and Path(config.points).is_file()  # the memory layer
    widgets["epochs"].setValue(widgets["epochs"].minimum())
    assert dock.run_config("forecast").epochs is None  # "Built-in": the engine's own budget
    dock._cleanup_tmp()


def test_settings_are_remembered(dock, qgis_iface):
    widgets = dock.parameters.widgets
    widgets["horizon_days"].setValue(120)
    widgets["cell_size_m"].setValue(250)
    widgets["threshold_mm"].setValue(-25)
    widgets["device"].setCurrentIndex(widgets["device"].findData("cpu"))
    widgets["epochs"].setValue(7)
    widgets["seed"].setValue(42)
    widgets["use_priors"].setChecked(False)
    dock.parameters.date_radio.setChecked(True)
    dock.save_settings()
    again = GroundCastDock(qgis_iface)
    try:
        w = again.parameters.widgets
        assert w["horizon_days"].value() == 120 and w["cell_size_m"].value() == 250
        assert w["threshold_mm"].value() == -25 and w["device"].currentData() == "cpu"
        assert w["epochs"].value() == 7 and w["seed"].value() == 42 and not w["use_priors"].isChecked()
        assert again.parameters.date_radio.isChecked() and not w["horizon_days"].isEnabled()
    finally:
        again.cleanup()


def test_a_target_date_is_never_missed():
    """The engine's own axis: epochs every STEP_DAYS from the first date, the origin at the last
    epoch at or before the last observation, ceil(horizon / STEP_DAYS) forecast steps."""
    from groundcast.engine.windows import forecast_dates

    first = dt.date(2020, 1, 3)
    for last_offset in range(1500, 1512):  # every remainder of the last observation
        last = first + dt.timedelta(days=last_offset)
        axis = np.arange(np.datetime64(first), np.datetime64(last) + 1, STEP_DAYS)
        for ahead in (1, 5, 6, 7, 100, 180, 181):
            target = last + dt.timedelta(days=ahead)
            horizon = parameters_panel.horizon_days_for(target, first, last)
            steps = max(1, math.ceil(horizon / STEP_DAYS))
            dates = forecast_dates(axis, len(axis), steps)
            final = dates[-1].astype(dt.date)
            assert final >= target, (last, target)
            assert final - dt.timedelta(days=STEP_DAYS) < target  # not a band more than needed


def test_horizon_until_a_date(dock):
    dock.inputs.points_combo.setLayer(memory_points("&field=D20200101:double&field=D20200110:double"))
    dock.parameters.date_radio.setChecked(True)
    dock.parameters.target_date.setDate(dt.date(2020, 7, 1))
    values = dock.parameters.values("forecast", *dock.inputs.dates)
    # origin 2020-01-07 (the last 6-day step at or before 2020-01-10)
    assert values["horizon_days"] == (dt.date(2020, 7, 1) - dt.date(2020, 1, 7)).days
    dock.parameters.target_date.setDate(dt.date(2020, 1, 5))
    with pytest.raises(Exception, match="after the last observation \\(2020-01-10\\)"):
        dock.parameters.values("forecast", *dock.inputs.dates)


# -- words and layout --------------------------------------------------------------------------
def test_engine_sentences_in_the_users_words():
    said = user_words("--device cuda was asked for, but torch finds no CUDA GPU on this machine.")
    assert "--" not in said and "GPU (CUDA)" in said and "Advanced" in said
    said = user_words("area of interest WKT text: contains none of the 300 points of x.zip.", "Drawn area")
    assert said.startswith("The area of interest \u201cDrawn area\u201d: contains none")
    said = user_words("/tmp/groundcast_inputs_1/pts_ab.gpkg: every series is empty.", "",
                      {"/tmp/groundcast_inputs_1/pts_ab.gpkg": "pts"})
    assert said == "The layer \u201cpts\u201d: every series is empty."
    assert "\u201cCell size\u201d" in user_words("use --cell-size 100 to fine-tune it.")


def test_a_long_status_never_moves_the_buttons(dock):
    dock.resize(380, 900)
    dock.show()
    QCoreApplication.processEvents()
    run = dock.run_panel
    before = (run.forecast_button.mapTo(dock, QPoint(0, 0)), run.status_label.height(),
              dock.tabs.height())
    long = "The forecast failed: " + "a very long sentence about a file and what went wrong " * 12
    run.set_status(long)
    QCoreApplication.processEvents()
    after = (run.forecast_button.mapTo(dock, QPoint(0, 0)), run.status_label.height(), dock.tabs.height())
    assert after == before
    assert run.status() == long and run.status_label.toolTip() == long
    assert "\u2026" in QLabelText(run.status_label)
    dock.hide()


def QLabelText(label):  # noqa: N802 (what Qt shows, not the full text)
    from qgis.PyQt.QtWidgets import QLabel

    return QLabel.text(label)


def test_backtest_table(dock):
    metrics = {"horizons_days": [12, 90, 180, 365],
               "models": {"mmstt": {"rmse_mm": [3.0, 4.0, 4.1, 4.6]},
                          "persistence": {"rmse_mm": [3.5, 5.3, 5.5, 5.8]},
                          "timefn": {"rmse_mm": [3.9, 4.6, 4.0, 4.7]}},
               "mmstt_coverage90": 0.9, "mmstt_crps_mm": 2.1, "variogram_range_m": 850.0, "n_points": 1}
    dock.resize(360, 900)
    dock.show()
    dock.tabs.setCurrentIndex(1)
    dock.results.fill_metrics_table(metrics)
    dock.results.backtest_box.setVisible(True)
    QCoreApplication.processEvents()
    table = dock.results.metrics_table
    assert [table.horizontalHeaderItem(c).toolTip() for c in range(3)] == ["MM-STT", "Persistence",
                                                                           "Time function"]
    assert [table.verticalHeaderItem(r).text() for r in range(table.rowCount())] == [
        "12 d", "90 d", "180 d", "365 d", "Cov.", "CRPS", "Range"]
    assert table.item(0, 0).text() == "3.00" and table.item(0, 0).font().bold()
    assert table.item(2, 2).font().bold() and not table.item(2, 0).font().bold()
    assert table.item(4, 0).text() == "0.90" and table.item(5, 0).text() == "2.10"
    assert table.item(6, 0).text() == "850" and table.item(4, 1).text() == "\u2013"
    # every column and row in view: no scroll bar hides Cov. or CRPS
    header = table.horizontalHeader()
    assert sum(header.sectionSize(c) for c in range(3)) <= table.viewport().width()
    assert sum(table.rowHeight(r) for r in range(table.rowCount())) <= table.viewport().height()
    assert dock.results.metrics_note.text().endswith(": 1 point.")
    dock.hide()


def test_backtest_from_dock_shows_table_and_plot(dock, tmp_path, monkeypatch):
    from groundcast.engine.results import OutputFolder, write_backtest_folder

    metrics = {"horizons_days": [12, 90], "models": {
        "mmstt": {"rmse_mm": [3.0, 4.0]}, "persistence": {"rmse_mm": [3.5, 5.3]},
        "timefn": {"rmse_mm": [3.9, 4.6]}}, "mmstt_coverage90": 0.88}

    def fake_backtest(config, progress, log=None):
        assert isinstance(config, RunConfig)
        assert config.holdout_days == dock.parameters.widget("holdout_days").value()
        with OutputFolder(config, "backtest") as out:
            return write_backtest_folder(out, metrics, examples=[])

    monkeypatch.setattr(task_module, "engine_function", lambda kind: fake_backtest)
    dock.inputs.points_combo.setLayer(memory_points("&field=D20200101:double&field=D20200107:double"))
    dock.parameters.widget("out_dir").setFilePath(str(tmp_path))
    assert dock.start("backtest") is not None
    wait_for(lambda: dock.task is None, 30)
    assert dock.run_panel.status() == "Backtest done."
    results = dock.results
    assert not results.backtest_box.isHidden() and dock.tabs.currentIndex() == 1
    assert results.metrics_table.item(2, 0).text() == "0.88"
    assert results.backtest_image.pixmap() is not None and not results.backtest_image.pixmap().isNull()
    assert [p.name for p in tmp_path.iterdir()][0].startswith("backtest_")
    # a click shows the whole figure at full size
    results.backtest_image.clicked.emit()
    window = results.image_window
    assert window is not None and window.isVisible()
    assert window.image.pixmap().width() == results.backtest_pixmap.width() > results.backtest_image.width()
    window.close()


def test_cancel_from_dock_leaves_no_layers_no_files(dock, tmp_path, monkeypatch):
    from groundcast.engine.errors import Cancelled
    from groundcast.engine.fileio import atomic_dir

    def slow(config, progress, log=None):
        with atomic_dir(config.out_dir) as tmp:
            for i in range(1000):
                (tmp / f"f{i}").write_text("x")
                progress.progress(i / 1000, "training")
                if progress.should_cancel():
                    raise Cancelled("cancelled")
                time.sleep(0.01)
        return {}

    monkeypatch.setattr(task_module, "engine_function", lambda kind: slow)
    dock.inputs.points_combo.setLayer(memory_points("&field=D20200101:double&field=D20200107:double"))
    dock.parameters.widget("out_dir").setFilePath(str(tmp_path))
    layers_before = set(QgsProject.instance().mapLayers())
    run = dock.run_panel
    task = dock.start("forecast")
    assert task is not None and not run.forecast_button.isEnabled() and run.cancel_button.isEnabled()
    wait_for(lambda: run.status() == "training", 20)
    dock.cancel()
    wait_for(lambda: dock.task is None, 20)
    assert "Cancelled" in run.status()
    assert list(tmp_path.iterdir()) == []  # no run folder, no temporary folder
    assert set(QgsProject.instance().mapLayers()) == layers_before
    assert dock.tmp_dir is None  # the exported memory layer is gone too
    assert run.forecast_button.isEnabled() and not run.cancel_button.isEnabled()


def test_a_failed_run_speaks_the_users_words(dock, tmp_path, monkeypatch):
    from groundcast.engine.errors import InputError

    def no_gpu(config, progress, log=None):
        raise InputError("--device cuda was asked for, but torch finds no CUDA GPU on this machine.")

    monkeypatch.setattr(task_module, "engine_function", lambda kind: no_gpu)
    dock.inputs.points_combo.setLayer(memory_points("&field=D20200101:double&field=D20200107:double"))
    dock.parameters.widget("out_dir").setFilePath(str(tmp_path))
    assert dock.start("forecast") is not None
    wait_for(lambda: dock.task is None, 30)
    assert dock.run_panel.status().startswith("Device is set to GPU (CUDA)")


def test_full_forecast_on_demo_region(dock, qgis_iface, demo_data_dir, tmp_path):
    """The real engine: demo points, priors and AOI in, styled layers on the timeline out."""
    project = QgsProject.instance()
    open_file(dock, demo_data_dir / "EGMS_L2b_demo_2020_2024.csv")
    dem = QgsRasterLayer(str(demo_data_dir / "dem.tif"), "dem", "gdal")
    geology = QgsVectorLayer(str(demo_data_dir / "geology.gpkg"), "geology", "ogr")
    aoi = QgsVectorLayer(str(demo_data_dir / "aoi.geojson"), "Demo AOI", "ogr")
    project.addMapLayers([dem, geology, aoi])
    dock.inputs.dem_combo.setLayer(dem)
    dock.inputs.geology_combo.setLayer(geology)
    dock.inputs.geology_field.setField("unit")
    aoi.selectAll()
    dock.area.layer_combo.setLayer(aoi)
    dock.area.use_selected_features()
    widgets = dock.parameters.widgets
    dock.parameters.days_radio.setChecked(True)
    widgets["horizon_days"].setValue(60)
    widgets["cell_size_m"].setValue(200)
    widgets["epochs"].setValue(1)
    widgets["device"].setCurrentIndex(widgets["device"].findData("cpu"))
    widgets["model"].setCurrentIndex(widgets["model"].findData("scratch"))
    widgets["out_dir"].setFilePath(str(tmp_path))

    assert dock.start("forecast") is not None
    wait_for(lambda: dock.task is None, 280)
    assert dock.run_panel.status() == "Forecast done; layers added.", dock.run_panel.status()
    assert dock.tabs.currentIndex() == 1  # Results, as after a backtest

    group = project.layerTreeRoot().children()[0]
    assert "Demo AOI \u00b7 to " in group.name() and " \u00b7 run " in group.name()
    layers = dock.results.result_layers
    shown = [c.layer() for c in group.children() if isinstance(c, QgsLayerTreeLayer)]
    # the AOI outline at the bottom, under every result; the rubber band and selection gone
    assert shown[-1] is layers["aoi"] and layers["change"] in shown
    assert not dock.area.band.isVisible() and aoi.selectedFeatureCount() == 0
    symbol = layers["aoi"].renderer().symbol()
    assert symbol.symbolLayer(0).brushStyle() == Qt.NoBrush  # an outline only
    assert layers["points"].featureCount() > 0
    assert dock.results.report_button.isEnabled()

    forecast = layers["forecast"]
    run_dir = Path(forecast.source()).parent
    assert run_dir.parent == tmp_path and (run_dir / "series.npz").exists()
    point = next(layers["points"].getFeatures()).geometry().asPoint()
    assert dock.results.show_series_at(point, layers["points"].crs())
    assert dock.results.plot.example is not None and "q50_mm" in dock.results.plot.example
    # Report… opens the report dialog on this run's folder and layers
    dialog = dock.open_report()
    try:
        assert dialog is not None and Path(dialog.out_dir) == run_dir
    finally:
        if dialog is not None:
            dialog.close()


def test_the_docked_plot_gives_a_short_forecast_room(dock):
    from matplotlib.dates import date2num

    dates_obs = np.arange(np.datetime64("2020-01-03"), np.datetime64("2024-12-26"), 6)
    dates_fc = dates_obs[-1] + 6 * np.arange(1, 31)  # 180 days ahead
    trend = np.linspace(0, -40, dates_obs.size)
    example = {"label": "Point a", "dates_obs": dates_obs, "obs_mm": trend, "dates_fc": dates_fc,
               "q05_mm": np.full(30, -45.0), "q50_mm": np.full(30, -42.0), "q95_mm": np.full(30, -39.0)}
    dock.results.plot.show_example(example)
    ax = dock.results.plot.figure.axes[0]
    left, right = ax.get_xlim()
    share = (date2num(dates_fc[-1].astype(dt.date)) - date2num(dates_fc[0].astype(dt.date))) / (right - left)
    assert share > 0.18  # was 0.1 with all five years of history in view
    assert right >= date2num(dates_fc[-1].astype(dt.date))
    low, high = ax.get_ylim()
    assert low <= -45 and high < 0  # the y-axis follows what is in view, not the first years
