"""A one-page print layout of a forecast: map, legend, model and skill tables, a point's chart.

The layout is added to the project's layout manager so users can edit it in the layout
designer; `export_report` writes the PDF/PNG. Numbers come from the engine's summary.json
and metrics.json as they are; nothing is computed here.
"""
from __future__ import annotations

import datetime as dt
import os

import numpy as np
from qgis.core import (
    QgsApplication,
    QgsCoordinateTransform,
    QgsDateTimeRange,
    QgsLayoutExporter,
    QgsLayoutFrame,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutItemPage,
    QgsLayoutItemPicture,
    QgsLayoutItemScaleBar,
    QgsLayoutItemTextTable,
    QgsLayoutMeasurement,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsLayoutTableColumn,
    QgsLegendStyle,
    QgsMapLayer,
    QgsMapLayerLegendUtils,
    QgsPrintLayout,
    QgsRectangle,
    QgsTextFormat,
    QgsUnitTypes,
)
from qgis.PyQt.QtCore import QDate, QDateTime, QRectF, Qt, QTime
from qgis.PyQt.QtGui import QColor, QFont

ATTRIBUTION = "Contains modified Copernicus EGMS data"
NORTH_ARROW = "arrows/NorthArrow_02.svg"
MODEL_LABELS = {"mmstt": "MM-STT", "persistence": "Persistence", "timefn": "Time function"}
MM = QgsUnitTypes.LayoutMillimeters
# A4 landscape, millimetres: map on the left, chart and tables on the right.
PAGE_W, PAGE_H, MARGIN = 297.0, 210.0, 10.0
MAP_RECT = (MARGIN, 27.0, 168.0, 150.0)
RIGHT_X, RIGHT_W = 184.0, PAGE_W - MARGIN - 184.0


def _iso(value) -> str:
    return str(value)[:10]


def _qdatetime(iso: str) -> QDateTime:
    d = dt.date.fromisoformat(_iso(iso))
    return QDateTime(QDate(d.year, d.month, d.day), QTime(0, 0, 0), Qt.UTC)


