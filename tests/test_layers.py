"""Styling, temporal wiring and grouping of engine outputs (ui/layers.py) in real QGIS."""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from qgis.core import (
    QgsDateTimeRange,
    QgsProject,
    QgsRasterLayer,
    QgsRasterLayerTemporalProperties,
    QgsSingleBandPseudoColorRenderer,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeLayer,
    QgsLayerTreeModel,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QDateTime, QTime, Qt
from qgis.PyQt.QtGui import QColor

from groundcast.ui import layers

DATES = [dt.date(2025, 1, 3) + dt.timedelta(days=6 * i) for i in range(4)]


def _write_stack(path, values, dates=DATES, nodata=-9999.0):
    count, height, width = values.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype="float32",
                   crs="EPSG:3035", transform=from_origin(4_500_000, 1_800_000, 100, 100), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype("float32"))
        for i, day in enumerate(dates, start=1):
            dst.set_band_description(i, day.isoformat())
            dst.update_tags(i, units="mm")


ORIGIN = dt.date(2024, 12, 28)  # the last observation: where the change counts from
FIRST = dt.date(2020, 1, 3)  # the first EGMS epoch: where the cumulative maps count from
X0, Y0, CELL = 4_500_000, 1_800_000, 100


@pytest.fixture()
def result_dir(tmp_path):
    """A tiny output folder in the documented layout: forecast, change (with 5/95 %), interval,
    exceedance, points, series and summary. The points sit in the left two thirds of the grid;
    the cells of the right third have no point near them and hold nodata, as the engine writes."""
    rng = np.random.default_rng(0)
    h, w = 10, 12
    trend = np.linspace(-30, 12, w)[None, None, :] * np.linspace(0.25, 1, len(DATES))[:, None, None]
    median = trend + rng.normal(0, 0.5, (len(DATES), h, w))
    median[:, 0, 0] = -9999.0  # a nodata cell must not decide the ramp
    change = np.linspace(-3, 1, w)[None, None, :] * np.linspace(0.25, 1, len(DATES))[:, None, None]
    change = change + np.zeros((len(DATES), h, w))
    for stack in (median, change):
        stack[:, :, 8:] = -9999.0  # far from every point
    _write_stack(tmp_path / "forecast.tif", median)
    _write_stack(tmp_path / "change.tif", change)
    _write_stack(tmp_path / "change_q05.tif", np.where(change > -9999, change - 1.5, -9999.0))
    _write_stack(tmp_path / "change_q95.tif", np.where(change > -9999, change + 1.5, -9999.0))
    _write_stack(tmp_path / "interval90.tif", np.abs(median) * 0.3 + 2)
    _write_stack(tmp_path / "exceedance.tif", np.clip(-median / 30, 0, 1))

    import fiona

    pids = [f"p{i}" for i in range(4)]
    schema = {"geometry": "Point", "properties": {"pid": "str", "forecast_mm": "float", "change_mm": "float"}}
    with fiona.open(tmp_path / "points.gpkg", "w", driver="GPKG", layer="points", crs="EPSG:3035",
                    schema=schema) as dst:
        for i, (value, change) in enumerate(zip([-25.0, -3.0, 0.5, 8.0], [-4.0, -1.0, 0.5, 2.0])):
            dst.write({"geometry": {"type": "Point", "coordinates": (X0 + 150 + 200 * i, Y0 - 500)},
                       "properties": {"pid": pids[i], "forecast_mm": value, "change_mm": change}})
    obs_dates = [FIRST + dt.timedelta(days=6 * i) for i in range((ORIGIN - FIRST).days // 6 + 1)]
    obs = np.tile(np.linspace(0, -20, len(obs_dates)), (4, 1)) + np.arange(4)[:, None]
    level = obs[:, -5:].mean(axis=1)
    steps = np.array([-4.0, -1.0, 0.5, 2.0])[:, None] * np.linspace(0.25, 1, len(DATES))[None, :]
    q50 = level[:, None] + steps
    np.savez_compressed(tmp_path / "series.npz", pid=np.array(pids), x=np.zeros(4), y=np.zeros(4),
                        dates_obs=np.array(obs_dates, dtype="datetime64[D]").astype(np.int64), obs_mm=obs,
                        dates_fc=np.array(DATES, dtype="datetime64[D]").astype(np.int64),
                        level_mm=level, q05_mm=q50 - 2, q50_mm=q50, q95_mm=q50 + 2)
    summary = {"observed_from": FIRST.isoformat(), "observed_to": ORIGIN.isoformat(),
               "references": {"cumulative_since": FIRST.isoformat(), "change_since": ORIGIN.isoformat()},
               "forecast_dates": [d.isoformat() for d in DATES], "created": "2025-01-02T13:32:00+00:00",
               "inputs": {"threshold_mm": -10.0, "aoi": None, "points": "/data/Ustica.csv"}}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    write_manifest(tmp_path)
    return tmp_path


def write_manifest(folder):
    """The manifest a finished run leaves: it lists the files GroundCast wrote."""
    from engine.results import MANIFEST, SCHEMA_VERSION

    files = {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"schema_version": SCHEMA_VERSION, "kind": "forecast",
                                               "files": files}))


