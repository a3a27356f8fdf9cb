"""Turn an engine output folder into styled QGIS layers on the Temporal Controller.

Public API (used by the dock, the Processing provider, the report and make_project.py):
  add_result_layers(out_dir, group_name, project=None, aoi_geometry=None) -> dict
  style_forecast(layer, band=1), style_interval(layer, band=1), style_exceedance(layer, band=1),
  style_points(layer, vmax=None)
  set_temporal(layer, band_dates, project=None), band_dates(layer_or_path) -> list[date]
  TemporalBandSwitcher(canvas, project=None), sync_temporal_controller(canvas, project=None)

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
import json
import re
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsColorRampShader,
    QgsCoordinateReferenceSystem,
    QgsDateTimeRange,
    QgsFeature,
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
)
from qgis.PyQt.QtCore import QDateTime, QObject, QTime, Qt
from qgis.PyQt.QtGui import QColor

BAND_DATES_KEY = "groundcast/band_dates"
DEFAULT_BAND_KEY = "groundcast/default_band"
KIND_KEY = "groundcast/kind"

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


def style_forecast(layer: QgsRasterLayer, band: int = 1) -> QgsSingleBandPseudoColorRenderer:
    """Diverging red–white–blue ramp centred on 0 mm, symmetric (min = −max), labels in mm."""
    vmax = forecast_limit(layer)
    layer.setCustomProperty(KIND_KEY, "forecast")
    return _pseudocolor(
        layer, band, DIVERGING, -vmax, vmax, lambda v: f"{_fmt(v)} mm", 9, "",
        f"{_fmt(-vmax)} mm (subsidence)", f"+{_fmt(vmax)} mm (uplift)")


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


def style_points(layer: QgsVectorLayer, vmax: float | None = None, field: str = "forecast_mm"):
    """Graduated points on `field` with the forecast's diverging ramp and symmetric classes."""
    import numpy as np

    index = layer.fields().indexOf(field)
    values = np.array([v for v in (f[field] for f in layer.getFeatures()) if isinstance(v, (int, float))],
                      dtype="float64") if index >= 0 else np.zeros(0)
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
    symbol = QgsFillSymbol.createSimple({"style": "no", "outline_color": "255,140,0",
                                         "outline_width": "0.7"})
    layer.renderer().setSymbol(symbol)
    layer.setCustomProperty(KIND_KEY, "aoi")


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


def set_band(layer: QgsRasterLayer, band: int) -> bool:
    renderer = layer.renderer()
    if not isinstance(renderer, QgsSingleBandPseudoColorRenderer) or renderer.band() == band:
        return False
    renderer.setBand(band)
    layer.triggerRepaint()
    layer.legendChanged.emit()  # the layer panel names the band's date; keep it current
    return True


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
            if not isinstance(layer, QgsRasterLayer) or not layer.customProperty(BAND_DATES_KEY):
                continue
            dates = band_dates(layer)
            default = int(layer.customProperty(DEFAULT_BAND_KEY) or len(dates))
            set_band(layer, band_for_range(dates, begin, end, default))

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
def _read_summary(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


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


def add_result_layers(out_dir: str, group_name: str, project: QgsProject | None = None,
                      aoi_geometry=None) -> dict:
    """Add a forecast folder's outputs as styled layers in a new top group `group_name`.

    Returns {"forecast", "interval90", "exceedance", "points", "aoi": layer or None, "group": node}.
    Raises FileNotFoundError when forecast.tif is missing or unreadable.
    """
    project = project or QgsProject.instance()
    out = Path(out_dir)
    summary = _read_summary(out)
    forecast_path = out / "forecast.tif"
    forecast = QgsRasterLayer(str(forecast_path), "Forecast median (mm)", "gdal")
    if not forecast.isValid():
        raise FileNotFoundError(f"{forecast_path} is missing or not a readable raster")
    dates = band_dates(forecast_path)
    last = forecast.bandCount()
    horizon = f" at {dates[-1].isoformat()}" if dates else ""

    result = {"forecast": forecast, "interval90": None, "exceedance": None, "points": None, "aoi": None}
    renderer = style_forecast(forecast, band=last)

    interval_path = out / "interval90.tif"
    if interval_path.exists():
        layer = QgsRasterLayer(str(interval_path), "90% interval width (mm)", "gdal")
        if layer.isValid():
            style_interval(layer, band=layer.bandCount())
            result["interval90"] = layer

    exceed_path = out / "exceedance.tif"
    if exceed_path.exists():
        threshold = summary.get("threshold_mm", (summary.get("inputs") or {}).get("threshold_mm"))
        name = (f"P(passing {threshold:g} mm)" if isinstance(threshold, (int, float))
                else "Exceedance probability")
        layer = QgsRasterLayer(str(exceed_path), name, "gdal")
        if layer.isValid():
            style_exceedance(layer, band=layer.bandCount())
            result["exceedance"] = layer

    points_path = out / "points.gpkg"
    if points_path.exists():
        layer = QgsVectorLayer(f"{points_path}|layername=points", f"Points: forecast{horizon}", "ogr")
        if layer.isValid():
            style_points(layer, vmax=renderer.classificationMax())
            result["points"] = layer

    result["aoi"] = _aoi_layer(aoi_geometry, forecast.crs(), summary, out)

    for key in ("forecast", "interval90", "exceedance"):
        layer = result[key]
        if layer is not None:
            layer_dates = band_dates(layer.source()) or dates
            if len(layer_dates) == layer.bandCount():
                set_temporal(layer, layer_dates, project)

    root = project.layerTreeRoot()
    group = root.insertGroup(0, group_name)
    # top to bottom: outline, points, forecast; the other two rasters start hidden
    for key in ("aoi", "points", "forecast", "interval90", "exceedance"):
        layer = result[key]
        if layer is None:
            continue
        project.addMapLayer(layer, False)
        node = group.addLayer(layer)
        if key in ("interval90", "exceedance"):
            node.setItemVisibilityChecked(False)
            node.setExpanded(False)
    result["group"] = group
    return result
