"""Styling, temporal wiring and grouping of engine outputs (ui/layers.py) in real QGIS."""
from __future__ import annotations

import datetime as dt

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


@pytest.fixture()
def result_dir(tmp_path):
    """A tiny output folder in the documented layout (forecast, interval, exceedance, points)."""
    rng = np.random.default_rng(0)
    h, w = 10, 12
    trend = np.linspace(-30, 12, w)[None, None, :] * np.linspace(0.25, 1, len(DATES))[:, None, None]
    median = trend + rng.normal(0, 0.5, (len(DATES), h, w))
    median[:, 0, 0] = -9999.0  # a nodata cell must not decide the ramp
    _write_stack(tmp_path / "forecast.tif", median)
    _write_stack(tmp_path / "interval90.tif", np.abs(median) * 0.3 + 2)
    _write_stack(tmp_path / "exceedance.tif", np.clip(-median / 30, 0, 1))

    import fiona

    schema = {"geometry": "Point", "properties": {"pid": "str", "forecast_mm": "float"}}
    with fiona.open(tmp_path / "points.gpkg", "w", driver="GPKG", layer="points", crs="EPSG:3035",
                    schema=schema) as dst:
        for i, value in enumerate([-25.0, -3.0, 0.5, 8.0]):
            dst.write({"geometry": {"type": "Point", "coordinates": (4_500_150 + 200 * i, 1_799_500)},
                       "properties": {"pid": f"p{i}", "forecast_mm": value}})
    return tmp_path


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
    assert children == [result[k] for k in ("aoi", "points", "forecast", "interval90", "exceedance")]
    assert group.findLayer(result["forecast"].id()).isVisible()
    assert not group.findLayer(result["interval90"].id()).itemVisibilityChecked()

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

    for key in ("forecast", "interval90", "exceedance"):
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
        qgis_canvas.setTemporalRange(QgsDateTimeRange(_qdt(DATES[0]), _qdt(DATES[1]), True, False))
        assert forecast.renderer().band() == 1
        qgis_canvas.setTemporalRange(QgsDateTimeRange(QDateTime(), QDateTime()))
        assert forecast.renderer().band() == len(DATES)
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
            assert DATES[frame].isoformat() in str(legend[0])  # the panel names the shown date
    finally:
        switcher.stop()
        qgis_canvas.deleteLater()
