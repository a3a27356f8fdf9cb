"""The GroundCast dock: pick inputs and an area, run the engine in a task, show the results.

Everything here gathers inputs as files and parameters, calls the engine through
ui/task.py and shows what it wrote; the forecasting itself lives in engine/.
"""
from __future__ import annotations

import datetime as dt
import importlib
import json
import os
import re
import shutil
import tempfile
import traceback
import zipfile
from pathlib import Path

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFieldProxyModel,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsMessageLog,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import (
    QgsCollapsibleGroupBox,
    QgsDockWidget,
    QgsFieldComboBox,
    QgsFileWidget,
    QgsMapLayerComboBox,
    QgsMapToolEmitPoint,
)
from qgis.PyQt.QtCore import QDate, Qt, QUrl, QVariant
from qgis.PyQt.QtGui import QFont, QPixmap
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QButtonGroup,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from . import deps
from . import task as task_module
from .aoi_tool import AoiMapTool, make_aoi_band
from .plot import SeriesStore, TimeSeriesWidget

LOG_TAG = "GroundCast"
SETTINGS = "groundcast/"
SOURCE_FILE_KEY = "groundcast/source_file"
DATE_FIELD = re.compile(r"^D?(\d{4})(\d{2})(\d{2})$")
DEVICES = [("Auto", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda")]
MODEL_ROWS = [("mmstt", "MM-STT"), ("persistence", "Persistence"), ("timefn", "Time fn")]


class UserError(Exception):
    """A problem the user can fix; its message is one sentence for the message bar."""


def date_fields(layer) -> list:
    """Dates of the yyyymmdd / Dyyyymmdd fields of a vector layer, sorted."""
    dates = []
    if not isinstance(layer, QgsVectorLayer):
        return dates
    for field in layer.fields():
        match = DATE_FIELD.match(field.name())
        if match:
            try:
                dates.append(dt.date(*map(int, match.groups())))
            except ValueError:
                continue
    return sorted(dates)


def _csv_header(path: str, opener=None) -> list:
    with (opener or (lambda p: open(p, "rb")))(path) as handle:
        line = handle.readline(1 << 20).decode("utf-8", "replace")
    return [h.strip().strip('"').lower() for h in line.split(",")]


def load_egms_layer(path: str) -> QgsVectorLayer:
    """An EGMS .csv (delimited text) or .zip (GDAL /vsizip/) as a point layer; raises UserError."""
    path = os.path.abspath(path)
    name = Path(path).stem
    suffix = Path(path).suffix.lower()
    if suffix not in (".zip", ".csv"):
        raise UserError(f"{Path(path).name} is not an EGMS download (.csv or .zip).")
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
                if not members:
                    raise UserError(f"{Path(path).name} holds no .csv file, so it is not an EGMS download.")
                header = _csv_header(members[0], lambda m: archive.open(m))
        except zipfile.BadZipFile as exc:
            raise UserError(f"{Path(path).name} is not a readable zip file ({exc}).") from exc
        x, y, crs = _xy_fields(header, path)
        # HEADERS=YES: GDAL's header guess fails when most column names are numbers (the dates)
        uri = (f"/vsizip/{path}/{members[0]}|option:HEADERS=YES|option:X_POSSIBLE_NAMES={x}"
               f"|option:Y_POSSIBLE_NAMES={y}|option:AUTODETECT_TYPE=YES")
        layer = QgsVectorLayer(uri, name, "ogr")
        layer.setCrs(QgsCoordinateReferenceSystem(crs))  # CSV carries no CRS of its own
    else:
        try:
            header = _csv_header(path)
        except OSError as exc:
            raise UserError(f"{Path(path).name} cannot be read ({exc.strerror or exc}).") from exc
        x, y, crs = _xy_fields(header, path)
        uri = (f"{QUrl.fromLocalFile(path).toString()}?type=csv&delimiter=,&xField={x}&yField={y}"
               f"&crs={crs}&detectTypes=yes&geomType=point&spatialIndex=yes")
        layer = QgsVectorLayer(uri, name, "delimitedtext")
    if not layer.isValid():
        raise UserError(f"{Path(path).name} could not be opened as a point layer.")
    layer.setCustomProperty(SOURCE_FILE_KEY, path)
    return layer


def _xy_fields(header: list, path: str) -> tuple:
    if "easting" in header and "northing" in header:
        return "easting", "northing", "EPSG:3035"
    if "longitude" in header and "latitude" in header:
        return "longitude", "latitude", "EPSG:4326"
    raise UserError(f"{Path(path).name} has no easting/northing columns, so it is not an EGMS CSV.")


def points_file(layer, tmp_dir: str) -> str:
    """A file the engine reads: the EGMS file itself when the layer shows all of it, else a copy."""
    if not layer.subsetString():
        source = layer.customProperty(SOURCE_FILE_KEY)
        if source and os.path.isfile(source):
            return source
        if layer.providerType() == "delimitedtext":
            path = QUrl(layer.source().split("?")[0]).toLocalFile()
            if os.path.isfile(path):
                return path
        match = re.match(r"^/vsizip/(.+?\.zip)(/|$)", layer.source(), re.I)
        if match and os.path.isfile(match.group(1)):
            return match.group(1)
    return _layer_to_path(layer, tmp_dir)


def _layer_to_path(layer, tmp_dir: str) -> str:
    from .layer_io import LayerExportError, layer_to_path

    try:
        return layer_to_path(layer, tmp_dir)
    except LayerExportError as exc:
        raise UserError(f"Layer \u201c{layer.name()}\u201d could not be handed to the engine: {exc}.") \
            from exc


def _nice_area(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> str:
    from qgis.core import QgsDistanceArea

    measure = QgsDistanceArea()
    measure.setSourceCrs(crs, QgsProject.instance().transformContext())
    measure.setEllipsoid(QgsProject.instance().ellipsoid() or "EPSG:7030")
    km2 = measure.measureArea(geometry) / 1e6
    return f"{km2:.2f} km\u00b2" if km2 < 100 else f"{km2:,.0f} km\u00b2"


def _narrow(combo, chars: int = 8):
    """Long layer names must not widen the dock: the combo elides instead."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


class GroundCastDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__("GroundCast", parent)
        self.setObjectName("GroundCastDock")
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.task = None
        self.install_task = None
        self.run_params = None
        self.tmp_dir = None
        self.series = None
        self.result_layers = {}
        self.result_crs = None
        self.aoi_geometry = None  # canvas CRS at the time it was set
        self.aoi_crs = None
        self.aoi_name = ""
        self._previous_tool = None

        self.aoi_band = make_aoi_band(self.canvas)
        self.aoi_tool = AoiMapTool(self.canvas)
        self.aoi_tool.polygonFinished.connect(self._on_polygon_drawn)
        self.aoi_tool.cancelled.connect(self._restore_tool)
        self.pick_tool = QgsMapToolEmitPoint(self.canvas)
        self.pick_tool.canvasClicked.connect(self._on_pick)

        self._build_ui()
        self._restore_settings()
        self._on_points_changed()
        self.set_aoi(None, None, "")
        self.refresh_dependencies()

    # ===================================================================== building the UI
    def _build_ui(self) -> None:
        root = QWidget()
        outer = QVBoxLayout(root)
        outer.setContentsMargins(4, 4, 4, 4)

        outer.addWidget(self._build_deps_box())
        self.tabs = QTabWidget()
        self.tabs.addTab(self._scrolled(self._build_setup_page()), "Set up")
        self.tabs.addTab(self._scrolled(self._build_results_page()), "Results")
        outer.addWidget(self.tabs, 1)
        outer.addWidget(self._build_run_box())
        self.setWidget(root)
        self.setMinimumWidth(360)  # every button label and the 2-column forms fit without scrolling

    @staticmethod
    def _scrolled(widget: QWidget) -> QScrollArea:
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # never cut off silently
        area.setWidget(widget)
        return area

    @staticmethod
    def _form() -> QFormLayout:
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        return form

    def _build_deps_box(self) -> QWidget:
        box = QGroupBox("Missing Python packages")
        box.setStyleSheet("QGroupBox { font-weight: bold; color: #8a1c1c; }")
        layout = QVBoxLayout(box)
        self.deps_label = QLabel()
        self.deps_label.setWordWrap(True)
        self.deps_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.deps_label.setStyleSheet("font-weight: normal; color: palette(text);")
        layout.addWidget(self.deps_label)
        self.deps_command = QPlainTextEdit()
        self.deps_command.setReadOnly(True)
        self.deps_command.setFont(QFont("monospace"))
        self.deps_command.setMaximumHeight(96)
        self.deps_command.setStyleSheet("font-weight: normal; color: palette(text);")
        layout.addWidget(self.deps_command)
        row = QHBoxLayout()
        self.install_button = QPushButton("Install")
        self.install_button.setToolTip("Runs the pip command above in the background")
        self.install_button.clicked.connect(self.install_dependencies)
        copy_button = QPushButton("Copy command")
        copy_button.clicked.connect(lambda: QApplication.clipboard().setText(self.deps_command.toPlainText()))
        self.install_progress = QProgressBar()
        self.install_progress.setVisible(False)
        row.addWidget(self.install_button)
        row.addWidget(copy_button)
        row.addWidget(self.install_progress, 1)
        layout.addLayout(row)
        self.deps_box = box
        return box

    def _build_setup_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(2, 2, 2, 2)

        # -- inputs
        inputs = QGroupBox("Inputs")
        form = self._form()
        self.points_combo = _narrow(QgsMapLayerComboBox())
        self.points_combo.setFilters(QgsMapLayerProxyModel.PointLayer)
        self.points_combo.setAllowEmptyLayer(True)
        self.points_combo.layerChanged.connect(self._on_points_changed)
        open_button = QPushButton("Open EGMS file\u2026")
        open_button.setToolTip("Load an EGMS download (.csv or .zip) as a point layer")
        open_button.clicked.connect(self._open_points_dialog)
        self.open_points_button = open_button
        form.addRow("EGMS points", self.points_combo)
        self.points_info = QLabel()
        self.points_info.setWordWrap(True)
        points_row = QHBoxLayout()
        points_row.addWidget(self.points_info, 1)
        points_row.addWidget(open_button, 0, Qt.AlignmentFlag.AlignTop)
        form.addRow(points_row)

        self.dem_combo = _narrow(QgsMapLayerComboBox())
        self.dem_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.dem_combo.setAllowEmptyLayer(True)
        form.addRow("DEM (optional)", self.dem_combo)
        self.geology_combo, self.geology_field = self._polygon_with_field()
        form.addRow("Geology (optional)", self.geology_combo)
        form.addRow("  class field", self.geology_field)
        self.soil_combo, self.soil_field = self._polygon_with_field()
        form.addRow("Soil (optional)", self.soil_combo)
        form.addRow("  class field", self.soil_field)
        inputs.setLayout(form)
        layout.addWidget(inputs)

        # -- area of interest
        aoi_box = QGroupBox("Area of interest")
        aoi_layout = QVBoxLayout(aoi_box)
        grid = QGridLayout()
        self.draw_button = QPushButton("Draw")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Click vertices on the map; right click finishes, Backspace undoes, "
                                    "Esc cancels")
        self.draw_button.toggled.connect(self._on_draw_toggled)
        self.aoi_tool.deactivated.connect(lambda: self.draw_button.setChecked(False))
        self.selection_button = QPushButton("Selected features")
        self.selection_button.setToolTip("Use the selected polygons of the polygon layer below")
        self.selection_button.clicked.connect(self.use_selected_features)
        self.extent_button = QPushButton("Canvas extent")
        self.extent_button.clicked.connect(self.use_canvas_extent)
        self.clear_aoi_button = QPushButton("Clear")
        self.clear_aoi_button.clicked.connect(self.clear_aoi)
        grid.addWidget(self.draw_button, 0, 0)
        grid.addWidget(self.selection_button, 0, 1)
        grid.addWidget(self.extent_button, 1, 0)
        grid.addWidget(self.clear_aoi_button, 1, 1)
        aoi_layout.addLayout(grid)
        aoi_form = self._form()
        self.aoi_layer_combo = _narrow(QgsMapLayerComboBox())
        self.aoi_layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.aoi_layer_combo.setToolTip("Polygon layer whose selected features make the area")
        aoi_form.addRow("Polygon layer", self.aoi_layer_combo)
        aoi_layout.addLayout(aoi_form)
        self.aoi_label = QLabel()
        self.aoi_label.setWordWrap(True)
        aoi_layout.addWidget(self.aoi_label)
        layout.addWidget(aoi_box)

        # -- parameters
        params = QGroupBox("Parameters")
        form = self._form()
        self.horizon_days_radio = QRadioButton("Days ahead")
        self.horizon_date_radio = QRadioButton("Until date")
        group = QButtonGroup(self)
        group.addButton(self.horizon_days_radio)
        group.addButton(self.horizon_date_radio)
        self.horizon_spin = QSpinBox()
        self.horizon_spin.setRange(6, 3650)
        self.horizon_spin.setSingleStep(6)
        self.horizon_spin.setSuffix(" days")
        self.target_date = QDateEdit()
        self.target_date.setCalendarPopup(True)
        self.target_date.setDisplayFormat("yyyy-MM-dd")
        horizon = QGridLayout()
        horizon.addWidget(self.horizon_days_radio, 0, 0)
        horizon.addWidget(self.horizon_spin, 0, 1)
        horizon.addWidget(self.horizon_date_radio, 1, 0)
        horizon.addWidget(self.target_date, 1, 1)
        horizon.setColumnStretch(1, 1)
        self.horizon_days_radio.toggled.connect(self._sync_horizon_widgets)
        form.addRow("Horizon", horizon)
        self.cell_spin = QDoubleSpinBox()
        self.cell_spin.setRange(10, 5000)
        self.cell_spin.setDecimals(0)
        self.cell_spin.setSingleStep(50)
        self.cell_spin.setSuffix(" m")
        form.addRow("Cell size", self.cell_spin)
        self.threshold_spin = QDoubleSpinBox()
        self.threshold_spin.setRange(-1000, 1000)
        self.threshold_spin.setDecimals(1)
        self.threshold_spin.setSuffix(" mm")
        self.threshold_spin.setToolTip("Negative: probability of subsiding past it; "
                                       "positive: of rising past it")
        form.addRow("Exceedance threshold", self.threshold_spin)
        self.device_combo = QComboBox()
        for label, value in DEVICES:
            self.device_combo.addItem(label, value)
        form.addRow("Device", self.device_combo)
        self.output_widget = QgsFileWidget()
        self.output_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_widget.setDialogTitle("Folder for GroundCast runs")
        self.output_widget.setToolTip("Each run writes a new sub-folder here")
        out_label = QLabel("Output folder (each run adds a sub-folder)")
        out_label.setWordWrap(True)
        form.addRow(out_label)
        form.addRow(self.output_widget)
        params.setLayout(form)
        layout.addWidget(params)

        self.advanced = QgsCollapsibleGroupBox("Advanced")
        self.advanced.setCollapsed(True)
        form = self._form()
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(0, 10000)
        self.epochs_spin.setSpecialValueText("Default")
        form.addRow("Epochs", self.epochs_spin)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2 ** 31 - 1)
        form.addRow("Seed", self.seed_spin)
        self.holdout_spin = QSpinBox()
        self.holdout_spin.setRange(6, 3650)
        self.holdout_spin.setSingleStep(6)
        self.holdout_spin.setSuffix(" days")
        form.addRow("Backtest hold-out", self.holdout_spin)
        self.advanced.setLayout(form)
        layout.addWidget(self.advanced)
        layout.addStretch(1)
        return page

    def _polygon_with_field(self):
        combo = _narrow(QgsMapLayerComboBox())
        combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        combo.setAllowEmptyLayer(True)
        combo.setLayer(None)
        field = _narrow(QgsFieldComboBox())
        field.setFilters(QgsFieldProxyModel.String | QgsFieldProxyModel.Int | QgsFieldProxyModel.LongLong)

        def changed(layer):
            field.setLayer(layer)
            field.setEnabled(layer is not None)
            if layer is not None and not field.currentField():
                strings = [f.name() for f in layer.fields() if f.type() == QVariant.String]
                if strings:
                    field.setField(strings[0])

        combo.layerChanged.connect(changed)
        changed(None)
        return combo, field

    def _build_results_page(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(2, 2, 2, 2)
        self.result_label = QLabel("No run yet.")
        self.result_label.setWordWrap(True)
        self.result_label.setOpenExternalLinks(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        layout.addWidget(self.result_label)

        self.backtest_box = QGroupBox("Backtest skill (held-out epochs)")
        box_layout = QVBoxLayout(self.backtest_box)
        self.metrics_table = QTableWidget(0, 0)
        self.metrics_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.metrics_table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.metrics_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.metrics_table.setSizeAdjustPolicy(QAbstractItemView.SizeAdjustPolicy.AdjustToContents)
        box_layout.addWidget(self.metrics_table)
        self.metrics_note = QLabel()
        self.metrics_note.setWordWrap(True)
        box_layout.addWidget(self.metrics_note)
        self.backtest_image = QLabel()
        self.backtest_image.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.backtest_image.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
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
        self._backtest_pixmap = None
        return page

    def _build_run_box(self) -> QWidget:
        box = QWidget()
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.forecast_button = QPushButton("Forecast")
        self.forecast_button.setToolTip("Train on the points' history and forecast to the horizon")
        self.forecast_button.clicked.connect(lambda: self.start("forecast"))
        self.backtest_button = QPushButton("Backtest")
        self.backtest_button.setToolTip("Hold out the last epochs and score MM-STT against simple baselines")
        self.backtest_button.clicked.connect(lambda: self.start("backtest"))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        for button in (self.forecast_button, self.backtest_button, self.cancel_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.status_label = QLabel("Ready.")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        return box

    # ===================================================================== settings
    def _restore_settings(self) -> None:
        s = QgsSettings()
        self.horizon_spin.setValue(s.value(SETTINGS + "horizon_days", 365, type=int))
        by_date = s.value(SETTINGS + "horizon_mode", "days", type=str) == "date"
        self.horizon_date_radio.setChecked(by_date)
        self.horizon_days_radio.setChecked(not by_date)
        target = QDate.fromString(s.value(SETTINGS + "target_date", "", type=str), "yyyy-MM-dd")
        self.target_date.setDate(target if target.isValid() else QDate.currentDate().addYears(1))
        self.cell_spin.setValue(s.value(SETTINGS + "cell_size_m", 100.0, type=float))
        self.threshold_spin.setValue(s.value(SETTINGS + "threshold_mm", -10.0, type=float))
        index = self.device_combo.findData(s.value(SETTINGS + "device", "auto", type=str))
        self.device_combo.setCurrentIndex(max(index, 0))
        self.epochs_spin.setValue(s.value(SETTINGS + "epochs", 0, type=int))
        self.seed_spin.setValue(s.value(SETTINGS + "seed", 0, type=int))
        self.holdout_spin.setValue(s.value(SETTINGS + "holdout_days", 365, type=int))
        default_out = str(Path.home() / "GroundCast")
        self.output_widget.setFilePath(s.value(SETTINGS + "output_dir", default_out, type=str) or default_out)
        self._sync_horizon_widgets()

    def save_settings(self) -> None:
        s = QgsSettings()
        s.setValue(SETTINGS + "horizon_days", self.horizon_spin.value())
        s.setValue(SETTINGS + "horizon_mode", "date" if self.horizon_date_radio.isChecked() else "days")
        s.setValue(SETTINGS + "target_date", self.target_date.date().toString("yyyy-MM-dd"))
        s.setValue(SETTINGS + "cell_size_m", self.cell_spin.value())
        s.setValue(SETTINGS + "threshold_mm", self.threshold_spin.value())
        s.setValue(SETTINGS + "device", self.device_combo.currentData())
        s.setValue(SETTINGS + "epochs", self.epochs_spin.value())
        s.setValue(SETTINGS + "seed", self.seed_spin.value())
        s.setValue(SETTINGS + "holdout_days", self.holdout_spin.value())
        s.setValue(SETTINGS + "output_dir", self.output_widget.filePath())

    def _sync_horizon_widgets(self) -> None:
        self.horizon_spin.setEnabled(self.horizon_days_radio.isChecked())
        self.target_date.setEnabled(self.horizon_date_radio.isChecked())

    # ===================================================================== dependencies
    def refresh_dependencies(self) -> list:
        importlib.invalidate_caches()
        problems = {name: "not installed" for name in deps.missing_dependencies()}
        try:
            problems.update({k: v for k, v in deps.dependency_problems().items() if k in problems})
        except Exception:  # noqa: BLE001 (only used for wording)
            pass
        self.missing = list(problems)
        if self.missing:
            lines = "".join(f"<li><b>{name}</b>: {why}</li>" for name, why in problems.items())
            self.deps_label.setText(
                "GroundCast cannot run until these packages are installed into the Python that QGIS "
                f"uses:<ul style='margin:2px'>{lines}</ul>Run this in a terminal, or press Install "
                "(pip part only), then restart QGIS:")
            self.deps_command.setPlainText(deps.install_command(self.missing))
            _, pip_part = deps.split_missing(self.missing)
            self.install_button.setEnabled(bool(pip_part) and self.install_task is None)
        self.deps_box.setVisible(bool(self.missing))
        self._update_buttons()
        return self.missing

    def install_dependencies(self) -> None:
        _, pip_part = deps.split_missing(self.missing)
        if not pip_part or self.install_task is not None:
            return
        task = deps.PipInstallTask(pip_part)
        task.progressChanged.connect(lambda value: self.install_progress.setValue(int(value)))
        task.messageChanged.connect(self.status_label.setText)
        task.taskCompleted.connect(lambda: self._install_done(True))
        task.taskTerminated.connect(lambda: self._install_done(False))
        self.install_task = task
        self.install_button.setEnabled(False)
        self.install_progress.setValue(0)
        self.install_progress.setVisible(True)
        QgsApplication.taskManager().addTask(task)

    def _install_done(self, ok: bool) -> None:
        task, self.install_task = self.install_task, None
        self.install_progress.setVisible(False)
        bar = self.iface.messageBar()
        if ok:
            bar.pushMessage("GroundCast", "Python packages installed; restart QGIS to use them.",
                            Qgis.Success, 10)
        elif task is not None and task.error:
            bar.pushMessage("GroundCast", f"Installing packages failed: {task.error} (details in the log).",
                            Qgis.Critical, 10)
        self.refresh_dependencies()

    # ===================================================================== inputs
    def _open_points_dialog(self) -> None:
        last = QgsSettings().value(SETTINGS + "last_points_dir", str(Path.home()), type=str)
        path, _ = QFileDialog.getOpenFileName(self, "Open EGMS file", last,
                                              "EGMS downloads (*.csv *.zip);;All files (*)")
        if path:
            QgsSettings().setValue(SETTINGS + "last_points_dir", str(Path(path).parent))
            self.open_points_file(path)

    def open_points_file(self, path: str):
        """Load an EGMS .csv/.zip as a layer, add it to the project and select it; None on error."""
        try:
            layer = load_egms_layer(path)
        except UserError as exc:
            self._error(str(exc))
            return None
        QgsProject.instance().addMapLayer(layer)
        self.points_combo.setLayer(layer)
        return layer

    def _on_points_changed(self, *_args) -> None:
        layer = self.points_combo.currentLayer()
        dates = date_fields(layer)
        if layer is None:
            text, ok = "Choose a point layer or open an EGMS file.", False
        elif not dates:
            text, ok = ("This layer has no date fields (named yyyymmdd or Dyyyymmdd), so it holds no "
                        "displacement time series; choose an EGMS layer."), False
        else:
            text = (f"{len(dates)} dates, {dates[0]:%Y-%m-%d} to {dates[-1]:%Y-%m-%d}; "
                    f"{layer.featureCount():,} points.")
            ok = True
        colour = "#1b6e20" if ok else "#8a1c1c"
        self.points_info.setText(f"<span style='color:{colour}'>{text}</span>")
        self.points_ok = ok
        self.last_observation = dates[-1] if dates else None
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.task is not None
        ready = getattr(self, "points_ok", False) and not getattr(self, "missing", []) and not running
        for button in (self.forecast_button, self.backtest_button):
            button.setEnabled(ready)
        self.cancel_button.setEnabled(running)

    # ===================================================================== area of interest
    def _on_draw_toggled(self, on: bool) -> None:
        if on:
            if self.canvas.mapTool() is not self.aoi_tool:
                self._previous_tool = self.canvas.mapTool()
                self.canvas.setMapTool(self.aoi_tool)
        elif self.canvas.mapTool() is self.aoi_tool:
            self._restore_tool()

    def _restore_tool(self) -> None:
        previous, self._previous_tool = self._previous_tool, None
        try:
            if previous is not None and previous not in (self.aoi_tool, self.pick_tool):
                self.canvas.setMapTool(previous)
            elif self.canvas.mapTool() in (self.aoi_tool, self.pick_tool):
                self.canvas.unsetMapTool(self.canvas.mapTool())
        except RuntimeError:  # the previous tool was deleted meanwhile
            self._previous_tool = None
            self._restore_tool()

    def _on_polygon_drawn(self, geometry: QgsGeometry) -> None:
        self.set_aoi(geometry, self.canvas.mapSettings().destinationCrs(), "Drawn area")
        self._restore_tool()

    def set_aoi(self, geometry, crs: QgsCoordinateReferenceSystem, name: str) -> None:
        """Use `geometry` (in `crs`) as the AOI and show it on the canvas; None clears it."""
        if geometry is None or geometry.isEmpty():
            self.aoi_geometry, self.aoi_crs, self.aoi_name = None, None, ""
            self.aoi_band.reset(QgsWkbTypes.PolygonGeometry)
            self.aoi_label.setText("No area set: the whole points layer is used.")
            return
        self.aoi_geometry, self.aoi_crs, self.aoi_name = QgsGeometry(geometry), crs, name
        shown = QgsGeometry(geometry)
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        if crs != canvas_crs:
            shown.transform(QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()))
        self.aoi_band.setToGeometry(shown, None)
        self.aoi_label.setText(f"Area: {name}, {_nice_area(geometry, crs)}.")

    def clear_aoi(self) -> None:
        self.aoi_tool.clear()
        self.set_aoi(None, None, "")

    def use_selected_features(self) -> None:
        layer = self.aoi_layer_combo.currentLayer()
        if layer is None or layer.selectedFeatureCount() == 0:
            self._error("Select one or more polygons in the chosen polygon layer first.", Qgis.Warning)
            return
        geometry = QgsGeometry.unaryUnion([f.geometry() for f in layer.getSelectedFeatures()])
        if geometry is None or geometry.isEmpty():
            self._error("The selected features have no polygon geometry.", Qgis.Warning)
            return
        count = layer.selectedFeatureCount()
        name = f"{layer.name()} ({count} selected)" if count > 1 else layer.name()
        self.set_aoi(geometry, layer.crs(), name)

    def use_canvas_extent(self) -> None:
        extent = self.canvas.extent()
        self.set_aoi(QgsGeometry.fromRect(QgsRectangle(extent)), self.canvas.mapSettings().destinationCrs(),
                     "Canvas extent")

    def aoi_text(self) -> str | None:
        """The AOI as "EPSG:xxxx;WKT" for RunConfig.aoi (EPSG:4326 when the CRS has no EPSG code)."""
        if self.aoi_geometry is None:
            return None
        geometry, crs = QgsGeometry(self.aoi_geometry), self.aoi_crs
        if not crs.authid().upper().startswith("EPSG:"):
            target = QgsCoordinateReferenceSystem("EPSG:4326")
            geometry.transform(QgsCoordinateTransform(crs, target, QgsProject.instance()))
            crs = target
        return f"{crs.authid()};{geometry.asWkt(6)}"

    # ===================================================================== running
    def collect_parameters(self, kind: str) -> dict:
        """RunConfig keyword arguments; layers that are not plain files are exported to tmp_dir."""
        points = self.points_combo.currentLayer()
        if points is None or not date_fields(points):
            raise UserError("Choose an EGMS point layer with date fields first.")
        base = self.output_widget.filePath().strip() or str(Path.home() / "GroundCast")
        stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        out_dir = str(Path(base).expanduser() / f"{kind}_{stamp}")
        if self.horizon_date_radio.isChecked():
            target = self.target_date.date().toPyDate()
            horizon = (target - self.last_observation).days
            if horizon < 1:
                raise UserError(f"The target date must be after the last observation "
                                f"({self.last_observation:%Y-%m-%d}).")
        else:
            horizon = self.horizon_spin.value()
        tmp = self.tmp_dir or tempfile.mkdtemp(prefix="groundcast_inputs_")
        self.tmp_dir = tmp
        params = {
            "points": points_file(points, tmp),
            "out_dir": out_dir,
            "aoi": self.aoi_text(),
            "cell_size_m": float(self.cell_spin.value()),
            "horizon_days": int(horizon),
            "threshold_mm": float(self.threshold_spin.value()),
            "seed": int(self.seed_spin.value()),
            "device": self.device_combo.currentData(),
            "epochs": self.epochs_spin.value() or None,
        }
        if kind == "backtest":
            params["holdout_days"] = int(self.holdout_spin.value())
        dem = self.dem_combo.currentLayer()
        if dem is not None:
            params["dem"] = _layer_to_path(dem, tmp)
        for key, combo, field in (("geology", self.geology_combo, self.geology_field),
                                  ("soil", self.soil_combo, self.soil_field)):
            layer = combo.currentLayer()
            if layer is None:
                continue
            if not field.currentField():
                raise UserError(f"Choose the class field of the {key} layer \u201c{layer.name()}\u201d.")
            params[key] = _layer_to_path(layer, tmp)
            params[f"{key}_field"] = field.currentField()
        return params

    def start(self, kind: str):
        """Start a forecast or backtest task; returns the task, or None when it could not start."""
        if self.task is not None:
            return None
        self.save_settings()
        try:
            params = self.collect_parameters(kind)
            config = task_module.build_config(**params)
        except UserError as exc:
            self._cleanup_tmp()
            self._error(str(exc), Qgis.Warning)
            return None
        except Exception as exc:  # noqa: BLE001 (engine missing or broken: say so, keep QGIS running)
            self._cleanup_tmp()
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self._error(f"The GroundCast engine could not be prepared ({type(exc).__name__}: {exc}).")
            return None
        aoi_name = self.aoi_name or self.points_combo.currentLayer().name()
        self.run_params = dict(params, kind=kind, aoi_name=aoi_name)
        task = task_module.EngineTask(kind, config, message_bar=self.iface.messageBar(),
                                      description=f"GroundCast {kind}")
        task.progressChanged.connect(lambda value: self.progress.setValue(int(value)))
        task.messageChanged.connect(self.status_label.setText)
        task.succeeded.connect(self._on_succeeded)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        self.task = task
        self.progress.setValue(0)
        self.status_label.setText(f"Starting the {kind}\u2026")
        self._update_buttons()
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if self.task is not None:
            self.status_label.setText("Cancelling\u2026")
            self.cancel_button.setEnabled(False)
            self.task.cancel()

    def _task_over(self) -> None:
        self.task = None
        self._cleanup_tmp()
        self._update_buttons()

    def _cleanup_tmp(self) -> None:
        if self.tmp_dir:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None

    def _on_cancelled(self) -> None:
        self._task_over()
        self.progress.setValue(0)
        self.status_label.setText("Cancelled; nothing was written.")

    def _on_failed(self, message: str) -> None:
        self._task_over()
        self.progress.setValue(0)
        self.status_label.setText(message)

    def _on_succeeded(self, result: dict) -> None:
        params = self.run_params or {}
        self._task_over()
        out_dir = params.get("out_dir", "")
        try:
            if params.get("kind") == "backtest":
                self.show_backtest(out_dir, result)
            else:
                self.show_forecast(out_dir, params)
        except Exception as exc:  # noqa: BLE001 (results exist on disk; say where)
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self._error(f"The run finished but its results could not be shown ({exc}); "
                        f"they are in {out_dir}.")
            self.status_label.setText(f"Finished; results in {out_dir}.")

    # ===================================================================== results
    def show_forecast(self, out_dir: str, params: dict | None = None) -> dict:
        """Add the styled result layers of `out_dir` and prepare the time-series plot."""
        from .layers import add_result_layers, sync_temporal_controller

        params = params or {}
        name = f"{params.get('aoi_name') or Path(out_dir).name} \u2013 {dt.date.today():%Y-%m-%d}"
        project = QgsProject.instance()
        layers = add_result_layers(out_dir, name, project, aoi_geometry=params.get("aoi"))
        self.result_layers = layers
        self.result_crs = layers["forecast"].crs()
        from .layers import band_dates

        sync_temporal_controller(self.canvas, project, dates=band_dates(layers["forecast"]))
        self.series = None
        if (Path(out_dir) / "series.npz").exists():
            self.series = SeriesStore(out_dir)
        self.pick_button.setEnabled(self.series is not None)
        if layers.get("points") is not None:
            layers["points"].selectionChanged.connect(self._on_points_selected)
        url = QUrl.fromLocalFile(out_dir).toString()
        self.result_label.setText(f"Forecast written to <a href='{url}'>{out_dir}</a>. Scrub the dates with "
                                  "the Temporal Controller.")
        self.status_label.setText("Forecast done; layers added.")
        self.iface.messageBar().pushMessage(
            "GroundCast", f"Forecast ready: layers added in \u201c{name}\u201d.", Qgis.Success, 6)
        self.backtest_box.setVisible(False)
        return layers

    def show_backtest(self, out_dir: str, metrics: dict | None = None) -> None:
        if not metrics or "models" not in metrics:
            with open(Path(out_dir) / "metrics.json", encoding="utf-8") as handle:
                metrics = json.load(handle)
        self.fill_metrics_table(metrics)
        png = Path(out_dir) / "backtest.png"
        self._backtest_pixmap = QPixmap(str(png)) if png.exists() else None
        self._scale_backtest_image()
        self.backtest_box.setVisible(True)
        url = QUrl.fromLocalFile(out_dir).toString()
        self.result_label.setText(f"Backtest written to <a href='{url}'>{out_dir}</a>.")
        self.tabs.setCurrentIndex(1)
        self.status_label.setText("Backtest done.")
        self.iface.messageBar().pushMessage("GroundCast", "Backtest done: see the skill table in the dock.",
                                            Qgis.Success, 6)

    def fill_metrics_table(self, metrics: dict) -> None:
        horizons = metrics.get("horizons_days") or metrics.get("horizon_days") or []
        models = metrics.get("models", {})
        headers = [(f"{h} d", f"RMSE in mm, {h} days ahead") for h in horizons] + [
            ("Cov.", "Share of held-out values inside MM-STT's 90% interval (ideal 0.90)"),
            ("CRPS", "Continuous ranked probability score of MM-STT, mm (lower is better)"),
            ("Range", "Correlation range MM-STT learned from the data, metres")]
        table = self.metrics_table
        table.clear()
        table.setRowCount(len(MODEL_ROWS))
        table.setColumnCount(len(headers))
        for col, (text, tip) in enumerate(headers):
            item = QTableWidgetItem(text)
            item.setToolTip(tip)
            table.setHorizontalHeaderItem(col, item)
        table.setVerticalHeaderLabels([label for _, label in MODEL_ROWS])
        best = {}
        for col in range(len(horizons)):
            values = [(models.get(key, {}).get("rmse_mm") or [])[col:col + 1] for key, _ in MODEL_ROWS]
            finite = [v[0] for v in values if v and isinstance(v[0], (int, float))]
            best[col] = min(finite) if finite else None
        for row, (key, _) in enumerate(MODEL_ROWS):
            rmse = models.get(key, {}).get("rmse_mm") or []
            for col in range(len(horizons)):
                value = rmse[col] if col < len(rmse) else None
                item = QTableWidgetItem("\u2013" if value is None else f"{value:.2f}")
                if value is not None and value == best[col]:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, col, item)
            extras = [metrics.get("mmstt_coverage90"), metrics.get("mmstt_crps_mm"),
                      metrics.get("variogram_range_m")] if key == "mmstt" else [None, None, None]
            formats = ["{:.2f}", "{:.2f}", "{:,.0f}"]
            for offset, (value, fmt) in enumerate(zip(extras, formats)):
                text = fmt.format(value) if isinstance(value, (int, float)) else "\u2013"
                item = QTableWidgetItem(text)
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, len(horizons) + offset, item)
        table.resizeColumnsToContents()
        table.resizeRowsToContents()
        # all three rows visible, plus room for the horizontal scroll bar of a narrow dock
        header = table.horizontalHeader().sizeHint().height()
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        table.setFixedHeight(header + rows + table.horizontalScrollBar().sizeHint().height()
                             + 2 * table.frameWidth() + 2)
        parts = []
        extras = [(metrics.get("mmstt_coverage90"), "90% coverage {:.2f}"),
                  (metrics.get("mmstt_crps_mm"), "CRPS {:.2f} mm"),
                  (metrics.get("variogram_range_m"), "correlation range {:,.0f} m")]
        summary = [fmt.format(v) for v, fmt in extras if isinstance(v, (int, float))]
        if summary:
            parts.append("MM-STT " + ", ".join(summary))
        for key, label in (("n_points", "points"), ("n_epochs_train", "training epochs")):
            if isinstance(metrics.get(key), (int, float)):
                parts.append(f"{metrics[key]:,} {label}")
        if metrics.get("device"):
            parts.append(f"device {metrics['device']}")
        self.metrics_note.setText("RMSE in mm at each horizon (lower is better, bold is the best). "
                                  + ("; ".join(parts) + "." if parts else ""))

    def _scale_backtest_image(self) -> None:
        if self._backtest_pixmap is None or self._backtest_pixmap.isNull():
            self.backtest_image.clear()
            return
        # the dock's width, not the label's: the label may still be as wide as an earlier pixmap
        width = max(200, min(self.backtest_image.width(), self.width() - 60) - 4)
        smooth = Qt.TransformationMode.SmoothTransformation
        self.backtest_image.setPixmap(self._backtest_pixmap.scaledToWidth(width, smooth))

    def resizeEvent(self, event):  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self._scale_backtest_image()

    # ===================================================================== time series
    def _on_pick_toggled(self, on: bool) -> None:
        if on:
            if self.canvas.mapTool() is not self.pick_tool:
                self._previous_tool = self.canvas.mapTool()
                self.canvas.setMapTool(self.pick_tool)
        elif self.canvas.mapTool() is self.pick_tool:
            self._restore_tool()

    def _on_pick(self, point, _button=None) -> None:
        try:
            self.show_series_at(QgsPointXY(point), self.canvas.mapSettings().destinationCrs())
        except Exception as exc:  # noqa: BLE001 (a slot must not raise into QGIS)
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self._error(f"The time series could not be drawn ({type(exc).__name__}); details are in the log.")

    def show_series_at(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> bool:
        """Plot the point nearest to `point` (within ~8 pixels), else the forecast cell under it."""
        if self.series is None or self.result_crs is None:
            return False
        transform = QgsCoordinateTransform(crs, self.result_crs, QgsProject.instance())
        here = transform.transform(point)
        offset = QgsPointXY(point.x() + 8 * self.canvas.mapUnitsPerPixel(), point.y())
        tolerance = here.distance(transform.transform(offset))
        index = self.series.nearest(here.x(), here.y(), tolerance)
        if index is not None:
            example = self.series.example(index)
        else:
            example = self.series.cell_example(here.x(), here.y())
        if example is None:
            self.status_label.setText("No forecast there: click inside the forecast grid.")
            return False
        self.plot.show_example(example)
        self.tabs.setCurrentIndex(1)
        return True

    def _on_points_selected(self, selected, *_args) -> None:
        layer = self.result_layers.get("points")
        if self.series is None or layer is None or not selected:
            return
        feature = layer.getFeature(selected[0])
        index = self.series.index_of(feature["pid"]) if feature.fields().indexOf("pid") >= 0 else None
        if index is None:
            return
        try:
            self.plot.show_example(self.series.example(index))
        except Exception as exc:  # noqa: BLE001
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self._error(f"The time series could not be drawn ({type(exc).__name__}); details are in the log.")
            return
        self.tabs.setCurrentIndex(1)

    # ===================================================================== misc
    def _error(self, message: str, level=Qgis.Critical) -> None:
        QgsMessageLog.logMessage(message, LOG_TAG, level)
        self.iface.messageBar().pushMessage("GroundCast", message, level, 8)

    def closeEvent(self, event):  # noqa: N802 (Qt API)
        self.save_settings()
        super().closeEvent(event)

    def cleanup(self) -> None:
        """Undo everything the dock put on the canvas (plugin unload)."""
        self.save_settings()
        if self.task is not None:
            for signal in (self.task.succeeded, self.task.failed, self.task.cancelled):
                try:
                    signal.disconnect()
                except TypeError:
                    pass
            self.task.cancel()
            self.task = None
        for tool in (self.aoi_tool, self.pick_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        self.aoi_tool.remove_band()
        scene = self.aoi_band.scene()
        if scene is not None:
            scene.removeItem(self.aoi_band)
        self.aoi_tool.deleteLater()
        self.pick_tool.deleteLater()
        self._cleanup_tmp()