def _reddish(color):
    return color.red() > 150 and color.red() > color.blue() + 60


def _blueish(color):
    return color.blue() > 120 and color.blue() > color.red() + 60


def test_style_forecast_diverging_symmetric(result_dir):
    layer = QgsRasterLayer(str(result_dir / "forecast.tif"), "f", "gdal")
    assert layer.isValid()
    renderer = layers.style_forecast(layer, band=2)
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
    assert renderer.band() == 2
    vmin, vmax = renderer.classificationMin(), renderer.classificationMax()
    assert vmin < 0 < vmax and vmin == -vmax
    assert 25 <= vmax <= 50  # robust extreme ~30 mm rounded up; nodata -9999 ignored
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    assert items[0].value == vmin and items[-1].value == vmax
    assert _reddish(items[0].color), items[0].color.name()
    assert _blueish(items[-1].color), items[-1].color.name()
    middle = items[len(items) // 2]
    assert middle.value == 0 and min(middle.color.red(), middle.color.green(), middle.color.blue()) > 220
    assert all(item.label.endswith(" mm") for item in items)
    legend = renderer.shader().rasterShaderFunction().legendSettings()
    assert "subsidence" in legend.minimumLabel() and "uplift" in legend.maximumLabel()


def test_style_interval_and_exceedance(result_dir):
    interval = QgsRasterLayer(str(result_dir / "interval90.tif"), "i", "gdal")
    renderer = layers.style_interval(interval)
    assert renderer.classificationMin() == 0 and renderer.classificationMax() > 2
    exceed = QgsRasterLayer(str(result_dir / "exceedance.tif"), "e", "gdal")
    renderer = layers.style_exceedance(exceed)
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)
    items = renderer.shader().rasterShaderFunction().colorRampItemList()
    assert items[0].color.lightness() > items[-1].color.lightness()  # sequential: light to dark


def test_band_dates_from_descriptions(result_dir):
    assert layers.band_dates(str(result_dir / "forecast.tif")) == DATES
    layer = QgsRasterLayer(str(result_dir / "forecast.tif"), "f", "gdal")
    assert layers.band_dates(layer) == DATES


def test_band_for_range():
    assert layers.band_for_range(DATES, None, None, default=4) == 4
    assert layers.band_for_range(DATES, DATES[0], DATES[1], default=4) == 1
    assert layers.band_for_range(DATES, DATES[2], DATES[3], default=4) == 3
    assert layers.band_for_range(DATES, DATES[3], DATES[3] + dt.timedelta(days=6), default=1) == 4


def _qdt(day):
    return QDateTime(day, QTime(0, 0), Qt.UTC)


