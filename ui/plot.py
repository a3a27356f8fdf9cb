"""Time-series plot of one point or grid cell in the dock (matplotlib inside Qt)."""
from __future__ import annotations

import warnings
from pathlib import Path

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtCore import QT_VERSION_STR, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from ..engine.definitions import ATTRIBUTION

LOG_TAG = "GroundCast"
HISTORY_SHOWN_DAYS = 2 * 365  # the docked plot: two years of history before the forecast


# -- data: the forecast folder's series and quantile rasters (engine.results.ForecastRun) --------
class SeriesStore:
    """The points of one forecast folder; hands out examples for plot_series, one point read at a time."""

    def __init__(self, out_dir: str):
        from ..engine.results import ForecastRun

        self.out_dir = Path(out_dir)
        self.run = ForecastRun.open(out_dir, kind="forecast")
        self.pid = self.run.pids
        self.x, self.y = self.run.xy

    def __len__(self) -> int:
        return len(self.pid)

    def index_of(self, pid: str):
        return self.run.index_of(pid)

    def nearest(self, x: float, y: float, max_distance: float):
        """Index of the closest point within max_distance (same CRS as the grid), or None."""
        import numpy as np

        if len(self) == 0:
            return None
        d2 = (self.x - x) ** 2 + (self.y - y) ** 2
        i = int(np.argmin(d2))
        return i if d2[i] <= max_distance ** 2 else None

    def example(self, i: int) -> dict:
        return self.run.series(i)

    def cell_example(self, x: float, y: float):
        """The forecast of the grid cell under (x, y) with the median history of its points, or None."""
        import numpy as np

        cell = _read_cell(self.run, x, y)
        if cell is None:
            return None
        (x0, x1, y0, y1), values = cell
        inside = (self.x >= x0) & (self.x < x1) & (self.y > y0) & (self.y <= y1)
        dates_obs, dates_fc = self.run.series_dates
        n_inside = int(inside.sum())
        example = {"label": f"Cell at {x:.0f}, {y:.0f} ({n_inside} point{'' if n_inside == 1 else 's'})",
                   "dates_obs": dates_obs, "dates_fc": dates_fc}
        example.update(values)
        if inside.any():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN epochs stay NaN
                for key in ("obs_mm", "timefn_mm", "persistence_mm"):
                    example[key] = np.nanmedian(self.run.series_values(key, inside), axis=0)
        return example


