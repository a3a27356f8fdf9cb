"""Turn an engine output folder into styled QGIS layers on the Temporal Controller.

Public API (used by the dock, the Processing provider, the report and make_project.py):
  add_result_layers(out_dir, group_name=None, project=None, aoi_geometry=None, aoi_name=None) -> dict
  result_group_name(out_dir, aoi_name=None) -> "GroundCast · <AOI> · to <horizon> · run <HH:MM>"
  references(summary) -> (cumulative_since, change_since): the ISO dates the maps are measured from
  style_change(layer, band=1, limit=None), style_forecast(layer, band=1), style_interval(layer, band=1),
  style_exceedance(layer, band=1), style_points(layer, vmax=None, field=...)
  set_temporal(layer, band_dates, project=None), band_dates(layer_or_path) -> list[date]
  TemporalBandSwitcher(canvas, project=None), sync_temporal_controller(canvas, project=None)

What the reader sees first is the change since the forecast origin (change.tif): the
cumulative median barely moves over a few months against years of past motion, so read on its
own ramp it looks like the past. Every layer name says what its values are measured from.
The points follow the timeline the same way as the rasters: one change field per forecast
date (points_change.gpkg, written from series.npz by build_point_timeline in the dock's
background task, or here for a small result), and the switcher points the renderer at the
field of the current frame. Beyond POINT_TIMELINE_MAX_POINTS the points show the change at the
horizon and the change map follows the timeline: adding layers never holds the interface for long.

Temporal scrubbing in QGIS 3.22: raster temporal properties there know only one fixed range
per layer (per-band time arrived in 3.38), and the GDAL provider reports no time of its own.
So each result raster is ONE layer in ModeRedrawLayerOnly (the canvas redraws it whenever the
time changes) carrying its band dates in a custom property; TemporalBandSwitcher listens to
the canvas's temporalRangeChanged and points the renderer at the band of the current frame
before the canvas redraws. The project's time settings span the forecast dates with the band
step (6 days) as frame, so the slider steps band by band. Rejected: one layer per date
(60+ layers per product, all drawn at once whenever the controller is off).
The style's min/max are shared by all bands, so colours stay comparable while scrubbing.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsCoordinateReferenceSystem,
    QgsDateTimeRange,
    QgsFeature,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsGeometry,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsProject,
    QgsRasterLayer,
    QgsRasterLayerTemporalProperties,
    QgsRasterShader,
    QgsRendererRange,
    QgsSingleBandPseudoColorRenderer,
    QgsUnitTypes,
    QgsVectorLayer,
    QgsVectorLayerTemporalProperties,
)
from qgis.PyQt.QtCore import QDateTime, QObject, QTime, Qt
from qgis.PyQt.QtGui import QColor

from ..engine.results import FORECAST, POINTS_CHANGE, SERIES

BAND_DATES_KEY = "groundcast/band_dates"
DEFAULT_BAND_KEY = "groundcast/default_band"
KIND_KEY = "groundcast/kind"
FIELDS_KEY = "groundcast/date_fields"  # a points layer's field per band date

# ColorBrewer RdBu: red = subsidence (negative), blue = uplift (positive), white at 0 mm.
DIVERGING = ["#b2182b", "#ef8a62", "#fddbc7", "#f7f7f7", "#d1e5f0", "#67a9cf", "#2166ac"]
# ColorBrewer Purples: uncertainty must not look like subsidence.
INTERVAL = ["#fcfbfd", "#dadaeb", "#9e9ac8", "#6a51a3", "#3f007d"]
# ColorBrewer YlOrRd: probability of passing the threshold.
EXCEEDANCE = ["#ffffcc", "#fed976", "#fd8d3c", "#e31a1c", "#800026"]

_NUMPY_TYPES = {
    Qgis.Byte: "uint8", Qgis.UInt16: "uint16", Qgis.Int16: "int16", Qgis.UInt32: "uint32",
    Qgis.Int32: "int32", Qgis.Float32: "float32", Qgis.Float64: "float64",
}


# -- helpers -------------------------------------------------------------------------------
def _ramp(colors: list) -> QgsGradientColorRamp:
    qcolors = [QColor(c) for c in colors]
    stops = [QgsGradientStop(i / (len(qcolors) - 1), c) for i, c in enumerate(qcolors[1:-1], start=1)]
    return QgsGradientColorRamp(qcolors[0], qcolors[-1], False, stops)


def _nice_ceiling(value: float) -> float:
    """Round up to 1, 2, 2.5 or 5 times a power of ten, so legend labels read well."""
    import math

    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    text = f"{value:.3g}"
    return "0" if text in ("0", "-0") else text.replace("-", "\u2212")


def raster_values(layer: QgsRasterLayer, bands=None, max_size: int = 400):
    """Finite pixel values of the given bands (all by default), read at most max_size² per band."""
    import numpy as np

    provider = layer.dataProvider()
    width, height = max(layer.width(), 1), max(layer.height(), 1)
    scale = min(1.0, max_size / max(width, height))
    cols, rows = max(1, int(width * scale)), max(1, int(height * scale))
    chunks = []
    for band in bands or range(1, layer.bandCount() + 1):
        block = provider.block(band, provider.extent(), cols, rows)
        dtype = _NUMPY_TYPES.get(block.dataType())
        if dtype is None or block.width() * block.height() == 0:
            continue
        data = np.frombuffer(bytes(block.data()), dtype=dtype, count=block.width() * block.height())
        data = data.astype("float64")
        if provider.sourceHasNoDataValue(band):
            data[data == provider.sourceNoDataValue(band)] = np.nan
        chunks.append(data[np.isfinite(data)])
    return np.concatenate(chunks) if chunks else np.zeros(0)


def _pseudocolor(layer, band, colors, vmin, vmax, labels, n_items, suffix, min_label, max_label):
    # the legend's suffix is appended to the min/max labels too, so units live in the labels
    ramp = _ramp(colors)
    items = []
    for i in range(n_items):
        t = i / (n_items - 1)
        value = vmin + (vmax - vmin) * t
        items.append(QgsColorRampShader.ColorRampItem(value, ramp.color(t), labels(value)))
    shader_fn = QgsColorRampShader(vmin, vmax, ramp, QgsColorRampShader.Interpolated,
                                   QgsColorRampShader.Continuous)
    shader_fn.setColorRampItemList(items)
    shader_fn.setClip(False)  # values past the ends take the end colours instead of vanishing
    legend = shader_fn.legendSettings()
    legend.setUseContinuousLegend(True)
    legend.setSuffix(suffix)
    legend.setMinimumLabel(min_label)
    legend.setMaximumLabel(max_label)
    shader_fn.setLegendSettings(legend)
    shader = QgsRasterShader(vmin, vmax)
    shader.setRasterShaderFunction(shader_fn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(vmin)
    renderer.setClassificationMax(vmax)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return renderer


# -- styles --------------------------------------------------------------------------------
def forecast_limit(layer: QgsRasterLayer) -> float:
    """Symmetric colour limit in mm: the larger robust extreme (2nd/98th percentile) of all bands."""
    import numpy as np

    values = raster_values(layer)
    if values.size == 0:
        return 1.0
    low, high = np.percentile(values, [2, 98])
    return _nice_ceiling(max(abs(low), abs(high)))


def _diverging(layer, band, vmax, kind):
    layer.setCustomProperty(KIND_KEY, kind)
    return _pseudocolor(
        layer, band, DIVERGING, -vmax, vmax, lambda v: f"{_fmt(v)} mm", 9, "",
        f"{_fmt(-vmax)} mm (subsidence)", f"+{_fmt(vmax)} mm (uplift)")


def style_forecast(layer: QgsRasterLayer, band: int = 1) -> QgsSingleBandPseudoColorRenderer:
    """Diverging red–white–blue ramp centred on 0 mm, symmetric (min = −max), labels in mm."""
    return _diverging(layer, band, forecast_limit(layer), "forecast")


def style_change(layer: QgsRasterLayer, band: int = 1, limit: float | None = None,
                 kind: str = "change") -> QgsSingleBandPseudoColorRenderer:
    """The forecast change since the origin on the diverging ramp, scaled to the change itself.

    `limit` (mm) shares one scale between the change and its 5 % / 95 % layers; by default the
    change's own robust extreme, so a few millimetres of change fill the ramp.
    """
    return _diverging(layer, band, limit if limit else forecast_limit(layer), kind)


def style_interval(layer: QgsRasterLayer, band: int = 1) -> QgsSingleBandPseudoColorRenderer:
    """Sequential light-to-dark purple from 0 mm to the 98th percentile of the width."""
    import numpy as np

    values = raster_values(layer)
    vmax = _nice_ceiling(float(np.percentile(values, 98))) if values.size else 1.0
    layer.setCustomProperty(KIND_KEY, "interval90")
    return _pseudocolor(layer, band, INTERVAL, 0.0, vmax, lambda v: f"{_fmt(v)} mm", 5, "",
                        "0 mm", f"{_fmt(vmax)} mm")


def style_exceedance(layer: QgsRasterLayer, band: int = 1) -> QgsSingleBandPseudoColorRenderer:
    """Sequential yellow-to-red probability from 0 to 1."""
    layer.setCustomProperty(KIND_KEY, "exceedance")
    return _pseudocolor(layer, band, EXCEEDANCE, 0.0, 1.0, lambda v: f"{v:.2f}".rstrip("0").rstrip("."),
                        5, "", "0 (unlikely)", "1 (certain)")


STYLE_SAMPLE_POINTS = 100_000  # the colour scale of a large layer comes from this many of its points


def style_points(layer: QgsVectorLayer, vmax: float | None = None, field: str = "forecast_mm", values=None):
    """Graduated points on `field` with the forecast's diverging ramp and symmetric classes.

    `values`: the field's values when the caller has them (numpy). Otherwise, with `vmax` given,
    only the field's extremes are asked of the data source (one SQL query on a GeoPackage);
    without, the values are read without geometry from at most STYLE_SAMPLE_POINTS points, so a
    million points style fast."""
    import numpy as np

    index = layer.fields().indexOf(field)
    if values is None and index >= 0 and vmax is not None:
        values = [layer.minimumValue(index), layer.maximumValue(index)]
    elif values is None and index >= 0:
        request = QgsFeatureRequest().setFlags(QgsFeatureRequest.NoGeometry)
        request.setSubsetOfAttributes([index])
        step = max(1, layer.featureCount() // STYLE_SAMPLE_POINTS)
        if step > 1:  # every step-th feature id: an even sample of the whole layer
            request.setFilterExpression(f"$id % {step} = 0")
        values = [f[index] for f in layer.getFeatures(request)]
    values = np.array([v for v in (values if values is not None else []) if isinstance(v, (int, float))],
                      dtype="float64")
    values = values[np.isfinite(values)]
    if vmax is None:
        vmax = _nice_ceiling(float(np.percentile(np.abs(values), 98))) if values.size else 1.0
    ramp = _ramp(DIVERGING)
    n = 8
    edges = [-vmax + 2 * vmax * i / n for i in range(n + 1)]
    # open-ended outer classes so every point gets a colour
    low = min(edges[0], float(values.min()) if values.size else edges[0]) - 1e-6
    high = max(edges[-1], float(values.max()) if values.size else edges[-1]) + 1e-6
    ranges = []
    for i in range(n):
        lower = low if i == 0 else edges[i]
        upper = high if i == n - 1 else edges[i + 1]
        symbol = QgsMarkerSymbol.createSimple({"name": "circle", "size": "2.2",
                                               "outline_color": "40,40,40,220", "outline_width": "0.2"})
        symbol.setColor(ramp.color((i + 0.5) / n))
        if i == 0:
            label = f"< {_fmt(edges[1])} mm"
        elif i == n - 1:
            label = f"> {_fmt(edges[i])} mm"
        else:
            label = f"{_fmt(edges[i])} to {_fmt(edges[i + 1])} mm"
        ranges.append(QgsRendererRange(lower, upper, symbol, label))
    renderer = QgsGraduatedSymbolRenderer(field, ranges)
    renderer.setSourceColorRamp(ramp)
    layer.setRenderer(renderer)
    layer.setCustomProperty(KIND_KEY, "points")
    layer.triggerRepaint()
    return renderer


def style_aoi(layer: QgsVectorLayer) -> None:
    """An outline only: no fill to tint the results under it or wash out their near-zero colours."""
    symbol = QgsFillSymbol.createSimple({"style": "no", "color": "0,0,0,0", "outline_color": "40,40,40",
                                         "outline_style": "dash", "outline_width": "0.6"})
    layer.renderer().setSymbol(symbol)
    layer.setCustomProperty(KIND_KEY, "aoi")
    layer.triggerRepaint()


# -- time ----------------------------------------------------------------------------------
def _to_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if re.fullmatch(r"D?\d{8}", text):
        text = text.lstrip("D")
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    return dt.date.fromisoformat(text[:10])


def _parse_date(text: str):
    match = re.search(r"(\d{4})-(\d{2})-(\d{2})", text or "")
    if not match:
        return None
    try:
        return dt.date(*map(int, match.groups()))
    except ValueError:
        return None


def band_dates(layer_or_path) -> list:
    """The date of every band, from the GeoTIFF band descriptions (ISO dates)."""
    if isinstance(layer_or_path, QgsRasterLayer):
        stored = layer_or_path.customProperty(BAND_DATES_KEY)
        if stored:
            return [dt.date.fromisoformat(s) for s in str(stored).split(",")]
        path = layer_or_path.source().split("|")[0]
    else:
        path = str(layer_or_path)
    dates = []
    try:
        from osgeo import gdal

        ds = gdal.Open(path)
        if ds is not None:
            dates = [_parse_date(ds.GetRasterBand(i).GetDescription()) for i in range(1, ds.RasterCount + 1)]
            ds = None
    except ImportError:
        pass
    if (not dates or None in dates) and isinstance(layer_or_path, QgsRasterLayer):
        # QGIS shows GDAL band descriptions in band names ("Band 01: 2025-01-03")
        dates = [_parse_date(layer_or_path.bandName(i)) for i in range(1, layer_or_path.bandCount() + 1)]
    return [] if None in dates else dates


def _step_days(dates: list) -> int:
    gaps = sorted((b - a).days for a, b in zip(dates, dates[1:]))
    return max(1, gaps[len(gaps) // 2]) if gaps else 6


def _qdatetime(day: dt.date) -> QDateTime:
    return QDateTime(day, QTime(0, 0), Qt.TimeSpec.UTC)


def set_temporal(layer: QgsRasterLayer, band_dates: list, project: QgsProject | None = None) -> None:
    """Put a multi-band forecast raster on the Temporal Controller (see the module docstring)."""
    dates = [_to_date(d) for d in band_dates]
    if not dates:
        return
    step = _step_days(dates)
    start, end = dates[0], dates[-1] + dt.timedelta(days=step)
    props = layer.temporalProperties()
    props.setMode(QgsRasterLayerTemporalProperties.ModeRedrawLayerOnly)
    props.setFixedTemporalRange(QgsDateTimeRange(_qdatetime(start), _qdatetime(end), True, False))
    props.setIsActive(True)
    layer.setCustomProperty(BAND_DATES_KEY, ",".join(d.isoformat() for d in dates))
    if layer.customProperty(DEFAULT_BAND_KEY) is None:
        layer.setCustomProperty(DEFAULT_BAND_KEY, len(dates))

    project = project or QgsProject.instance()
    settings = project.timeSettings()
    settings.setTemporalRange(QgsDateTimeRange(_qdatetime(start), _qdatetime(end), True, False))
    settings.setTimeStep(step)
    settings.setTimeStepUnit(QgsUnitTypes.TemporalDays)
    settings.setFramesPerSecond(4)
    settings.setIsTemporalRangeCumulative(False)


def band_for_range(dates: list, begin: dt.date | None, end: dt.date | None, default: int) -> int:
    """1-based band of the last date before the frame's end; `default` when time is off."""
    if begin is None and end is None:
        return default
    limit = end if end is not None else begin + dt.timedelta(days=1)
    band = 1
    for i, day in enumerate(dates, start=1):
        if day < limit:
            band = i
    return band


