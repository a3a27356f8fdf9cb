"""Results panel: where the run went, the backtest's skill, one point's time series, the report."""
from __future__ import annotations

import traceback

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsMessageLog,
    QgsPointXY,
    QgsProject,
)
from qgis.gui import QgsMapToolEmitPoint
from qgis.PyQt.QtCore import Qt, QUrl, pyqtSignal
from qgis.PyQt.QtGui import QGuiApplication, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ...engine.definitions import ATTRIBUTION, MODEL_LABELS, PRIMARY_MODEL
from ..plot import SeriesStore, TimeSeriesWidget
from .common import LOG_TAG, plural

# the primary model's extra scores: (metrics key, row label, tooltip, format)
EXTRA_ROWS = [
    ("mmstt_coverage90", "Cov.", "Share of held-out values inside the 90% interval (ideal 0.90)", "{:.2f}"),
    ("mmstt_crps_mm", "CRPS", "Continuous ranked probability score, mm (lower is better)", "{:.2f}"),
    ("variogram_range_m", "Range", "Correlation range learned from the data, metres", "{:,.0f}"),
]


class ClickableImage(QLabel):
    clicked = pyqtSignal()

    def mousePressEvent(self, event):  # noqa: N802 (Qt API)
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit()
        super().mousePressEvent(event)


def image_dialog(pixmap: QPixmap, title: str, parent=None) -> QDialog:
    """The whole image at full size (at most 90% of the screen, scrolled beyond)."""
    dialog = QDialog(parent)
    dialog.setWindowTitle(title)
    layout = QVBoxLayout(dialog)
    label = QLabel()
    label.setPixmap(pixmap)
    area = QScrollArea()
    area.setWidget(label)
    area.setAlignment(Qt.AlignmentFlag.AlignCenter)
    layout.addWidget(area, 1)
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dialog.reject)
    layout.addWidget(buttons)
    screen = QGuiApplication.primaryScreen()
    room = screen.availableGeometry().size() * 0.9 if screen is not None else pixmap.size()
    dialog.resize(min(pixmap.width() + 40, room.width()), min(pixmap.height() + 80, room.height()))
    dialog.image = label
    return dialog


def _item(text: str, tip: str = "", bold: bool = False) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    if tip:
        item.setToolTip(tip)
    if bold:
        font = item.font()
        font.setBold(True)
        item.setFont(font)
    return item


