"""Inputs panel: the EGMS points (a layer, or a file opened in a task) and the optional priors."""
from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsFieldProxyModel,
    QgsMapLayerProxyModel,
    QgsProject,
)
from qgis.gui import QgsFieldComboBox, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QVariant, pyqtSignal
from qgis.PyQt.QtWidgets import QFileDialog, QGroupBox, QHBoxLayout, QLabel, QPushButton

from ...engine.params import parameter
from .. import settings
from ..layer_io import LayerExportError, LoadPointsTask, date_fields, layer_to_path, points_file
from .common import UserError, form, narrow, plural

OK_COLOUR, BAD_COLOUR = "#1b6e20", "#8a1c1c"


class InputsPanel(QGroupBox):
    """Emits readyChanged(bool) when the points become usable or not, problem(str) for the bar."""

    readyChanged = pyqtSignal(bool)
    problem = pyqtSignal(str)

    def __init__(self, parent=None):
        super().__init__("Inputs", parent)
        self.dates = []
        self.points_ok = False
        self.load_task = None
        self.exported = {}  # {temporary file handed to the engine: the layer's name}
        layout = form()

        self.points_combo = narrow(QgsMapLayerComboBox())
        self.points_combo.setFilters(QgsMapLayerProxyModel.PointLayer)
        self.points_combo.setAllowEmptyLayer(True)
        self.points_combo.setToolTip(parameter("points").help)
        self.points_combo.layerChanged.connect(self._on_points_changed)
        layout.addRow(parameter("points").label, self.points_combo)
        self.open_button = QPushButton("Open EGMS file\u2026")
        self.open_button.setToolTip("Load an EGMS download (.zip or .csv) as a point layer")
        self.open_button.clicked.connect(self._open_dialog)
        self.points_info = QLabel()
        self.points_info.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.points_info, 1)
        row.addWidget(self.open_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addRow(row)

        self.dem_combo = narrow(QgsMapLayerComboBox())
        self.dem_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.dem_combo.setAllowEmptyLayer(True)
        self.dem_combo.setLayer(None)
        self.dem_combo.setToolTip(parameter("dem").help)
        layout.addRow(f"{parameter('dem').label} (optional)", self.dem_combo)
        self.geology_combo, self.geology_field = self._polygons_with_field("geology")
        layout.addRow(f"{parameter('geology').label} (optional)", self.geology_combo)
        layout.addRow("  " + parameter("geology_field").label, self.geology_field)
        self.soil_combo, self.soil_field = self._polygons_with_field("soil")
        layout.addRow(f"{parameter('soil').label} (optional)", self.soil_combo)
        layout.addRow("  " + parameter("soil_field").label, self.soil_field)
        self.setLayout(layout)
        self._on_points_changed()

    def _polygons_with_field(self, name: str):
        combo = narrow(QgsMapLayerComboBox())
        combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        combo.setAllowEmptyLayer(True)
        combo.setLayer(None)
        combo.setToolTip(parameter(name).help)
        field = narrow(QgsFieldComboBox())
        field.setFilters(QgsFieldProxyModel.String | QgsFieldProxyModel.Int | QgsFieldProxyModel.LongLong)
        field.setToolTip(parameter(f"{name}_field").help)

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

    # -- the points ---------------------------------------------------------------------------
    def _open_dialog(self) -> None:
        start = settings.read(settings.LAST_POINTS_DIR, str(Path.home()))
        path, _ = QFileDialog.getOpenFileName(self, "Open EGMS file", start,
                                              "EGMS downloads (*.zip *.csv);;All files (*)")
        if path:
            settings.write(settings.LAST_POINTS_DIR, str(Path(path).parent))
            self.open_points_file(path)

    def open_points_file(self, path: str) -> LoadPointsTask | None:
        """Open `path` in a background task; the layer joins the project only if the engine reads it.

        Returns the task (None while another file is still opening)."""
        if self.load_task is not None:
            return None
        task = LoadPointsTask(path)
        task.loaded.connect(self._on_loaded)
        task.failed.connect(self._on_load_failed)
        self.load_task = task
        self.open_button.setEnabled(False)
        self._say(f"Opening {Path(path).name}\u2026", OK_COLOUR)
        QgsApplication.taskManager().addTask(task)
        return task

    def _load_over(self) -> None:
        self.load_task = None
        self.open_button.setEnabled(True)

    def _on_loaded(self, layer) -> None:
        self._load_over()
        project = QgsProject.instance()
        # at the top of the layer tree, never inside whatever group happens to be selected
        project.addMapLayer(layer, False)
        project.layerTreeRoot().insertLayer(0, layer)
        self.points_combo.setLayer(layer)

    def _on_load_failed(self, message: str) -> None:
        self._load_over()
        self._on_points_changed()
        self.problem.emit(message)

    def _say(self, text: str, colour: str) -> None:
        self.points_info.setText(f"<span style='color:{colour}'>{text}</span>")

    def _on_points_changed(self, *_args) -> None:
        layer = self.points_combo.currentLayer()
        self.dates = date_fields(layer)
        if layer is None:
            self._say("Choose a point layer or open an EGMS file.", BAD_COLOUR)
        elif not self.dates:
            self._say("This layer has no date fields (named yyyymmdd or Dyyyymmdd), so it holds no "
                      "displacement series; choose an EGMS layer.", BAD_COLOUR)
        else:
            self._say(f"{plural(len(self.dates), 'date')}, {self.dates[0]:%Y-%m-%d} to "
                      f"{self.dates[-1]:%Y-%m-%d}; {plural(layer.featureCount(), 'point')}.", OK_COLOUR)
        self.points_ok = layer is not None and bool(self.dates)
        self.readyChanged.emit(self.points_ok)

    @property
    def first_observation(self):
        return self.dates[0] if self.dates else None

    @property
    def last_observation(self):
        return self.dates[-1] if self.dates else None

    # -- values for the run -----------------------------------------------------------------------
    def points_name(self) -> str:
        layer = self.points_combo.currentLayer()
        return layer.name() if layer is not None else ""

    def values(self, tmp_dir: str) -> dict:
        """{points, dem, geology, geology_field, soil, soil_field} as files the engine reads."""
        layer = self.points_combo.currentLayer()
        if layer is None or not self.dates:
            raise UserError("Choose an EGMS point layer with date fields first.")
        self.exported = {}
        values = {"points": self._file(layer, tmp_dir, points_file)}
        dem = self.dem_combo.currentLayer()
        values["dem"] = self._file(dem, tmp_dir) if dem is not None else None
        for name, combo, field in (("geology", self.geology_combo, self.geology_field),
                                   ("soil", self.soil_combo, self.soil_field)):
            layer = combo.currentLayer()
            values[name] = values[f"{name}_field"] = None
            if layer is None:
                continue
            if not field.currentField():
                raise UserError(f"Choose the {parameter(name + '_field').label.lower()} of "
                                f"\u201c{layer.name()}\u201d.")
            values[name] = self._file(layer, tmp_dir)
            values[f"{name}_field"] = field.currentField()
        return values

    def _file(self, layer, tmp_dir: str, how=layer_to_path) -> str:
        try:
            path = how(layer, tmp_dir)
        except LayerExportError as exc:
            raise UserError(f"The layer \u201c{layer.name()}\u201d could not be handed to the engine: "
                            f"{exc}.") from exc
        if path.startswith(tmp_dir):
            self.exported[path] = layer.name()
        return path