def _read_cell(run, x: float, y: float):
    """((x0, x1, y0, y1) of the cell, {q05_mm, q50_mm, q95_mm}) at (x, y), or None outside/nodata."""
    import numpy as np
    from osgeo import gdal

    kinds = {"q50_mm": "forecast", "q05_mm": "forecast_q05", "q95_mm": "forecast_q95"}
    values, bounds = {}, None
    for key, kind in kinds.items():
        path = run.raster(kind)
        ds = gdal.Open(str(path)) if path is not None else None
        if ds is None:
            continue
        gt = ds.GetGeoTransform()
        col, row = int((x - gt[0]) // gt[1]), int((y - gt[3]) // gt[5])
        if not (0 <= col < ds.RasterXSize and 0 <= row < ds.RasterYSize):
            return None
        data = ds.ReadAsArray(col, row, 1, 1).reshape(-1).astype("float64")
        nodata = ds.GetRasterBand(1).GetNoDataValue()
        if nodata is not None:
            data[data == nodata] = np.nan
        values[key] = data
        x0, y0 = gt[0] + col * gt[1], gt[3] + row * gt[5]
        bounds = (x0, x0 + gt[1], y0 + gt[5], y0)
        ds = None
    if "q50_mm" not in values or not np.isfinite(values["q50_mm"]).any():
        return None
    return bounds, values


def _draw_fallback(ax, example: dict) -> None:
    """Used only if engine.outputs cannot be imported; mirrors its plot_series."""
    if example.get("obs_mm") is not None:
        ax.plot(example["dates_obs"], example["obs_mm"], ".", color="0.5", markersize=3, label="Observed")
    dates = example.get("dates_fc")
    if example.get("q05_mm") is not None and example.get("q95_mm") is not None:
        ax.fill_between(dates, example["q05_mm"], example["q95_mm"], color="tab:blue", alpha=0.2,
                        linewidth=0, label="MM-STT 90% interval")
    if example.get("q50_mm") is not None:
        ax.plot(dates, example["q50_mm"], "-", color="tab:blue", linewidth=2, label="MM-STT median")
    for key, color, label in (("timefn_mm", "tab:orange", "Time function"),
                              ("persistence_mm", "tab:green", "Persistence")):
        if example.get(key) is not None:
            ax.plot(dates, example[key], "--", color=color, label=label)
    ax.set_ylabel("Displacement (mm)")
    ax.set_title(str(example.get("label", "")), fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="best")


def _canvas_class():
    # matplotlib's Qt canvas must match the Qt that QGIS runs on (Qt6 builds of QGIS 3.40+)
    if int(QT_VERSION_STR.split(".")[0]) >= 6:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
    else:
        from matplotlib.backends.backend_qt5agg import FigureCanvasQTAgg
    return FigureCanvasQTAgg


def focus_on_forecast(ax, example: dict, history_days: int = HISTORY_SHOWN_DAYS) -> None:
    """Start the x-axis `history_days` before the forecast, so a short forecast is not squeezed
    against years of history (the y-axis follows what stays in view)."""
    import numpy as np

    dates_fc = example.get("dates_fc")
    if dates_fc is None or len(dates_fc) == 0:
        return
    dates_fc = np.asarray(dates_fc, dtype="datetime64[D]")
    start = dates_fc[0] - np.timedelta64(int(history_days), "D")
    end = dates_fc[-1] + np.timedelta64(max(6, int((dates_fc[-1] - start).astype(int) * 0.02)), "D")
    dates_obs = example.get("dates_obs")
    if dates_obs is not None and len(dates_obs) and np.asarray(dates_obs, dtype="datetime64[D]")[0] > start:
        return  # the whole history is short: matplotlib's own limits show it all
    ax.set_xlim(start, end)
    values = []
    forecast_keys = ("q05_mm", "q95_mm", "q50_mm", "timefn_mm", "persistence_mm")
    for key, dates in [("obs_mm", dates_obs)] + [(k, dates_fc) for k in forecast_keys]:
        series = example.get(key)
        if series is None or dates is None:
            continue
        dates = np.asarray(dates, dtype="datetime64[D]")
        series = np.asarray(series, dtype="float64")
        if series.shape != dates.shape:
            continue
        shown = series[(dates >= start) & np.isfinite(series)]
        values.extend(shown.tolist())
    if values:
        low, high = min(values), max(values)
        pad = max((high - low) * 0.08, 0.5)
        ax.set_ylim(low - pad, high + pad)


# -- widget ------------------------------------------------------------------------------------
class TimeSeriesWidget(QWidget):
    """Observed history, forecast median, 90% band and dashed baselines for one point or cell."""

    exported = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.example = None
        self.figure = self.canvas = None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.hint = QLabel("Click a point or a forecast cell on the map (\u201cPick on map\u201d) "
                           "or select a point to see its time series.")
        self.hint.setWordWrap(True)
        layout.addWidget(self.hint)
        try:
            from matplotlib.figure import Figure

            self.figure = Figure(figsize=(4.5, 3.0), dpi=90, layout="constrained")
            self.canvas = _canvas_class()(self.figure)
            self.canvas.setMinimumHeight(260)
            self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
            layout.addWidget(self.canvas)
        except ImportError as exc:
            self.hint.setText(f"The time-series plot needs matplotlib ({exc}).")
        buttons = QHBoxLayout()
        self.png_button = QPushButton("Export PNG\u2026")
        self.svg_button = QPushButton("Export SVG\u2026")
        for button, fmt in ((self.png_button, "png"), (self.svg_button, "svg")):
            button.setEnabled(False)
            button.clicked.connect(lambda _=False, f=fmt: self.export_dialog(f))
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        if self.canvas is not None:
            self.canvas.setVisible(False)

    def show_example(self, example: dict) -> None:
        if self.figure is None:
            return
        self.example = example
        self.figure.clear()
        ax = self.figure.add_subplot(1, 1, 1)
        try:
            from ..engine.outputs import plot_series
        except ImportError:
            plot_series = None
        if plot_series is not None:
            plot_series(ax, example)
        else:
            _draw_fallback(ax, example)
        ax.tick_params(labelsize=8)
        focus_on_forecast(ax, example)
        # shown, and so in every PNG/SVG exported from here
        self.figure.supxlabel(ATTRIBUTION, x=0.995, ha="right", fontsize=6, color="0.35")
        self.canvas.setVisible(True)
        self.hint.setVisible(False)
        self.canvas.draw_idle()
        self.png_button.setEnabled(True)
        self.svg_button.setEnabled(True)

    def clear(self) -> None:
        self.example = None
        if self.figure is not None:
            self.figure.clear()
            self.canvas.draw_idle()
            self.canvas.setVisible(False)
        self.hint.setVisible(True)
        self.png_button.setEnabled(False)
        self.svg_button.setEnabled(False)

    def export(self, path: str) -> str:
        """Save the current plot; the format follows the file suffix (png or svg)."""
        self.figure.savefig(path, dpi=200)
        QgsMessageLog.logMessage(f"Time series saved to {path}", LOG_TAG, Qgis.Info)
        self.exported.emit(path)
        return path

    def export_dialog(self, fmt: str) -> None:
        if self.example is None:
            return
        name = str(self.example.get("pid") or "series")
        filters = {"png": "PNG image (*.png)", "svg": "SVG drawing (*.svg)"}
        path, _ = QFileDialog.getSaveFileName(self, "Export time series", f"groundcast_{name}.{fmt}",
                                              filters[fmt])
        if path:
            if not path.lower().endswith("." + fmt):
                path += "." + fmt
            self.export(path)