def test_add_result_layers_group_styles_temporal(result_dir, qgis_new_project, qgis_canvas):
    project = QgsProject.instance()
    aoi = ("EPSG:3035;POLYGON((4500000 1799000,4501200 1799000,4501200 1800000,"
           "4500000 1800000,4500000 1799000))")
    result = layers.add_result_layers(str(result_dir), "Test AOI \u2013 2025-01-01", project,
                                      aoi_geometry=aoi)

    group = project.layerTreeRoot().findGroup("Test AOI \u2013 2025-01-01")
    assert group is not None and result["group"] is group
    children = [c.layer() for c in group.children() if isinstance(c, QgsLayerTreeLayer)]
    order = ("points", "change", "exceedance", "forecast", "interval90", "aoi")
    assert children == [result[k] for k in order]
    assert group.findLayer(result["change"].id()).isVisible()
    for key in ("forecast", "interval90", "exceedance", "change_q05", "change_q95"):
        assert not group.findLayer(result[key].id()).isVisible(), key

    forecast = result["forecast"]
    renderer = forecast.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    assert renderer.band() == len(DATES)  # opens on the horizon
    assert renderer.classificationMin() < 0 < renderer.classificationMax()

    assert isinstance(result["points"].renderer(), QgsGraduatedSymbolRenderer)
    ranges = result["points"].renderer().ranges()
    assert _reddish(ranges[0].symbol().color()) and _blueish(ranges[-1].symbol().color())
    assert result["aoi"].featureCount() == 1 and result["aoi"].crs().authid() == "EPSG:3035"
    assert result["aoi"].source().startswith(str(result_dir))  # a file, so a saved project keeps it

    for key in ("change", "change_q05", "change_q95", "forecast", "interval90", "exceedance"):
        props = result[key].temporalProperties()
        assert props.isActive()
        assert props.mode() == QgsRasterLayerTemporalProperties.ModeRedrawLayerOnly
        assert layers.band_dates(result[key]) == DATES
    settings = project.timeSettings()
    assert settings.temporalRange().begin().date().toPyDate() == DATES[0]
    assert settings.temporalRange().end().date().toPyDate() == DATES[-1] + dt.timedelta(days=6)
    assert settings.timeStep() == 6 and settings.timeStepUnit() == QgsUnitTypes.TemporalDays

    # scrubbing: the canvas frame picks the band of that date, time off returns to the horizon
    switcher = layers.TemporalBandSwitcher(qgis_canvas, project)
    try:
        qgis_canvas.setTemporalRange(QgsDateTimeRange(_qdt(DATES[1]), _qdt(DATES[2]), True, False))
        assert forecast.renderer().band() == 2
        assert result["exceedance"].renderer().band() == 2
        assert result["change"].renderer().band() == 2
        assert result["points"].renderer().classAttribute() == f"change_{DATES[1]:%Y_%m_%d}"
        qgis_canvas.setTemporalRange(QgsDateTimeRange(_qdt(DATES[0]), _qdt(DATES[1]), True, False))
        assert forecast.renderer().band() == 1
        assert result["points"].renderer().classAttribute() == f"change_{DATES[0]:%Y_%m_%d}"
        qgis_canvas.setTemporalRange(QgsDateTimeRange(QDateTime(), QDateTime()))
        assert forecast.renderer().band() == len(DATES)
        assert result["points"].renderer().classAttribute() == f"change_{DATES[-1]:%Y_%m_%d}"
    finally:
        switcher.stop()
        qgis_canvas.setTemporalRange(QgsDateTimeRange(QDateTime(), QDateTime()))