def set_point_timeline(layer: QgsVectorLayer, band_dates: list, fields: list) -> None:
    """Let a points layer follow the Temporal Controller: `fields[i]` holds the value on band_dates[i]."""
    dates = [_to_date(d) for d in band_dates]
    if not dates or len(dates) != len(fields):
        return
    props = layer.temporalProperties()
    props.setMode(QgsVectorLayerTemporalProperties.ModeRedrawLayerOnly)
    props.setIsActive(True)
    layer.setCustomProperty(BAND_DATES_KEY, ",".join(d.isoformat() for d in dates))
    layer.setCustomProperty(FIELDS_KEY, ",".join(fields))
    if layer.customProperty(DEFAULT_BAND_KEY) is None:
        layer.setCustomProperty(DEFAULT_BAND_KEY, len(dates))


def set_field(layer: QgsVectorLayer, field: str) -> bool:
    """Colour the points by `field` (one date's values), keeping the classes."""
    renderer = layer.renderer()
    if not isinstance(renderer, QgsGraduatedSymbolRenderer) or renderer.classAttribute() == field:
        return False
    renderer.setClassAttribute(field)
    layer.triggerRepaint()
    layer.legendChanged.emit()
    return True


def set_band(layer: QgsRasterLayer, band: int, project: QgsProject | None = None) -> bool:
    renderer = layer.renderer()
    if not isinstance(renderer, QgsSingleBandPseudoColorRenderer) or renderer.band() == band:
        return False
    renderer.setBand(band)
    label_shown_date(layer, project)
    layer.triggerRepaint()
    layer.legendChanged.emit()  # the layer panel names the band's date; keep it current
    return True