class ResultsPanel(QWidget):
    """Emits reportRequested() from "Report…" and problem(str) for the message bar."""

    reportRequested = pyqtSignal()
    problem = pyqtSignal(str)

    def __init__(self, canvas, tools, parent=None):
        super().__init__(parent)
        self.canvas = canvas
        self.tools = tools
        self.series = None
        self.result_layers = {}
        self.result_crs = None
        self.forecast_dir = None
        self.backtest_dir = None
        self.backtest_pixmap = None
        self.image_window = None
        self.pick_tool = QgsMapToolEmitPoint(canvas)
        tools.own(self.pick_tool)
        self.pick_tool.canvasClicked.connect(self._on_pick)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.result_label = QLabel("No run yet.")
        self.result_label.setWordWrap(True)
        self.result_label.setOpenExternalLinks(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        layout.addWidget(self.result_label)
        row = QHBoxLayout()
        self.report_button = QPushButton("Report\u2026")
        self.report_button.setToolTip("Lay out the forecast maps and a time series on a page, "
                                      "and export it as PDF or PNG")
        self.report_button.setEnabled(False)
        self.report_button.clicked.connect(self.reportRequested.emit)
        row.addWidget(self.report_button)
        row.addStretch(1)
        layout.addLayout(row)

        self.backtest_box = QGroupBox("Backtest skill (held-out dates)")
        box_layout = QVBoxLayout(self.backtest_box)
        self.metrics_table = QTableWidget(0, 0)
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metrics_table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.metrics_table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # the models side by side, sized to their names (on two lines when long) and the last one
        # stretched: all three fit the dock's narrowest width
        self.metrics_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.metrics_table.horizontalHeader().setStretchLastSection(True)
        self.metrics_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        box_layout.addWidget(self.metrics_table)
        self.metrics_note = QLabel()
        self.metrics_note.setWordWrap(True)
        box_layout.addWidget(self.metrics_note)
        self.backtest_image = ClickableImage()
        self.backtest_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.backtest_image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.backtest_image.setCursor(Qt.CursorShape.PointingHandCursor)
        self.backtest_image.setToolTip("Click to see the figure at full size")
        self.backtest_image.clicked.connect(self.enlarge_backtest_image)
        box_layout.addWidget(self.backtest_image)
        self.backtest_box.setVisible(False)
        layout.addWidget(self.backtest_box)

        series_box = QGroupBox("Time series")
        series_layout = QVBoxLayout(series_box)
        self.pick_button = QPushButton("Pick on map")
        self.pick_button.setCheckable(True)
        self.pick_button.setEnabled(False)
        self.pick_button.setToolTip("Click a point or a forecast cell to plot its history and forecast")
        self.pick_button.toggled.connect(self._on_pick_toggled)
        self.pick_tool.deactivated.connect(lambda: self.pick_button.setChecked(False))
        series_layout.addWidget(self.pick_button)
        self.plot = TimeSeriesWidget()
        series_layout.addWidget(self.plot)
        layout.addWidget(series_box)
        layout.addStretch(1)

    # -- forecast ------------------------------------------------------------------------------
    def show_forecast(self, out_dir: str, aoi_name: str = "", aoi=None) -> dict:
        """Add the styled layers of the forecast in `out_dir`, the AOI outline under them."""
        from ...engine.results import SERIES
        from ..layers import add_result_layers, band_dates, open_run, sync_temporal_controller

        project = QgsProject.instance()
        layers = add_result_layers(out_dir, None, project, aoi_geometry=aoi, aoi_name=aoi_name or None)
        self.result_layers = layers
        self.result_crs = layers["forecast"].crs()
        self.forecast_dir = out_dir
        sync_temporal_controller(self.canvas, project, dates=band_dates(layers["forecast"]))
        self.series = SeriesStore(out_dir) if open_run(out_dir).file(SERIES) is not None else None
        self.pick_button.setEnabled(self.series is not None)
        if layers.get("points") is not None:
            layers["points"].selectionChanged.connect(self._on_points_selected)
        url = QUrl.fromLocalFile(out_dir).toString()
        self.result_label.setText(f"Forecast written to <a href='{url}'>{out_dir}</a>. Scrub the dates with "
                                  f"the Temporal Controller. <i>{ATTRIBUTION}.</i>")
        self.report_button.setEnabled(True)
        self.backtest_box.setVisible(False)
        return layers

    # -- backtest ------------------------------------------------------------------------------
    def show_backtest(self, out_dir: str) -> None:
        """The skill table and figure of the backtest in `out_dir` (InputError: no backtest there)."""
        from ...engine.results import ForecastRun

        run = ForecastRun.open(out_dir, kind="backtest")
        self.backtest_dir = out_dir
        self.fill_metrics_table(run.metrics or {})
        png = run.backtest_plot
        self.backtest_pixmap = QPixmap(str(png)) if png is not None else None
        self.scale_backtest_image()
        self.backtest_box.setVisible(True)
        url = QUrl.fromLocalFile(out_dir).toString()
        self.result_label.setText(f"Backtest written to <a href='{url}'>{out_dir}</a>. "
                                  f"<i>{ATTRIBUTION}.</i>")

    def fill_metrics_table(self, metrics: dict) -> None:
        """Rows: the horizons' RMSE, then the primary model's coverage, CRPS and range; one column
        per model, so the table never needs a horizontal scroll bar."""
        horizons = metrics.get("horizons_days") or []
        models = metrics.get("models", {})
        keys = list(MODEL_LABELS)
        table = self.metrics_table
        table.clear()
        table.setColumnCount(len(keys))
        table.setRowCount(len(horizons) + len(EXTRA_ROWS))
        for col, key in enumerate(keys):
            header = QTableWidgetItem(MODEL_LABELS[key].replace(" ", "\n"))
            header.setToolTip(MODEL_LABELS[key])
            table.setHorizontalHeaderItem(col, header)
        for row, h in enumerate(horizons):
            header = QTableWidgetItem(f"{h} d")
            header.setToolTip(f"RMSE in mm, {h} days ahead")
            table.setVerticalHeaderItem(row, header)
            values = {}
            for key in keys:
                rmse = models.get(key, {}).get("rmse_mm") or []
                value = rmse[row] if row < len(rmse) else None
                values[key] = value if isinstance(value, (int, float)) else None
            finite = [v for v in values.values() if v is not None]
            best = min(finite) if finite else None
            for col, key in enumerate(keys):
                value = values[key]
                text = "\u2013" if value is None else f"{value:.2f}"
                table.setItem(row, col, _item(text, bold=value is not None and value == best))
        for offset, (key, label, tip, fmt) in enumerate(EXTRA_ROWS):
            row = len(horizons) + offset
            header = QTableWidgetItem(label)
            header.setToolTip(tip)
            table.setVerticalHeaderItem(row, header)
            for col, model in enumerate(keys):
                value = metrics.get(key) if model == PRIMARY_MODEL else None
                text = fmt.format(value) if isinstance(value, (int, float)) else "\u2013"
                table.setItem(row, col, _item(text, tip))
        table.resizeRowsToContents()
        height = table.horizontalHeader().sizeHint().height() + 2 * table.frameWidth() + 2
        table.setFixedHeight(height + sum(table.rowHeight(r) for r in range(table.rowCount())))
        parts = []
        for key, label in (("n_points", "point"), ("n_epochs_train", "observation epoch")):
            if isinstance(metrics.get(key), int):
                parts.append(plural(metrics[key], label))
        if metrics.get("device"):
            parts.append(f"device {metrics['device']}")
        self.metrics_note.setText("RMSE in mm at each horizon (lower is better; bold is the best)"
                                  + (": " + ", ".join(parts) + "." if parts else "."))

    def scale_backtest_image(self) -> None:
        if self.backtest_pixmap is None or self.backtest_pixmap.isNull():
            self.backtest_image.clear()
            return
        # the panel's width, not the label's: the label may still be as wide as an earlier pixmap
        width = max(200, min(self.backtest_image.width(), self.width() - 30) - 4)
        self.backtest_image.setPixmap(
            self.backtest_pixmap.scaledToWidth(width, Qt.TransformationMode.SmoothTransformation))

    def enlarge_backtest_image(self) -> QDialog | None:
        if self.backtest_pixmap is None or self.backtest_pixmap.isNull():
            return None
        self.image_window = image_dialog(self.backtest_pixmap, "GroundCast backtest", self)
        self.image_window.show()
        return self.image_window

    def resizeEvent(self, event):  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self.scale_backtest_image()

    # -- time series ---------------------------------------------------------------------------
    def _on_pick_toggled(self, on: bool) -> None:
        if on:
            self.tools.use(self.pick_tool)
        else:
            self.tools.release(self.pick_tool)

    def _on_pick(self, point, _button=None) -> None:
        try:
            if not self.show_series_at(QgsPointXY(point), self.canvas.mapSettings().destinationCrs()):
                self.problem.emit("No forecast there: click inside the forecast grid.")
        except Exception as exc:  # noqa: BLE001 (a slot must not raise into QGIS)
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self.problem.emit(f"The time series could not be drawn ({type(exc).__name__}); "
                              "details are in the log.")

    def show_series_at(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> bool:
        """Plot the point nearest to `point` (within ~8 pixels), else the forecast cell under it."""
        if self.series is None or self.result_crs is None:
            return False
        transform = QgsCoordinateTransform(crs, self.result_crs, QgsProject.instance())
        here = transform.transform(point)
        offset = QgsPointXY(point.x() + 8 * self.canvas.mapUnitsPerPixel(), point.y())
        tolerance = here.distance(transform.transform(offset))
        index = self.series.nearest(here.x(), here.y(), tolerance)
        example = self.series.example(index) if index is not None else \
            self.series.cell_example(here.x(), here.y())
        if example is None:
            return False
        self.plot.show_example(example)
        return True

    def _on_points_selected(self, selected, *_args) -> None:
        layer = self.result_layers.get("points")
        if self.series is None or layer is None or not selected:
            return
        feature = layer.getFeature(selected[0])
        index = self.series.index_of(feature["pid"]) if feature.fields().indexOf("pid") >= 0 else None
        if index is not None:
            self.plot.show_example(self.series.example(index))

    def cleanup(self) -> None:
        self.pick_tool.deleteLater()
        if self.image_window is not None:
            self.image_window.close()