def test_temporal_controller_scrubs_bands(result_dir, qgis_new_project):
    """The whole chain as in QGIS: controller frame -> canvas range -> band shown."""
    from qgis.core import QgsTemporalNavigationObject
    from qgis.gui import QgsMapCanvas

    project = QgsProject.instance()
    result = layers.add_result_layers(str(result_dir), "scrub", project)
    # a canvas of its own: the session canvas must not keep a pointer to this controller
    navigation = QgsTemporalNavigationObject()
    qgis_canvas = QgsMapCanvas()
    qgis_canvas.setTemporalController(navigation)
    switcher = layers.TemporalBandSwitcher(qgis_canvas, project)
    try:
        assert layers.sync_temporal_controller(qgis_canvas, project)
        assert navigation.navigationMode() == QgsTemporalNavigationObject.Animated
        assert navigation.totalFrameCount() == len(DATES)
        assert navigation.currentFrameNumber() == len(DATES) - 1
        assert result["forecast"].renderer().band() == len(DATES)
        model = QgsLayerTreeModel(project.layerTreeRoot())
        node = project.layerTreeRoot().findLayer(result["forecast"].id())
        for frame in range(len(DATES)):
            navigation.setCurrentFrameNumber(frame)
            assert qgis_canvas.temporalRange().begin().date().toPyDate() == DATES[frame]
            assert result["forecast"].renderer().band() == frame + 1
            assert result["interval90"].renderer().band() == frame + 1
            legend = [n.data(Qt.DisplayRole) for n in model.layerLegendNodes(node)]
            assert legend[0] == f"Date shown: {DATES[frame].isoformat()}"  # not GDAL's "Band 2: ..."
    finally:
        switcher.stop()
        qgis_canvas.deleteLater()


def test_change_is_shown_first_and_says_its_reference(result_dir, qgis_new_project):
    project = QgsProject.instance()
    result = layers.add_result_layers(str(result_dir), None, project, aoi_name="Ustica AOI")
    change = result["change"]
    assert change is not None and change.source().endswith("change.tif")
    assert project.layerTreeRoot().findLayer(change.id()).isVisible()
    assert f"change since {ORIGIN.isoformat()}" in change.name().lower()
    assert f"cumulative since {FIRST.isoformat()}" in result["forecast"].name()
    assert f"since {ORIGIN.isoformat()}" in result["exceedance"].name()
    for key in ("change_q05", "change_q95"):
        assert ORIGIN.isoformat() in result[key].name()
    # the ramp fits the change (a few mm), not the cumulative range (tens of mm)
    renderer = change.renderer()
    assert renderer.classificationMin() == -renderer.classificationMax()
    assert 2 <= renderer.classificationMax() <= 5 < result["forecast"].renderer().classificationMax()
    assert result["change_q95"].renderer().classificationMax() == renderer.classificationMax()
    # the group says the area, the horizon and the run's time
    name = result["group"].name()
    assert name.startswith("GroundCast \u00b7 Ustica AOI \u00b7 to " + DATES[-1].isoformat() + " \u00b7 run ")
    again = layers.add_result_layers(str(result_dir), None, project, aoi_name="Ustica AOI")
    assert again["group"].name() != name


