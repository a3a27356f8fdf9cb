"""The Report… dialog: pick a forecast date and a point, build the print layout (ui.report),
open it in the layout designer, export it as PDF or PNG.

Public API (the dock's Report… button and the plugin menu call it):
  open_report_dialog(iface, out_dir, parent=None, result_layers=None, backtest_dir=None) -> ReportDialog
"""
from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsMessageLog, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QCompleter,
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from ..engine.errors import InputError
from . import layers, report

LOG_TAG = "GroundCast"
FASTEST = "__fastest__"


def find_result_layers(out_dir, project: QgsProject) -> dict | None:
    """The layers add_result_layers put in `project` for `out_dir` (files of that folder), or None."""
    folder = Path(out_dir).resolve()
    found = {}
    for layer in project.mapLayers().values():
        kind = layer.customProperty(layers.KIND_KEY)
        if not kind or kind == "report_map" or kind in found:
            continue
        if Path(layer.source().split("|")[0]).parent.resolve() == folder:
            found[kind] = layer
    if "forecast" not in found:
        return None
    node = project.layerTreeRoot().findLayer(found.get("change", found["forecast"]).id())
    found["group"] = node.parent() if node is not None else None
    return found


class ReportDialog(QDialog):
    """Date and point, then the layout: opened in the designer, or exported as PDF/PNG."""

    def __init__(self, iface, out_dir, parent=None, result_layers: dict | None = None,
                 backtest_dir=None, project: QgsProject | None = None):
        super().__init__(parent)
        self.iface, self.out_dir = iface, Path(out_dir)
        self.project = project or QgsProject.instance()
        self.run = layers.open_run(self.out_dir)  # InputError: not a forecast folder
        self.summary = self.run.summary or {}
        self.metrics = None
        if backtest_dir:
            try:
                from ..engine.results import ForecastRun

                self.metrics = ForecastRun.open(backtest_dir, kind="backtest").metrics
            except InputError as exc:
                QgsMessageLog.logMessage(str(exc), LOG_TAG, Qgis.Warning)
        self.result_layers = (result_layers or find_result_layers(self.out_dir, self.project)
                              or layers.add_result_layers(str(self.out_dir), None, self.project))
        self.layout = None
        self.setWindowTitle("GroundCast report")

        form = QFormLayout()
        self.date_combo = QComboBox()
        key = "change" if self.result_layers.get("change") is not None else "forecast"
        for day in layers.band_dates(self.result_layers[key]):
            self.date_combo.addItem(day.isoformat(), day.isoformat())
        self.date_combo.setCurrentIndex(self.date_combo.count() - 1)  # the horizon
        form.addRow("Forecast date", self.date_combo)

        self.point_combo = QComboBox()
        fastest = report.fastest_moving_pid(self.run)
        if fastest is not None:
            self.point_combo.addItem(f"Fastest-moving point ({fastest})", FASTEST)
        pids = list(self.run.pids) if self.run.file(report.SERIES) is not None else []
        for pid in pids:
            self.point_combo.addItem(str(pid), str(pid))
        self.point_combo.setEditable(True)  # thousands of points: type to find one
        self.point_combo.setInsertPolicy(QComboBox.NoInsert)
        self.point_combo.completer().setCompletionMode(QCompleter.PopupCompletion)
        self.point_combo.completer().setFilterMode(Qt.MatchContains)
        self.point_combo.setEnabled(self.point_combo.count() > 0)
        form.addRow("Point in the chart", self.point_combo)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        buttons = QHBoxLayout()
        self.designer_button = QPushButton("Open in layout designer")
        self.pdf_button = QPushButton("Export PDF\u2026")
        self.png_button = QPushButton("Export PNG\u2026")
        close = QPushButton("Close")
        self.designer_button.clicked.connect(self.open_designer)
        self.pdf_button.clicked.connect(lambda: self.export("pdf"))
        self.png_button.clicked.connect(lambda: self.export("png"))
        close.clicked.connect(self.reject)
        for button in (self.designer_button, self.pdf_button, self.png_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(close)

        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.status)
        box.addLayout(buttons)

    # -- choices
    def chosen_date(self) -> str:
        return self.date_combo.currentData() or self.date_combo.currentText()

    def chosen_pid(self) -> str | None:
        """The pid picked, or None for the fastest-moving point."""
        index = self.point_combo.findText(self.point_combo.currentText())
        data = self.point_combo.itemData(index) if index >= 0 else self.point_combo.currentText().strip()
        return None if data in (FASTEST, "", None) else str(data)

    # -- actions
    def build(self):
        """The print layout for the chosen date and point, in the project's layout manager."""
        example = report.load_series_example(str(self.out_dir), self.chosen_pid()) \
            if self.run.file(report.SERIES) is not None else None
        self.layout = report.build_report(self.project, self.result_layers, str(self.out_dir), None, example,
                                          self.metrics, self.summary, when=self.chosen_date())
        self.status.setText(f"Layout \u201c{self.layout.name()}\u201d is in the project's layouts.")
        return self.layout

    def open_designer(self):
        layout = self.build()
        if self.iface is not None and hasattr(self.iface, "openLayoutDesigner"):
            self.iface.openLayoutDesigner(layout)
        return layout

    def default_path(self, fmt: str) -> Path:
        # beside the result folder, not inside it: the folder holds only what the run wrote
        return self.out_dir.parent / f"{self.out_dir.name}_report_{self.chosen_date()}.{fmt}"

    def export(self, fmt: str, path: str | None = None) -> str | None:
        """Write the layout as `fmt` (pdf or png); without `path`, ask where."""
        if path is None:
            filters = {"pdf": "PDF document (*.pdf)", "png": "PNG image (*.png)"}
            path, _ = QFileDialog.getSaveFileName(self, f"Export the report as {fmt.upper()}",
                                                  str(self.default_path(fmt)), filters[fmt])
            if not path:
                return None
            if not path.lower().endswith("." + fmt):
                path += "." + fmt
        layout = self.build()
        try:
            report.export_report(layout, pdf_path=path if fmt == "pdf" else None,
                                 png_path=path if fmt == "png" else None)
        except (OSError, RuntimeError) as exc:
            self.status.setText(f"The report could not be written to {path} ({exc}).")
            return None
        self.status.setText(f"Report written to {path}.")
        QgsMessageLog.logMessage(f"Report written to {path}", LOG_TAG, Qgis.Info)
        return path


def open_report_dialog(iface, out_dir, parent=None, result_layers: dict | None = None,
                       backtest_dir=None) -> ReportDialog | None:
    """Show the Report… dialog for the forecast in `out_dir`; None (and a message) when it is no forecast."""
    try:
        dialog = ReportDialog(iface, out_dir, parent, result_layers, backtest_dir)
    except (InputError, FileNotFoundError) as exc:
        if iface is not None:
            iface.messageBar().pushMessage("GroundCast", str(exc), Qgis.Warning, 8)
        return None
    dialog.setAttribute(Qt.WA_DeleteOnClose)
    dialog.show()
    return dialog
