"""Area panel: the area of interest, drawn, taken from selected polygons or the canvas extent."""
from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDistanceArea,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout

from ..aoi_tool import AoiMapTool, make_aoi_band
from .common import form, narrow


def area_text(geometry: QgsGeometry, crs: QgsCoordinateReferenceSystem) -> str:
    measure = QgsDistanceArea()
    measure.setSourceCrs(crs, QgsProject.instance().transformContext())
    measure.setEllipsoid(QgsProject.instance().ellipsoid() or "EPSG:7030")
    km2 = measure.measureArea(geometry) / 1e6
    return f"{km2:.2f} km\u00b2" if km2 < 100 else f"{km2:,.0f} km\u00b2"


class AreaPanel(QGroupBox):
    """Holds the AOI (geometry, CRS, name) and shows it as a rubber band until a run's layer does."""

    problem = pyqtSignal(str)

    def __init__(self, canvas, tools, parent=None):
        super().__init__("Area of interest", parent)
        self.canvas = canvas
        self.tools = tools
        self.geometry = None  # in `crs`
        self.crs = None
        self.name = ""
        self.selection_layer_id = None  # the layer whose selection made the area
        self.band = make_aoi_band(canvas)
        self.tool = AoiMapTool(canvas)
        tools.own(self.tool)
        self.tool.polygonFinished.connect(self._on_polygon_drawn)
        self.tool.cancelled.connect(tools.restore)

        layout = QVBoxLayout(self)
        grid = QGridLayout()
        self.draw_button = QPushButton("Draw")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Click corners on the map; right click finishes, Backspace undoes, "
                                    "Esc cancels")
        self.draw_button.toggled.connect(self._on_draw_toggled)
        self.tool.deactivated.connect(lambda: self.draw_button.setChecked(False))
        self.selection_button = QPushButton("Selected features")
        self.selection_button.setToolTip("Use the selected polygons of the polygon layer below")
        self.selection_button.clicked.connect(self.use_selected_features)
        self.extent_button = QPushButton("Canvas extent")
        self.extent_button.clicked.connect(self.use_canvas_extent)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        grid.addWidget(self.draw_button, 0, 0)
        grid.addWidget(self.selection_button, 0, 1)
        grid.addWidget(self.extent_button, 1, 0)
        grid.addWidget(self.clear_button, 1, 1)
        layout.addLayout(grid)
        layer_form = form()
        self.layer_combo = narrow(QgsMapLayerComboBox())
        self.layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.layer_combo.setToolTip("Polygon layer whose selected features make the area")
        layer_form.addRow("Polygon layer", self.layer_combo)
        layout.addLayout(layer_form)
        self.label = QLabel()
        self.label.setWordWrap(True)
        layout.addWidget(self.label)
        self.set_area(None, None, "")

    def _on_draw_toggled(self, on: bool) -> None:
        if on:
            self.tools.use(self.tool)
        else:
            self.tools.release(self.tool)

    def _on_polygon_drawn(self, geometry: QgsGeometry) -> None:
        self.set_area(geometry, self.canvas.mapSettings().destinationCrs(), "Drawn area")
        self.tools.restore()

    def set_area(self, geometry, crs: QgsCoordinateReferenceSystem, name: str) -> None:
        """Use `geometry` (in `crs`) as the AOI and outline it on the canvas; None clears it."""
        self.selection_layer_id = None
        if geometry is None or geometry.isEmpty():
            self.geometry, self.crs, self.name = None, None, ""
            self.band.reset(QgsWkbTypes.PolygonGeometry)
            self.label.setText("No area set: every point of the layer is used.")
            return
        self.geometry, self.crs, self.name = QgsGeometry(geometry), crs, name
        shown = QgsGeometry(geometry)
        canvas_crs = self.canvas.mapSettings().destinationCrs()
        if crs != canvas_crs:
            shown.transform(QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()))
        self.band.setToGeometry(shown, None)
        self.band.show()
        self.label.setText(f"Area: {name}, {area_text(geometry, crs)}.")

    def clear(self) -> None:
        self.tool.clear()
        self.set_area(None, None, "")

    def use_selected_features(self) -> None:
        layer = self.layer_combo.currentLayer()
        if layer is None or layer.selectedFeatureCount() == 0:
            self.problem.emit("Select one or more polygons of the chosen polygon layer first.")
            return
        geometry = QgsGeometry.unaryUnion([f.geometry() for f in layer.getSelectedFeatures()])
        if geometry is None or geometry.isEmpty():
            self.problem.emit("The selected features have no polygon shape.")
            return
        count = layer.selectedFeatureCount()
        name = f"{layer.name()} ({count} selected)" if count > 1 else layer.name()
        self.set_area(geometry, layer.crs(), name)
        self.selection_layer_id = layer.id()

    def use_canvas_extent(self) -> None:
        extent = QgsRectangle(self.canvas.extent())
        crs = self.canvas.mapSettings().destinationCrs()
        self.set_area(QgsGeometry.fromRect(extent), crs, "Canvas extent")

    def text(self) -> str | None:
        """The AOI as "EPSG:xxxx;WKT" for RunConfig.aoi (EPSG:4326 when the CRS has no EPSG code)."""
        if self.geometry is None:
            return None
        geometry, crs = QgsGeometry(self.geometry), self.crs
        if not crs.authid().upper().startswith("EPSG:"):
            target = QgsCoordinateReferenceSystem("EPSG:4326")
            geometry.transform(QgsCoordinateTransform(crs, target, QgsProject.instance()))
            crs = target
        return f"{crs.authid()};{geometry.asWkt(6)}"

    def shown_by_layer(self) -> None:
        """A run's AOI layer now outlines the area: hide the band and the selection that made it."""
        self.band.hide()
        layer = QgsProject.instance().mapLayer(self.selection_layer_id) if self.selection_layer_id else None
        if layer is not None:
            layer.removeSelection()

    def cleanup(self) -> None:
        self.tool.remove_band()
        scene = self.band.scene()
        if scene is not None:
            scene.removeItem(self.band)
        self.tool.deleteLater()
