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

from ..engine.definitions import ATTRIBUTION, MODEL_LABELS
from ..engine.errors import InputError
from ..engine.results import SERIES

NORTH_ARROW = "arrows/NorthArrow_02.svg"
MM = QgsUnitTypes.LayoutMillimeters
# A4 landscape, millimetres: map on the left, chart and tables on the right.
PAGE_W, PAGE_H, MARGIN = 297.0, 210.0, 10.0


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


def fastest_moving_pid(run) -> str | None:
    """The point with the largest forecast change (either way) at the horizon, of a ForecastRun."""
    from .layers import point_changes

    changes = point_changes(run)
    if changes is None or len(changes[0]) == 0:
        return None
    pid, _, change = changes
    size = np.where(np.isfinite(change[:, -1]), np.abs(change[:, -1]), -np.inf)
    return str(pid[int(np.argmax(size))])


def load_series_example(series_path: str, pid: str | None = None) -> dict | None:
    """One point of a forecast folder's series, in the form engine.outputs.plot_series draws.

    `series_path`: series.npz or its folder. Without `pid` (or with one the folder lacks), the
    fastest-moving point: the one a reader of the report most likely wants to see.
    """
    from .layers import open_run

    folder = series_path if os.path.isdir(series_path) else os.path.dirname(series_path)
    run = open_run(folder)
    if run.file(SERIES) is None or run.n_points == 0:
        return None
    if pid is None or run.index_of(pid) is None:
        pid = fastest_moving_pid(run) or run.pids[0]
    example = run.series(pid=pid)
    try:
        example["level_mm"] = float(run.series_values("level_mm", run.index_of(pid)))
    except InputError:
        pass
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
    dates_obs = example.get("dates_obs")
    if dates_obs is not None and len(dates_obs):
        ax.axvline(dates_obs[-1], color="0.35", linewidth=0.8, linestyle=":")  # the forecast origin
    fig.supxlabel(ATTRIBUTION, x=0.995, ha="right", fontsize=5.5, color="0.35")  # the layout makes room
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=200, metadata={"Copyright": ATTRIBUTION, "Software": "GroundCast"})
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


def _table(layout, item_id: str, headers, rows, rect, size: float = 7) -> QgsLayoutItemTextTable:
    table = QgsLayoutItemTextTable(layout)
    columns = []
    for header in headers:
        column = QgsLayoutTableColumn(header)
        column.setHAlignment(Qt.AlignLeft if not columns else Qt.AlignRight)
        columns.append(column)
    table.setColumns(columns)
    table.setContents([[str(cell) for cell in row] for row in rows])
    table.setHeaderTextFormat(_text_format(size, bold=True))
    table.setContentTextFormat(_text_format(size))
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
        ("Training passes", _fmt(_find(summary, "training.epochs_run", "inputs.epochs"))),
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
    shared = metrics.get("horizons_days") or []
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


def report_layer(project, result_layers: dict, band: int, when: str, key: str = "forecast"):
    """Result layer `key` drawn at one date, for a report map.

    In QGIS 3.22 the canvas switches a raster's band on time changes (ui.layers), which a
    layout map never triggers; so the map shows a copy fixed on the chosen band. It sits
    unchecked in the result group, so it is saved with the project and can be restyled.
    """
    from . import layers

    source = result_layers[key]
    name = f"{source.name().replace(' (mm)', '')} on {when} (report map)"
    for existing in project.mapLayersByName(name):
        project.removeMapLayer(existing.id())
    copy = source.clone()
    copy.setName(name)
    for prop in (layers.BAND_DATES_KEY, layers.DEFAULT_BAND_KEY):
        copy.removeCustomProperty(prop)  # keeps the canvas band switcher off this copy
    copy.setCustomProperty(layers.KIND_KEY, "report_map")
    copy.temporalProperties().setIsActive(False)
    copy.renderer().setBand(band)
    project.addMapLayer(copy, False)
    group = result_layers.get("group")
    node = (group if group is not None else project.layerTreeRoot()).addLayer(copy)
    layers.label_shown_date(copy, project)
    node.setItemVisibilityChecked(False)
    node.setExpanded(False)
    return copy


def _remove_existing(project, name: str) -> None:
    manager = project.layoutManager()
    old = manager.layoutByName(name)
    if old is not None:
        manager.removeLayout(old)


