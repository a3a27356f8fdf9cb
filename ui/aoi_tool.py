"""Map tool to draw the area of interest as a polygon on the canvas."""
from __future__ import annotations

from qgis.core import QgsGeometry, QgsPointXY, QgsWkbTypes
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

AOI_STROKE = QColor(255, 140, 0)
AOI_FILL = QColor(255, 140, 0, 40)


def make_aoi_band(canvas) -> QgsRubberBand:
    """An orange outline with a light fill: visible over both red and blue forecasts."""
    band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
    band.setStrokeColor(AOI_STROKE)
    band.setFillColor(AOI_FILL)
    band.setWidth(2)
    return band


class AoiMapTool(QgsMapTool):
    """Left click adds a vertex, right click finishes, Backspace undoes, Esc cancels.

    Emits `polygonFinished(QgsGeometry)` in the canvas CRS once at least 3 vertices exist.
    """

    polygonFinished = pyqtSignal(QgsGeometry)
    cancelled = pyqtSignal()

    def __init__(self, canvas):
        super().__init__(canvas)
        self.vertices = []
        self.band = make_aoi_band(canvas)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # -- drawing -------------------------------------------------------------------------
    def _redraw(self, hover=None) -> None:
        points = list(self.vertices) + ([hover] if hover is not None else [])
        self.band.reset(QgsWkbTypes.PolygonGeometry)
        for i, point in enumerate(points):
            self.band.addPoint(point, i == len(points) - 1)

    def canvasMoveEvent(self, event):  # noqa: N802 (Qt API)
        if self.vertices:
            self._redraw(event.mapPoint())

    def canvasReleaseEvent(self, event):  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.vertices.append(QgsPointXY(event.mapPoint()))
            self._redraw()
        elif event.button() == Qt.MouseButton.RightButton:
            self.finish()

    def keyPressEvent(self, event):  # noqa: N802
        if event.key() == Qt.Key.Key_Escape:
            self.clear()
            self.cancelled.emit()
            event.accept()
        elif event.key() in (Qt.Key.Key_Backspace, Qt.Key.Key_Delete):
            if self.vertices:
                self.vertices.pop()
                self._redraw()
            event.accept()
        else:
            event.ignore()

    # -- state ---------------------------------------------------------------------------
    def finish(self) -> None:
        if len(self.vertices) < 3:
            return  # a line is not an area; keep drawing
        ring = list(self.vertices) + [self.vertices[0]]
        geometry = QgsGeometry.fromPolygonXY([ring])
        if not geometry.isGeosValid():
            geometry = geometry.makeValid()
        self.clear()
        self.polygonFinished.emit(geometry)

    def clear(self) -> None:
        self.vertices = []
        self.band.reset(QgsWkbTypes.PolygonGeometry)

    def deactivate(self):
        self.clear()
        super().deactivate()

    def remove_band(self) -> None:
        """Take the rubber band off the canvas for good (plugin unload)."""
        scene = self.band.scene()
        if scene is not None:
            scene.removeItem(self.band)