def _fmt(value, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "–" if not np.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


def _find(mapping, *keys):
    """First present key among `keys`, looking into nested dicts given as 'a.b'."""
    for key in keys:
        node = mapping
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def load_series_example(series_path: str, pid: str | None = None) -> dict | None:
    """One point of series.npz in the form engine.outputs.plot_series draws.

    Without `pid`, the point with the largest forecast subsidence at the horizon: the one a
    reader of the report most likely wants to see.
    """
    if not os.path.isfile(series_path):
        return None
    with np.load(series_path, allow_pickle=False) as npz:
        data = {k: npz[k] for k in npz.files}
    pids = data["pid"].astype(str)
    if len(pids) == 0:
        return None
    if pid is not None and pid in pids:
        i = int(np.flatnonzero(pids == pid)[0])
    else:
        last = np.where(np.isfinite(data["q50_mm"][:, -1]), data["q50_mm"][:, -1], np.inf)
        i = int(np.argmin(last))
    example = {"pid": pids[i], "label": f"Point {pids[i]}",
               "dates_obs": data["dates_obs"].astype("datetime64[D]"),
               "dates_fc": data["dates_fc"].astype("datetime64[D]")}
    for key in ("obs_mm", "q05_mm", "q50_mm", "q95_mm", "timefn_mm", "persistence_mm"):
        if key in data and data[key].ndim == 2:
            example[key] = data[key][i]
    for key in ("x", "y"):
        if key in data:
            example[key] = float(data[key][i])
    return example


def render_series_png(example: dict, path: str, width_mm: float, height_mm: float) -> str:
    """The time-series chart as a PNG sized for its frame, so text keeps its point size on paper."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..engine.outputs import plot_series

    fig = Figure(figsize=(width_mm / 25.4, height_mm / 25.4), dpi=200, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    plot_series(ax, {k: v for k, v in example.items() if k != "label"})  # the layout has the title
    ax.tick_params(labelsize=7)
    ax.yaxis.label.set_size(8)
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=200)
    os.replace(tmp, path)
    return path


def _text_format(size: float, bold: bool = False, color: str = "#202020") -> QgsTextFormat:
    fmt = QgsTextFormat()
    font = QFont("DejaVu Sans")
    font.setBold(bold)
    fmt.setFont(font)
    fmt.setSize(size)
    fmt.setSizeUnit(QgsUnitTypes.RenderPoints)
    fmt.setColor(QColor(color))
    return fmt


def _label(layout, item_id: str, text: str, rect, size: float, bold=False, color="#202020",
           align=Qt.AlignLeft) -> QgsLayoutItemLabel:
    label = QgsLayoutItemLabel(layout)
    label.setId(item_id)
    label.setText(text)
    font = QFont("DejaVu Sans")
    font.setPointSizeF(size)
    font.setBold(bold)
    label.setFont(font)
    label.setFontColor(QColor(color))
    label.setHAlign(align)
    label.setVAlign(Qt.AlignVCenter)
    layout.addLayoutItem(label)
    _place(label, rect)
    return label


def _place(item, rect) -> None:
    x, y, w, h = rect
    item.attemptMove(QgsLayoutPoint(x, y, MM))
    item.attemptResize(QgsLayoutSize(w, h, MM))


def _table(layout, item_id: str, headers, rows, rect) -> QgsLayoutItemTextTable:
    table = QgsLayoutItemTextTable(layout)
    columns = []
    for header in headers:
        column = QgsLayoutTableColumn(header)
        column.setHAlignment(Qt.AlignLeft if not columns else Qt.AlignRight)
        columns.append(column)
    table.setColumns(columns)
    table.setContents([[str(cell) for cell in row] for row in rows])
    table.setHeaderTextFormat(_text_format(7, bold=True))
    table.setContentTextFormat(_text_format(7))
    table.setCellMargin(0.8)
    table.setGridStrokeWidth(0.15)
    table.setGridColor(QColor("#9a9a9a"))
    table.setHeaderHAlignment(QgsLayoutItemTextTable.FollowColumn)
    layout.addMultiFrame(table)
    frame = QgsLayoutFrame(layout, table)
    frame.setId(item_id)
    frame.attemptSetSceneRect(QRectF(*rect))
    table.addFrame(frame)
    table.recalculateFrameSizes()
    return table


def model_rows(summary: dict | None) -> list:
    """(quantity, value) rows describing the trained model, from summary.json."""
    summary = summary or {}
    grid = summary.get("grid") or {}
    return [
        ("EGMS points used", _fmt(summary.get("n_points"))),
        ("Cell size (m)", _fmt(grid.get("cell_size_m"), 0)),
        ("Grid (columns x rows)", f"{_fmt(grid.get('width'))} x {_fmt(grid.get('height'))}"),
        ("Training epochs", _fmt(_find(summary, "training.epochs_run", "inputs.epochs"))),
        ("Learned variogram range (m)", _fmt(summary.get("variogram_range_m"), 0)),
        ("Device", _fmt(summary.get("device"))),
        ("Training time (s)", _fmt(_find(summary, "training.seconds", "timings_s.train_and_forecast_s"), 1)),
    ]


def skill_table(metrics: dict | None) -> tuple:
    """Headers and rows of backtest skill (metrics.json): RMSE per horizon for each model at the
    held-out points, then MM-STT's 90% interval coverage and CRPS."""
    if not metrics or not isinstance(metrics.get("models"), dict):
        return ["Backtest"], [["no backtest run (metrics.json missing)"]]
    models = metrics["models"]
    names = [n for n in MODEL_LABELS if n in models] + [n for n in models if n not in MODEL_LABELS]
    headers = ["Score"] + [MODEL_LABELS.get(n, n) for n in names]
    shared = metrics.get("horizons_days", metrics.get("horizon_days")) or []
    rows = []
    for k, h in enumerate(shared):
        row = [f"RMSE at {int(h)} days (mm)"]
        for n in names:
            rmse = models[n].get("rmse_mm") or []
            row.append(_fmt(rmse[k]) if k < len(rmse) else "–")
        rows.append(row)
    blank = ["–"] * (len(names) - 1)
    if "mmstt" in names:
        first = ["mmstt"] + [n for n in names if n != "mmstt"]
        if first == names:
            if metrics.get("mmstt_coverage90") is not None:
                rows.append(["90% interval coverage"] + [_fmt(metrics["mmstt_coverage90"])] + blank)
            if metrics.get("mmstt_crps_mm") is not None:
                rows.append(["CRPS (mm)"] + [_fmt(metrics["mmstt_crps_mm"])] + blank)
    return headers, rows


def _band_dates(layer) -> list:
    from .layers import band_dates

    return [_iso(d) for d in band_dates(layer)]


def report_layer(project, result_layers: dict, band: int, when: str):
    """The forecast drawn at one date, for the report map.

    In QGIS 3.22 the canvas switches the forecast's band on time changes (ui.layers), which a
    layout map never triggers; so the map shows a copy fixed on the chosen band. It sits
    unchecked in the result group, so it is saved with the project and can be restyled.
    """
    from . import layers

    source = result_layers["forecast"]
    name = f"Forecast on {when} (report map)"
    for existing in project.mapLayersByName(name):
        project.removeMapLayer(existing.id())
    copy = source.clone()
    copy.setName(name)
    for key in (layers.BAND_DATES_KEY, layers.DEFAULT_BAND_KEY):
        copy.removeCustomProperty(key)  # keeps the canvas band switcher off this copy
    copy.temporalProperties().setIsActive(False)
    copy.renderer().setBand(band)
    project.addMapLayer(copy, False)
    group = result_layers.get("group")
    node = (group if group is not None else project.layerTreeRoot()).addLayer(copy)
    node.setItemVisibilityChecked(False)
    node.setExpanded(False)
    return copy


def _remove_existing(project, name: str) -> None:
    manager = project.layoutManager()
    old = manager.layoutByName(name)
    if old is not None:
        manager.removeLayout(old)


def build_report(project, result_layers: dict, out_dir: str, title: str | None = None,
                 series_example: dict | None = None, metrics: dict | None = None,
                 summary: dict | None = None, when: str | None = None) -> QgsPrintLayout:
    """Build the report layout and add it to `project`'s layout manager (replacing one of the same name).

    result_layers: as returned by ui.layers.add_result_layers (forecast, aoi, ...); any other map
    layer in it (e.g. a 'hillshade') is drawn under the forecast as background. `when`: the forecast date to
    map (ISO); default the horizon, the last band.
    """
    aoi = result_layers.get("aoi")
    dates = _band_dates(result_layers["forecast"])
    when = _iso(when) if when else dates[-1]
    forecast = report_layer(project, result_layers, dates.index(when) + 1 if when in dates else len(dates),
                            when)
    aoi_name = _source_name(summary)
    obs, obs_end = _find(summary or {}, "observed_from"), _find(summary or {}, "observed_to")
    name = title or f"GroundCast report – {aoi_name} {when}"

    _remove_existing(project, name)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(name)
    layout.pageCollection().page(0).setPageSize("A4", QgsLayoutItemPage.Landscape)

    _label(layout, "title", name, (MARGIN, 7.0, PAGE_W - 2 * MARGIN, 10.0), 17, bold=True)
    threshold = _find(summary or {}, "inputs.threshold_mm")
    parts = []
    if obs and obs_end:
        parts.append(f"EGMS observations {_iso(obs)} – {_iso(obs_end)}")
    parts.append(f"forecast dates {dates[0]} – {dates[-1]}")
    if threshold is not None:
        parts.append(f"exceedance threshold {_fmt(threshold, 0)} mm")
    subtitle = (f"Map: median forecast of cumulative displacement on {when} "
                "(mm, relative to the first EGMS epoch; red = subsidence, blue = uplift)\n"
                + "  ·  ".join(parts))
    _label(layout, "subtitle", subtitle, (MARGIN, 16.5, PAGE_W - 2 * MARGIN, 9.0), 8.5, color="#404040")

    # --- map --------------------------------------------------------------------------
    extra = [lyr for key, lyr in result_layers.items()
             if key not in ("forecast", "aoi", "points", "interval90", "exceedance", "group")
             and isinstance(lyr, QgsMapLayer)]
    map_item = QgsLayoutItemMap(layout)
    map_item.setId("map")
    layout.addLayoutItem(map_item)
    _place(map_item, MAP_RECT)
    map_item.setCrs(forecast.crs())
    # top of the list is drawn on top; extras (e.g. a hillshade) are backgrounds
    map_item.setLayers(([aoi] if aoi is not None else []) + [forecast] + extra)
    map_item.setKeepLayerSet(True)
    map_item.setFrameEnabled(True)
    map_item.setFrameStrokeWidth(QgsLayoutMeasurement(0.3, MM))
    map_item.setBackgroundColor(QColor("white"))
    extent = QgsRectangle(forecast.extent())
    if aoi is not None and aoi.crs() != forecast.crs():
        extent = QgsCoordinateTransform(aoi.crs(), forecast.crs(), project).transformBoundingBox(aoi.extent())
    elif aoi is not None:
        extent = QgsRectangle(aoi.extent())
    map_item.setExtent(_fit_ratio(extent, MAP_RECT[2] / MAP_RECT[3], 1.06))
    # the temporally-wired forecast layer draws the band of this date
    start = _qdatetime(when)
    map_item.setIsTemporal(True)
    map_item.setTemporalRange(QgsDateTimeRange(start, start.addDays(1), True, False))

    arrow = QgsLayoutItemPicture(layout)
    arrow.setId("north_arrow")
    arrow.setPicturePath(_svg_path(NORTH_ARROW))
    arrow.setLinkedMap(map_item)
    arrow.setNorthMode(QgsLayoutItemPicture.GridNorth)
    arrow.setSvgFillColor(QColor("#303030"))
    arrow.setSvgStrokeColor(QColor("#000000"))
    arrow.setBackgroundEnabled(False)
    layout.addLayoutItem(arrow)
    x, y, w, _ = MAP_RECT
    _place(arrow, (x + w - 14.0, y + 3.0, 11.0, 15.0))

    legend = QgsLayoutItemLegend(layout)
    legend.setId("legend")
    legend.setTitle("Legend")
    legend.setLinkedMap(map_item)
    legend.setAutoUpdateModel(False)
    root = legend.model().rootGroup()
    root.clear()
    # legend labels via the node's property: setName() would rename the layer itself
    node = root.addLayer(forecast)
    node.setCustomProperty("legend/title-label", f"Median forecast {when}")
    # keep the colour ramp only; the band name repeats the title
    QgsMapLayerLegendUtils.setLegendNodeOrder(node, [len(legend.model().layerLegendNodes(node)) - 1])
    legend.model().refreshLayerLegend(node)
    if aoi is not None:
        root.addLayer(aoi).setCustomProperty("legend/title-label", "Area of interest")
    legend.setBackgroundEnabled(True)
    legend.setBackgroundColor(QColor(255, 255, 255, 225))
    legend.setFrameEnabled(True)
    legend.setFrameStrokeWidth(QgsLayoutMeasurement(0.2, MM))
    for style, size, bold in ((QgsLegendStyle.Title, 9, True), (QgsLegendStyle.Group, 8, True),
                              (QgsLegendStyle.Subgroup, 8, False), (QgsLegendStyle.SymbolLabel, 7.5, False)):
        font = QFont("DejaVu Sans")
        font.setPointSizeF(size)
        font.setBold(bold)
        legend.setStyleFont(style, font)
    legend.setSymbolHeight(3.5)
    layout.addLayoutItem(legend)
    legend.setResizeToContents(True)
    legend.attemptMove(QgsLayoutPoint(x + 2.0, y + 2.0, MM))
    legend.adjustBoxSize()

    scalebar = QgsLayoutItemScaleBar(layout)
    scalebar.setId("scalebar")
    scalebar.setStyle("Single Box")
    scalebar.setLinkedMap(map_item)
    scalebar.setTextFormat(_text_format(7))
    layout.addLayoutItem(scalebar)
    scalebar.applyDefaultSize(QgsUnitTypes.DistanceKilometers)  # a round segment length for this map
    scalebar.setUnitLabel("km")
    scalebar.setNumberOfSegmentsLeft(0)
    scalebar.attemptMove(QgsLayoutPoint(x, y + MAP_RECT[3] + 2.0, MM))
    scalebar.update()


    # --- right column: chart, skill, model ---------------------------------------------
    top = MAP_RECT[1]
    if series_example is not None:
        chart_h = 64.0
        _label(layout, "chart_title", _chart_title(series_example), (RIGHT_X, top - 1.0, RIGHT_W, 5.0), 8.5,
               bold=True)
        png = render_series_png(series_example, os.path.join(out_dir, "report_series.png"), RIGHT_W, chart_h)
        chart = QgsLayoutItemPicture(layout)
        chart.setId("series_chart")
        chart.setPicturePath(png)
        chart.setResizeMode(QgsLayoutItemPicture.Zoom)
        layout.addLayoutItem(chart)
        _place(chart, (RIGHT_X, top + 4.0, RIGHT_W, chart_h))
        top += chart_h + 7.0

    headers, rows = skill_table(metrics)
    held = (metrics or {}).get("epochs_held_out") or []
    skill_title = "Backtest at held-out EGMS epochs"
    if held:
        skill_title += f" ({_iso(held[0])} – {_iso(held[-1])})"
    _label(layout, "skill_title", skill_title, (RIGHT_X, top, RIGHT_W, 5.0), 8.5, bold=True)
    _table(layout, "skill_table", headers, rows, (RIGHT_X, top + 5.5, RIGHT_W, 5.0 * (len(rows) + 1)))
    top += 5.5 + 4.6 * (len(rows) + 1) + 4.0

    _label(layout, "model_title", "Model", (RIGHT_X, top, RIGHT_W, 5.0), 8.5, bold=True)
    rows = model_rows(summary)
    _table(layout, "model_table", ["Quantity", "Value"], rows,
           (RIGHT_X, top + 5.5, RIGHT_W, 5.0 * (len(rows) + 1)))

    # --- footer -------------------------------------------------------------------------
    _label(layout, "attribution", ATTRIBUTION, (MARGIN, PAGE_H - 10.0, 120.0, 5.0), 7.5, color="#404040")
    made = f"GroundCast · {dt.date.today().isoformat()}"
    _label(layout, "made_by", made, (PAGE_W - MARGIN - 80.0, PAGE_H - 10.0, 80.0, 5.0), 7.5,
           color="#404040", align=Qt.AlignRight)

    project.layoutManager().addLayout(layout)
    return layout


def _source_name(summary: dict | None) -> str:
    """A short name of the area for the title: the AOI file's, else the points file's."""
    inputs = (summary or {}).get("inputs") or {}
    for key in ("aoi", "points"):
        value = inputs.get(key)
        if value and os.path.isfile(str(value)):
            return os.path.splitext(os.path.basename(str(value)))[0]
    return "forecast"


def _fit_ratio(extent: QgsRectangle, ratio: float, margin: float) -> QgsRectangle:
    """`extent` grown by `margin` and widened or heightened to width/height = ratio, same centre.

    setExtent would otherwise resize the map item to the extent's shape.
    """
    w, h = extent.width() * margin, extent.height() * margin
    if w / max(h, 1e-9) < ratio:
        w = h * ratio
    else:
        h = w / ratio
    c = extent.center()
    return QgsRectangle(c.x() - w / 2, c.y() - h / 2, c.x() + w / 2, c.y() + h / 2)


def _chart_title(example: dict) -> str:
    text = str(example.get("label") or f"Point {example.get('pid', '')}")
    return f"Time series: {text}"


def _svg_path(relative: str) -> str:
    for folder in QgsApplication.svgPaths():
        path = os.path.join(folder, relative)
        if os.path.isfile(path):
            return path
    return relative  # QGIS resolves names relative to its SVG folders too


def _export_to_temp(final_path: str, export) -> None:
    """Run export(tmp_path) to a sibling temp file with the same suffix, then rename."""
    folder = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(folder, exist_ok=True)
    stem, suffix = os.path.splitext(os.path.basename(final_path))
    tmp = os.path.join(folder, f".{stem}.partial{suffix}")
    try:
        result = export(tmp)
        if result != QgsLayoutExporter.Success:
            raise RuntimeError(f"exporting {final_path} failed (QgsLayoutExporter result {int(result)})")
        os.replace(tmp, final_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export_report(layout: QgsPrintLayout, pdf_path: str | None = None, png_path: str | None = None,
                  dpi: float = 150.0) -> None:
    """Write the layout as PDF and/or PNG; each file appears only once complete."""
    exporter = QgsLayoutExporter(layout)
    if pdf_path:
        settings = QgsLayoutExporter.PdfExportSettings()
        settings.dpi = 300
        settings.rasterizeWholeImage = False
        _export_to_temp(pdf_path, lambda tmp: exporter.exportToPdf(tmp, settings))
    if png_path:
        settings = QgsLayoutExporter.ImageExportSettings()
        settings.dpi = dpi
        _export_to_temp(png_path, lambda tmp: exporter.exportToImage(tmp, settings))