# A4 landscape, millimetres. Upper two thirds: the change map, the legend column, the
# exceedance map and the model; lower third: the chart, the skill table and how to read it.
TOP = 27.0
CHANGE_RECT = (MARGIN, TOP, 140.0, 101.0)
LEGEND_X, LEGEND_W = 153.0, 37.0
EXCEED_RECT = (192.0, TOP, PAGE_W - MARGIN - 192.0, 62.0)
LOWER_Y = 140.0
CHART_RECT = (MARGIN, LOWER_Y + 5.0, 124.0, PAGE_H - 14.0 - LOWER_Y - 5.0)
SKILL_X, SKILL_W = 139.0, 89.0
TEXT_X = 233.0
TEXT_W = PAGE_W - MARGIN - TEXT_X


def report_title(area: str, when: str, has_change: bool = True) -> str:
    what = "change to" if has_change else "cumulative displacement on"
    return f"Ground-motion forecast \u2014 {area} \u2014 {what} {when}"


def _map(layout, item_id, rect, draw, extent, crs):
    item = QgsLayoutItemMap(layout)
    item.setId(item_id)
    layout.addLayoutItem(item)
    _place(item, rect)
    item.setCrs(crs)
    item.setLayers(draw)  # top of the list is drawn on top
    item.setKeepLayerSet(True)
    item.setFrameEnabled(True)
    item.setFrameStrokeWidth(QgsLayoutMeasurement(0.3, MM))
    item.setBackgroundColor(QColor("white"))
    item.setExtent(_fit_ratio(extent, rect[2] / rect[3], 1.06))
    return item


def _legend(layout, item_id, map_item, entries, x, y, width):
    """A legend beside the maps (never on them): [(layer, title, ramp only?)]."""
    legend = QgsLayoutItemLegend(layout)
    legend.setId(item_id)
    legend.setTitle("")
    legend.setLinkedMap(map_item)
    legend.setAutoUpdateModel(False)
    legend.setWrapString("~")
    root = legend.model().rootGroup()
    root.clear()
    for layer, title, ramp_only in entries:
        node = root.addLayer(layer)
        # legend labels via the node's property: setName() would rename the layer itself
        node.setCustomProperty("legend/title-label", title)
        if ramp_only:  # the band name repeats the title
            QgsMapLayerLegendUtils.setLegendNodeOrder(node, [len(legend.model().layerLegendNodes(node)) - 1])
            legend.model().refreshLayerLegend(node)
    legend.setBackgroundEnabled(False)
    legend.setFrameEnabled(False)
    for style, size, bold in ((QgsLegendStyle.Title, 8.5, True), (QgsLegendStyle.Group, 7.5, True),
                              (QgsLegendStyle.Subgroup, 7.5, True), (QgsLegendStyle.SymbolLabel, 7, False)):
        font = QFont("DejaVu Sans")
        font.setPointSizeF(size)
        font.setBold(bold)
        legend.setStyleFont(style, font)
    legend.setSymbolHeight(4.0)
    legend.setSymbolWidth(5.0)
    layout.addLayoutItem(legend)
    legend.setResizeToContents(True)
    legend.attemptMove(QgsLayoutPoint(x, y, MM))
    legend.adjustBoxSize()
    del width  # the legend sizes itself; titles wrap at "~"
    return legend


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "~".join(textwrap.wrap(text, width))


def _extent(project, layer, aoi):
    extent = QgsRectangle(layer.extent())
    if aoi is not None and aoi.crs() != layer.crs():
        extent = QgsCoordinateTransform(aoi.crs(), layer.crs(), project).transformBoundingBox(aoi.extent())
    elif aoi is not None:
        extent = QgsRectangle(aoi.extent())
    return extent


def reading_notes(when: str, change_since, cumulative_since, threshold, example: dict | None) -> str:
    """The page in words: what each map and the chart measure, from which date."""
    since = f" since {change_since}" if change_since else ""
    notes = [f"Left map: the forecast median change of the ground{since} (the level of the last "
             f"observations) to {when}, in mm. Red is subsidence, blue uplift; blank cells have no "
             "EGMS point near them."]
    if threshold is not None:
        notes.append(f"Right map: the probability that the change{since} passes {_fmt(threshold, 0)} mm "
                     f"by {when}.")
    if example is not None:
        text = (f"Chart: point {example.get('pid')}, cumulative displacement"
                + (f" since {cumulative_since}" if cumulative_since else "")
                + "; the dotted line marks the forecast origin.")
        level = example.get("level_mm")
        dates = [str(d)[:10] for d in example.get("dates_fc", [])]
        if level is not None and when in dates:
            k = dates.index(when)
            mid, lo, hi = (float(example[key][k]) - level for key in ("q50_mm", "q05_mm", "q95_mm"))
            text += f" Its change to {when}: {mid:+.1f} mm (90 % interval {lo:+.1f} to {hi:+.1f} mm)."
        notes.append(text)
    notes.append("Skill: errors of the same forecaster on held-out past epochs (backtest).")
    return "\n\n".join(notes)