def label_shown_date(layer: QgsRasterLayer, project: QgsProject | None = None) -> None:
    """The legend's first line says "Date shown: 2025-06-23", not GDAL's "Band 61: 2025-06-23".

    A legend label of the layer's tree node, QGIS's own way to rename a legend entry: the project
    file and the report's legend keep it."""
    from qgis.core import QgsMapLayerLegendUtils

    renderer = layer.renderer()
    node = (project or QgsProject.instance()).layerTreeRoot().findLayer(layer.id())
    dates = band_dates(layer)
    if node is None or not isinstance(renderer, QgsSingleBandPseudoColorRenderer) \
            or not 0 < renderer.band() <= len(dates):
        return
    QgsMapLayerLegendUtils.setLegendNodeUserLabel(node, 0, f"Date shown: {dates[renderer.band() - 1]}")


def _range_dates(rng) -> tuple:
    def conv(qdt):
        return qdt.date().toPyDate() if qdt is not None and qdt.isValid() else None

    return conv(rng.begin()), conv(rng.end())


class TemporalBandSwitcher(QObject):
    """Shows, in every GroundCast raster, the band of the canvas's current time frame."""

    def __init__(self, canvas, project: QgsProject | None = None, parent=None):
        super().__init__(parent)
        self.canvas = canvas
        self.project = project or QgsProject.instance()
        canvas.temporalRangeChanged.connect(self.update_layers)
        self.project.layersAdded.connect(self._on_layers_added)

    def _on_layers_added(self, layers) -> None:
        self.update_layers(layers)

    def update_layers(self, layers=None) -> None:
        if self.canvas.mapSettings().isTemporal():
            begin, end = _range_dates(self.canvas.temporalRange())
        else:
            begin = end = None
        for layer in layers or self.project.mapLayers().values():
            if not layer.customProperty(BAND_DATES_KEY):
                continue
            if isinstance(layer, QgsRasterLayer):
                dates = band_dates(layer)
                default = int(layer.customProperty(DEFAULT_BAND_KEY) or len(dates))
                set_band(layer, band_for_range(dates, begin, end, default), self.project)
            elif isinstance(layer, QgsVectorLayer) and layer.customProperty(FIELDS_KEY):
                fields = str(layer.customProperty(FIELDS_KEY)).split(",")
                stored = str(layer.customProperty(BAND_DATES_KEY))
                dates = [dt.date.fromisoformat(d) for d in stored.split(",")]
                default = int(layer.customProperty(DEFAULT_BAND_KEY) or len(dates))
                set_field(layer, fields[band_for_range(dates, begin, end, default) - 1])

    def stop(self) -> None:
        for signal, slot in ((self.canvas.temporalRangeChanged, self.update_layers),
                             (self.project.layersAdded, self._on_layers_added)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass


def sync_temporal_controller(canvas, project: QgsProject | None = None, frame: int | None = None,
                             dates: list | None = None) -> bool:
    """Point the live Temporal Controller at the forecast dates, one frame per band, animation on.

    `dates` default: the band dates of the newest GroundCast raster in the project. `frame` None
    shows the last frame (the horizon, which the point layer also shows). Returns False where
    the canvas has no navigation controller (headless tests, scripts).
    """
    from qgis.core import QgsInterval, QgsTemporalNavigationObject

    project = project or QgsProject.instance()
    if dates is None:
        tagged = [lyr for lyr in project.mapLayers().values()
                  if isinstance(lyr, QgsRasterLayer) and lyr.customProperty(BAND_DATES_KEY)]
        dates = band_dates(tagged[-1]) if tagged else []
    controller = canvas.temporalController() if canvas is not None else None
    if not dates or not isinstance(controller, QgsTemporalNavigationObject):
        return False
    dates = [_to_date(d) for d in dates]
    step = _step_days(dates)
    end = dates[-1] + dt.timedelta(days=step)
    extent = QgsDateTimeRange(_qdatetime(dates[0]), _qdatetime(end), True, False)
    # QGIS's controller panel writes its own step (1 hour by default) into the project when
    # temporal layers arrive, so the step is set here, after the layers, and not read back.
    settings = project.timeSettings()
    settings.setTemporalRange(extent)
    settings.setTimeStep(step)
    settings.setTimeStepUnit(QgsUnitTypes.TemporalDays)
    controller.setNavigationMode(QgsTemporalNavigationObject.Animated)
    controller.setTemporalExtents(extent)
    controller.setFrameDuration(QgsInterval(step, QgsUnitTypes.TemporalDays))
    last = max(controller.totalFrameCount() - 1, 0)
    controller.setCurrentFrameNumber(last if frame is None else min(frame, last))
    return True


# -- the whole result ----------------------------------------------------------------------
def _aoi_layer(aoi_geometry, crs: QgsCoordinateReferenceSystem, summary: dict, out_dir: Path):
    """The AOI outline layer, or None. Accepts QgsGeometry (results' CRS), WKT text optionally
    prefixed "EPSG:xxxx;" (RunConfig.aoi's form) or a polygon file path; None reads summary.json."""
    if aoi_geometry is None:
        aoi_geometry = (summary.get("inputs") or {}).get("aoi") if isinstance(summary, dict) else None
    if aoi_geometry is None or aoi_geometry == "":
        return None
    geometry, geometry_crs = None, crs
    if isinstance(aoi_geometry, QgsGeometry):
        geometry = QgsGeometry(aoi_geometry)
    else:
        text = str(aoi_geometry).strip()
        match = re.match(r"^(EPSG:\d+)\s*;\s*(.+)$", text, re.S | re.I)
        if match:
            geometry_crs = QgsCoordinateReferenceSystem(match.group(1).upper())
            text = match.group(2)
        if re.match(r"^\s*(MULTI)?POLYGON", text, re.I):
            geometry = QgsGeometry.fromWkt(text)
        elif Path(text).is_file():
            layer = QgsVectorLayer(text, "Area of interest", "ogr")  # the file itself: saved with the project
            if layer.isValid():
                style_aoi(layer)
                return layer
    if geometry is None or geometry.isEmpty():
        return None
    if geometry_crs.isValid() and crs.isValid() and geometry_crs != crs:
        from qgis.core import QgsCoordinateTransform

        geometry.transform(QgsCoordinateTransform(geometry_crs, crs, QgsProject.instance()))
    layer = QgsVectorLayer(f"Polygon?crs={crs.authid() or 'EPSG:3035'}", "Area of interest", "memory")
    feature = QgsFeature()
    feature.setGeometry(geometry)
    layer.dataProvider().addFeatures([feature])
    layer.updateExtents()
    import hashlib

    digest = hashlib.sha1(geometry.asWkt(3).encode()).hexdigest()[:8]  # same AOI, same file: reused
    saved = _save_beside(layer, out_dir / f"aoi_{digest}.gpkg")
    layer = saved or layer
    style_aoi(layer)
    return layer


def _save_beside(layer: QgsVectorLayer, path: Path):
    """A file copy of a memory layer, which a saved project would otherwise lose; None if unwritable."""
    from qgis.core import QgsCoordinateTransformContext, QgsVectorFileWriter

    if path.is_file():
        existing = QgsVectorLayer(f"{path}|layername=aoi", "Area of interest", "ogr")
        if existing.isValid():
            return existing
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "aoi"
    try:
        error = QgsVectorFileWriter.writeAsVectorFormatV3(layer, str(path), QgsCoordinateTransformContext(),
                                                          options)[0]
    except (OSError, RuntimeError):
        return None
    if error != QgsVectorFileWriter.NoError:
        return None
    saved = QgsVectorLayer(f"{path}|layername=aoi", "Area of interest", "ogr")
    return saved if saved.isValid() else None


def open_run(out_dir):
    """The forecast in `out_dir` (engine.results.ForecastRun); InputError, one sentence, otherwise."""
    from ..engine.results import ForecastRun

    return ForecastRun.open(out_dir, kind="forecast")


def references(summary: dict | None) -> tuple:
    """(cumulative_since, change_since) as ISO dates, None where unknown.

    Cumulative maps count from the first EGMS epoch; the change and the exceedance count from
    the forecast origin, the last observation.
    """
    summary = summary or {}
    refs = summary.get("references") if isinstance(summary.get("references"), dict) else {}
    cumulative = refs.get("cumulative_since") or summary.get("observed_from")
    change = refs.get("change_since") or summary.get("forecast_origin") or summary.get("observed_to")
    return (_iso(cumulative), _iso(change))


def _iso(value):
    return str(value)[:10] if value else None


def _since(date) -> str:
    return f" since {date}" if date else ""


def area_name(summary: dict | None, aoi_name: str | None = None) -> str:
    """A short name of the area: the one given, the AOI file's, a drawn area, else the points file's."""
    if aoi_name:
        return str(aoi_name)
    inputs = (summary or {}).get("inputs") or {}
    aoi = inputs.get("aoi")
    if aoi and Path(str(aoi)).is_file():
        return Path(str(aoi)).stem
    if aoi:
        return "drawn area"
    points = inputs.get("points")
    return Path(str(points)).stem if points else "forecast"


def result_group_name(out_dir, aoi_name: str | None = None, project: QgsProject | None = None) -> str:
    """"GroundCast · <area> · to <horizon> · run <HH:MM>" (the run's local time, with its date
    when not today), so a second run never looks like the first; " (2)" where the name is taken."""
    summary = open_run(out_dir).summary or {}
    parts = ["GroundCast", area_name(summary, aoi_name)]
    dates = summary.get("forecast_dates") or []
    if dates:
        parts.append(f"to {_iso(dates[-1])}")
    created = summary.get("created")
    try:
        when = dt.datetime.fromisoformat(str(created)).astimezone()
    except (TypeError, ValueError):
        when = None
    if when is not None:
        parts.append(f"run {when:%H:%M}" if when.date() == dt.date.today() else f"run {when:%Y-%m-%d %H:%M}")
    name = " \u00b7 ".join(parts)
    root = (project or QgsProject.instance()).layerTreeRoot()
    taken, n = name, 1
    while root.findGroup(taken) is not None:
        n += 1
        taken = f"{name} ({n})"
    return taken


def _raster(run, kind: str, name: str):
    path = run.raster(kind)
    if path is None or not path.exists():
        return None
    layer = QgsRasterLayer(str(path), name, "gdal")
    return layer if layer.isValid() else None


def point_changes(run) -> tuple | None:
    """(pid [N], dates [H], change_mm [N, H]) of a ForecastRun's points: median less the origin's level."""
    from ..engine.errors import InputError

    if run.file(SERIES) is None:
        return None
    try:
        q50 = run.series_values("q50_mm")
        try:
            level = run.series_values("level_mm")
        except InputError:  # a series without the level: the engine's own definition of it
            from ..engine.baselines import origin_level

            level = origin_level(run.series_values("obs_mm"), axis=1).astype("float64")
        dates = run.series_dates[1]
    except InputError:
        return None
    if q50.shape != (run.n_points, len(dates)) or level.shape != (run.n_points,):
        return None
    return run.pids, dates, q50 - level[:, None]


POINT_TIMELINE_MAX_POINTS = 250_000  # beyond, a field per date costs minutes and gigabytes: the maps follow
INLINE_TIMELINE_POINTS = 20_000  # built while the interface waits (about 2 s) only up to this many points


def _fresh_point_timeline(run, fields: list):
    """The points_change layer if it is newer than the series and has every date's field, else None."""
    path, series = run.path / POINTS_CHANGE, run.file(SERIES)
    if not path.is_file() or series is None or path.stat().st_mtime < series.stat().st_mtime:
        return None
    layer = QgsVectorLayer(f"{path}|layername=points_change", "points", "ogr")
    if layer.isValid() and all(layer.fields().indexOf(f) >= 0 for f in fields):
        return layer
    return None


def _timeline_fields(dates) -> tuple:
    dates = [dt.date.fromisoformat(str(d)) for d in dates]
    return dates, [f"change_{d:%Y_%m_%d}" for d in dates]


def build_point_timeline(out_dir, progress=None) -> bool:
    """Write points_change.gpkg beside a forecast: the points with one change field per forecast
    date, which the timeline switches between. Safe off the interface thread (no project, no
    canvas): the dock's task runs it after the engine. True when the file is there and current;
    False for a result without points or series, or beyond POINT_TIMELINE_MAX_POINTS."""
    import os

    from qgis.core import QgsCoordinateTransformContext, QgsField, QgsFields, QgsVectorFileWriter
    from qgis.PyQt.QtCore import QVariant

    run = open_run(Path(out_dir))
    points_path = run.points_path
    if points_path is None or not points_path.exists() or run.n_points > POINT_TIMELINE_MAX_POINTS:
        return False
    from ..engine.errors import InputError

    try:  # the dates alone tell whether the file is current: no series is read for that
        dates, fields = _timeline_fields(run.series_dates[1])
    except InputError:
        return False
    if _fresh_point_timeline(run, fields) is not None:
        return True
    changes = point_changes(run)
    if changes is None:
        return False
    pid, _, change = changes
    points = QgsVectorLayer(f"{points_path}|layername=points", "points", "ogr")
    if not points.isValid() or points.fields().indexOf("pid") < 0:
        return False
    index = {p: i for i, p in enumerate(pid)}
    out_fields = QgsFields(points.fields())
    for name in fields:
        out_fields.append(QgsField(name, QVariant.Double))
    memory = QgsVectorLayer(f"Point?crs={points.crs().authid() or 'EPSG:3035'}", "points", "memory")
    memory.dataProvider().addAttributes(out_fields.toList())
    memory.updateFields()
    features = []
    for k, feature in enumerate(points.getFeatures()):
        i = index.get(str(feature["pid"]))
        values = [None] * len(fields) if i is None else [
            float(v) if v == v else None for v in change[i].tolist()]  # NaN -> NULL
        copy = QgsFeature(memory.fields())
        copy.setGeometry(feature.geometry())
        copy.setAttributes(list(feature.attributes()) + values)
        features.append(copy)
        if progress is not None and k % 20_000 == 0:
            progress(0.8 * k / max(run.n_points, 1))  # may raise to cancel
    memory.dataProvider().addFeatures(features)
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = "points_change"
    path = run.path / POINTS_CHANGE
    tmp = run.path / f".{path.stem}.partial.gpkg"
    try:
        error = QgsVectorFileWriter.writeAsVectorFormatV3(memory, str(tmp), QgsCoordinateTransformContext(),
                                                          options)[0]
        if error != QgsVectorFileWriter.NoError:
            return False  # an output folder we cannot write to: the points stay fixed
        os.replace(tmp, path)
    except (OSError, RuntimeError):
        return False
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def _points_timeline(run):
    """(layer, dates, fields) of the points' timeline, or None. Built here only for a small result:
    a larger one is built by the dock's task in the background (build_point_timeline)."""
    from ..engine.errors import InputError

    if run.file(SERIES) is None:
        return None
    try:
        dates, fields = _timeline_fields(run.series_dates[1])
    except InputError:
        return None
    layer = _fresh_point_timeline(run, fields)
    if layer is None and run.n_points <= INLINE_TIMELINE_POINTS and build_point_timeline(run.path):
        layer = _fresh_point_timeline(run, fields)
    return (layer, dates, fields) if layer is not None else None


def add_result_layers(out_dir: str, group_name: str | None = None, project: QgsProject | None = None,
                      aoi_geometry=None, aoi_name: str | None = None) -> dict:
    """Add a forecast folder's outputs as styled layers in a new top group.

    `group_name` None: result_group_name(out_dir, aoi_name). Top to bottom: the points, the
    change since the origin (shown), its 5–95 % band (a subgroup), the exceedance, the
    cumulative median, the interval width (hidden), and the area of interest as an outline
    under them all. Returns {"change", "change_q05", "change_q95", "forecast", "interval90",
    "exceedance", "points", "aoi": layer or None, "group": node}. Raises FileNotFoundError
    when forecast.tif is missing or unreadable, engine.errors.InputError (one sentence) when
    `out_dir` is no forecast folder.
    """
    project = project or QgsProject.instance()
    out = Path(out_dir)
    run = open_run(out)
    summary = run.summary or {}
    cumulative_since, change_since = references(summary)
    forecast_path = run.raster("forecast") or out / FORECAST
    name = f"Forecast median, cumulative{_since(cumulative_since)} (mm)"
    forecast = QgsRasterLayer(str(forecast_path), name, "gdal")
    if not forecast.isValid():
        raise FileNotFoundError(f"{forecast_path} is missing or not a readable raster")
    dates = band_dates(forecast_path)
    horizon = dates[-1].isoformat() if dates else None
    since = _since(change_since)

    result = dict.fromkeys(("change", "change_q05", "change_q95", "forecast", "interval90", "exceedance",
                            "points", "aoi"))
    result["forecast"] = forecast
    style_forecast(forecast, band=forecast.bandCount())

    change = _raster(run, "change", f"Change{since} (mm)")
    limit = None
    if change is not None:
        style_change(change, band=change.bandCount())
        limit = change.renderer().classificationMax()
        result["change"] = change
        for key, pct in (("change_q05", 5), ("change_q95", 95)):
            layer = _raster(run, key, f"Change{since}, {pct} % quantile (mm)")
            if layer is not None:
                style_change(layer, band=layer.bandCount(), limit=limit, kind=key)  # one scale for all three
                result[key] = layer

    interval = _raster(run, "interval90", "90 % interval width (mm)")
    if interval is not None:
        style_interval(interval, band=interval.bandCount())
        result["interval90"] = interval

    threshold = run.threshold_mm
    name = (f"P(passing {_fmt(threshold)} mm{since})" if isinstance(threshold, (int, float))
            else f"Exceedance probability{since}")
    exceedance = _raster(run, "exceedance", name)
    if exceedance is not None:
        style_exceedance(exceedance, band=exceedance.bandCount())
        result["exceedance"] = exceedance

    points_path = run.points_path
    if points_path is not None and points_path.exists():
        points = QgsVectorLayer(f"{points_path}|layername=points", "points", "ogr")
        timeline = _points_timeline(run) if points.isValid() and change is not None else None
        at = f" at {horizon}" if horizon else ""
        if timeline is not None:
            layer, point_dates, fields = timeline
            layer.setName(f"Points: change{since} (follows the timeline)")
            style_points(layer, vmax=limit, field=fields[-1])
            set_point_timeline(layer, point_dates, fields)
            result["points"] = layer
        elif points.isValid() and change is not None and points.fields().indexOf("change_mm") >= 0:
            # too many points for a field per date: the change maps follow the timeline instead
            points.setName(f"Points: change{since}{at} (fixed; the change map follows the timeline)")
            style_points(points, vmax=limit, field="change_mm")
            result["points"] = points
        elif points.isValid():
            points.setName(f"Points: cumulative{_since(cumulative_since)}{at} (fixed)")
            style_points(points, vmax=forecast.renderer().classificationMax())
            result["points"] = points

    result["aoi"] = _aoi_layer(aoi_geometry, forecast.crs(), summary, out)

    for key in ("change", "change_q05", "change_q95", "forecast", "interval90", "exceedance"):
        layer = result[key]
        if layer is not None:
            layer_dates = band_dates(layer.source()) or dates
            if len(layer_dates) == layer.bandCount():
                set_temporal(layer, layer_dates, project)

    root = project.layerTreeRoot()
    group = root.insertGroup(0, group_name or result_group_name(out, aoi_name, project))
    shown = {"points", "change", "aoi"} if change is not None else {"points", "forecast", "aoi"}

    def add(parent, key):
        layer = result[key]
        if layer is None:
            return
        project.addMapLayer(layer, False)
        node = parent.addLayer(layer)
        if isinstance(layer, QgsRasterLayer):
            label_shown_date(layer, project)
        if key not in shown:
            node.setItemVisibilityChecked(False)
            node.setExpanded(False)

    add(group, "points")
    add(group, "change")
    if result["change_q05"] is not None or result["change_q95"] is not None:
        band = group.addGroup(f"5\u201395 % band of the change{since}")
        band.setItemVisibilityChecked(False)
        band.setExpanded(False)
        add(band, "change_q95")
        add(band, "change_q05")
    for key in ("exceedance", "forecast", "interval90", "aoi"):  # the outline under the results
        add(group, key)
    result["group"] = group
    return result