def _render(layers_to_draw, extent, size=(120, 100)):
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize

    settings = QgsMapSettings()
    settings.setLayers(layers_to_draw)
    settings.setDestinationCrs(layers_to_draw[0].crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(*size))
    settings.setBackgroundColor(QColor(0, 0, 0, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    return job.renderedImage()


def test_cells_without_points_stay_transparent(result_dir, qgis_new_project):
    from qgis.core import QgsRectangle

    result = layers.add_result_layers(str(result_dir), "t", QgsProject.instance())
    change = result["change"]
    extent = QgsRectangle(X0, Y0 - 10 * CELL, X0 + 12 * CELL, Y0)
    image = _render([change], extent)
    # the grid is 12 x 10 cells on a 120 x 100 image: 10 pixels per cell
    far = image.pixelColor(105, 50)  # column 10: no point near it
    near = image.pixelColor(15, 50)  # column 1: strong subsidence
    assert far.alpha() == 0, far.name()
    assert near.alpha() == 255 and _reddish(near), near.name()


def test_aoi_is_an_outline_under_the_results(result_dir, qgis_new_project):
    from qgis.core import QgsRectangle

    project = QgsProject.instance()
    aoi = (f"EPSG:3035;POLYGON(({X0 + 50} {Y0 - 950},{X0 + 1150} {Y0 - 950},{X0 + 1150} {Y0 - 50},"
           f"{X0 + 50} {Y0 - 50},{X0 + 50} {Y0 - 950}))")
    result = layers.add_result_layers(str(result_dir), "t", project, aoi_geometry=aoi)
    order = project.layerTreeRoot().layerOrder()
    assert order.index(result["aoi"]) > order.index(result["change"])  # drawn first, under the change
    group_layers = [n.layer() for n in result["group"].findLayers()]
    assert group_layers[-1] is result["aoi"]
    symbol = result["aoi"].renderer().symbol()
    assert symbol.symbolLayer(0).brushStyle() == Qt.NoBrush
    # over a cell: the change's own colour, not tinted by the area's layer
    extent = QgsRectangle(X0, Y0 - 10 * CELL, X0 + 12 * CELL, Y0)
    alone = _render([result["change"]], extent)
    both = _render([result["change"], result["aoi"]], extent)
    assert both.pixelColor(35, 50) == alone.pixelColor(35, 50)
    assert both.pixelColor(105, 50).alpha() == 0  # inside the area, no cell: still transparent
    outline = [x for x in range(110) if both.pixelColor(x, 95) != alone.pixelColor(x, 95)]
    assert len(outline) > 20  # the outline itself is drawn (dashed) along its bottom edge


def test_points_follow_the_timeline(result_dir, qgis_new_project):
    result = layers.add_result_layers(str(result_dir), "t", QgsProject.instance())
    points = result["points"]
    assert "follows the timeline" in points.name() and ORIGIN.isoformat() in points.name()
    assert points.temporalProperties().isActive()
    values = {f["pid"]: f[f"change_{DATES[-1]:%Y_%m_%d}"] for f in points.getFeatures()}
    assert values["p0"] == pytest.approx(-4.0) and values["p3"] == pytest.approx(2.0)
    assert points.source().startswith(str(result_dir / layers.POINTS_CHANGE))
    # without the series the points cannot follow: the name says they are fixed
    (result_dir / "series.npz").unlink()
    (result_dir / layers.POINTS_CHANGE).unlink()
    (result_dir / "groundcast.json").unlink()
    write_manifest(result_dir)
    fixed = layers.add_result_layers(str(result_dir), "t2", QgsProject.instance())["points"]
    assert "(fixed; the change map follows the timeline)" in fixed.name()
    assert DATES[-1].isoformat() in fixed.name()


def test_a_large_result_builds_its_point_timeline_in_the_background(result_dir, qgis_new_project,
                                                                     monkeypatch):
    """Above INLINE_TIMELINE_POINTS the interface thread never builds the per-date layer: the
    points come fixed at the horizon until the task (build_point_timeline) has written it."""
    monkeypatch.setattr(layers, "INLINE_TIMELINE_POINTS", 2)  # the result has 4 points
    fixed = layers.add_result_layers(str(result_dir), "t", QgsProject.instance())["points"]
    assert not (result_dir / layers.POINTS_CHANGE).exists()
    assert "fixed; the change map follows the timeline" in fixed.name()
    assert isinstance(fixed.renderer(), QgsGraduatedSymbolRenderer)
    assert fixed.renderer().classAttribute() == "change_mm"
    assert layers.build_point_timeline(result_dir)  # as the dock's task does, off the interface thread
    follows = layers.add_result_layers(str(result_dir), "t2", QgsProject.instance())["points"]
    assert "follows the timeline" in follows.name() and follows.temporalProperties().isActive()
    monkeypatch.setattr(layers, "POINT_TIMELINE_MAX_POINTS", 3)
    (result_dir / layers.POINTS_CHANGE).unlink()
    assert not layers.build_point_timeline(result_dir)  # too many for a field per date
    assert not (result_dir / layers.POINTS_CHANGE).exists()


def test_style_points_on_a_sample_of_a_large_layer(result_dir, qgis_new_project, monkeypatch):
    from qgis.core import QgsVectorLayer

    monkeypatch.setattr(layers, "STYLE_SAMPLE_POINTS", 2)  # every second point of four
    points = QgsVectorLayer(f"{result_dir / 'points.gpkg'}|layername=points", "p", "ogr")
    renderer = layers.style_points(points, field="change_mm")
    edges = [r.upperValue() for r in renderer.ranges()]
    assert edges == sorted(edges) and len(edges) == 8
    everything = layers.style_points(points, field="change_mm", values=[-4.0, 1.0, 2.0, -1.0])
    assert everything.ranges()[0].lowerValue() <= -4.0