def build_report(project, result_layers: dict, out_dir: str, title: str | None = None,
                 series_example: dict | None = None, metrics: dict | None = None,
                 summary: dict | None = None, when: str | None = None,
                 area: str | None = None) -> QgsPrintLayout:
    """Build the report layout and add it to `project`'s layout manager (replacing one of the same name).

    result_layers: as returned by ui.layers.add_result_layers (change, exceedance, aoi, ...); any
    other map layer in it (e.g. a 'hillshade') is drawn under the change as background. `when`:
    the forecast date to map (ISO); default the horizon, the last band. `title`: the layout's
    name and the page's title; default "Ground-motion forecast — <area> — change to <when>".
    """
    from .layers import area_name, references

    aoi = result_layers.get("aoi")
    has_change = result_layers.get("change") is not None
    main_key = "change" if has_change else "forecast"
    dates = _band_dates(result_layers[main_key])
    when = _iso(when) if when else dates[-1]
    band = dates.index(when) + 1 if when in dates else len(dates)
    main = report_layer(project, result_layers, band, when, main_key)
    exceedance = (report_layer(project, result_layers, band, when, "exceedance")
                  if result_layers.get("exceedance") is not None else None)
    cumulative_since, change_since = references(summary)
    area = area_name(summary, area)
    heading = title or report_title(area, when, has_change)
    name = title or f"GroundCast report \u2013 {area} \u2013 {when}"

    _remove_existing(project, name)
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName(name)
    layout.pageCollection().page(0).setPageSize("A4", QgsLayoutItemPage.Landscape)

    _label(layout, "title", heading, (MARGIN, 7.0, PAGE_W - 2 * MARGIN, 10.0), 16, bold=True)
    threshold = _find(summary or {}, "inputs.threshold_mm")
    obs, obs_end = _find(summary or {}, "observed_from"), _find(summary or {}, "observed_to")
    parts = []
    if obs and obs_end:
        parts.append(f"EGMS observations {_iso(obs)} \u2013 {_iso(obs_end)}")
    parts.append(f"forecast dates {dates[0]} \u2013 {dates[-1]}")
    if threshold is not None:
        parts.append(f"exceedance threshold {_fmt(threshold, 0)} mm")
    what = (f"Forecast change since {change_since} to {when} (mm)" if has_change
            else f"Forecast cumulative displacement since {cumulative_since} on {when} (mm)")
    _label(layout, "subtitle", what + "  \u00b7  " + "  \u00b7  ".join(parts),
           (MARGIN, 17.0, PAGE_W - 2 * MARGIN, 7.0), 8.5, color="#404040")

    # --- maps and their legends, side by side -----------------------------------------
    extra = [lyr for key, lyr in result_layers.items()
             if key not in ("change", "change_q05", "change_q95", "forecast", "aoi", "points", "interval90",
                            "exceedance", "group")
             and isinstance(lyr, QgsMapLayer)]
    outline = [aoi] if aoi is not None else []
    extent = _extent(project, main, aoi)
    map_item = _map(layout, "map", CHANGE_RECT, outline + [main] + extra, extent, main.crs())
    map_item.setIsTemporal(True)
    start = _qdatetime(when)
    map_item.setTemporalRange(QgsDateTimeRange(start, start.addDays(1), True, False))
    main_title = _wrap(f"Change since {change_since} to {when} (mm)" if has_change
                       else f"Cumulative since {cumulative_since} on {when} (mm)", 22)
    entries = [(main, main_title, True)]
    if aoi is not None:
        entries.append((aoi, "Area of interest", False))
    legend = _legend(layout, "legend", map_item, entries, LEGEND_X, TOP, LEGEND_W)

    exceed_item = exceed_legend = None
    if exceedance is not None:
        exceed_item = _map(layout, "exceedance_map", EXCEED_RECT, outline + [exceedance] + extra, extent,
                           main.crs())
        since = f" since {change_since}" if change_since else ""
        limit = f"{_fmt(threshold, 0)} mm" if threshold is not None else "the threshold"
        exceed_legend = _legend(layout, "exceedance_legend", exceed_item,
                                [(exceedance, _wrap(f"P(change{since} passes {limit}) by {when}", 22), True)],
                                LEGEND_X, TOP + 62.0, LEGEND_W)
        _label(layout, "exceedance_title", "Probability of passing the threshold",
               (EXCEED_RECT[0], TOP - 4.5, EXCEED_RECT[2], 4.5), 7.5, bold=True)

    x, y, w, h = CHANGE_RECT
    arrow = QgsLayoutItemPicture(layout)
    arrow.setId("north_arrow")
    arrow.setPicturePath(_svg_path(NORTH_ARROW))
    arrow.setLinkedMap(map_item)
    arrow.setNorthMode(QgsLayoutItemPicture.GridNorth)
    arrow.setSvgFillColor(QColor("#303030"))
    arrow.setSvgStrokeColor(QColor("#000000"))
    arrow.setBackgroundEnabled(False)
    layout.addLayoutItem(arrow)
    _place(arrow, (LEGEND_X + 2.0, y + h - 14.0, 9.0, 13.0))  # beside the map, over no cell

    scalebar = QgsLayoutItemScaleBar(layout)
    scalebar.setId("scalebar")
    scalebar.setStyle("Single Box")
    scalebar.setLinkedMap(map_item)
    scalebar.setTextFormat(_text_format(6.5))
    scalebar.setHeight(1.5)
    layout.addLayoutItem(scalebar)
    scalebar.applyDefaultSize(QgsUnitTypes.DistanceKilometers)  # a round segment length for this map
    scalebar.setUnitLabel("km")
    scalebar.setNumberOfSegmentsLeft(0)
    scalebar.attemptMove(QgsLayoutPoint(x, y + h + 1.5, MM))
    scalebar.update()

    # model, under the exceedance map
    top = TOP + (EXCEED_RECT[3] + 2.0 if exceedance is not None else 0.0)
    rows = model_rows(summary)
    _label(layout, "model_title", "Model", (EXCEED_RECT[0], top, EXCEED_RECT[2], 4.5), 7.5, bold=True)
    _table(layout, "model_table", ["Quantity", "Value"], rows,
           (EXCEED_RECT[0], top + 4.5, EXCEED_RECT[2], 4.0 * (len(rows) + 1)), size=6.5)

    # --- lower third: chart, skill, how to read -----------------------------------------
    if series_example is not None:
        _label(layout, "chart_title", _chart_title(series_example), (MARGIN, LOWER_Y, CHART_RECT[2], 5.0),
               8.5, bold=True)
        png = render_series_png(series_example, os.path.join(out_dir, "report_series.png"), CHART_RECT[2],
                                CHART_RECT[3])
        chart = QgsLayoutItemPicture(layout)
        chart.setId("series_chart")
        chart.setPicturePath(png)
        chart.setResizeMode(QgsLayoutItemPicture.Zoom)
        layout.addLayoutItem(chart)
        _place(chart, CHART_RECT)

    headers, rows = skill_table(metrics)
    held = (metrics or {}).get("epochs_held_out") or []
    skill_title = "Backtest at held-out EGMS epochs"
    if held:
        skill_title += f"~({_iso(held[0])} \u2013 {_iso(held[-1])})"
    _label(layout, "skill_title", skill_title.replace("~", "\n"), (SKILL_X, LOWER_Y, SKILL_W, 9.0), 8.5,
           bold=True)
    _table(layout, "skill_table", headers, rows, (SKILL_X, LOWER_Y + 10.0, SKILL_W, 5.0 * (len(rows) + 1)),
           size=6.5)

    _label(layout, "how_to_read_title", "How to read this page", (TEXT_X, LOWER_Y, TEXT_W, 5.0), 8.5,
           bold=True)
    notes = _label(layout, "how_to_read",
                   reading_notes(when, change_since, cumulative_since, threshold, series_example),
                   (TEXT_X, LOWER_Y + 5.5, TEXT_W, PAGE_H - 14.0 - LOWER_Y - 5.5), 6.8, color="#303030")
    notes.setVAlign(Qt.AlignTop)

    # --- footer -------------------------------------------------------------------------
    _label(layout, "attribution", ATTRIBUTION, (MARGIN, PAGE_H - 9.0, 120.0, 5.0), 7.5, color="#404040")
    made = f"GroundCast \u00b7 {dt.date.today().isoformat()}"
    _label(layout, "made_by", made, (PAGE_W - MARGIN - 80.0, PAGE_H - 9.0, 80.0, 5.0), 7.5,
           color="#404040", align=Qt.AlignRight)
    del legend, exceed_item, exceed_legend

    project.layoutManager().addLayout(layout)
    return layout


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
