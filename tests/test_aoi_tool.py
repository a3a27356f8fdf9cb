"""The AOI map tool builds a polygon from simulated canvas clicks; Esc and Backspace work."""
from __future__ import annotations

import pytest

from qgis.core import QgsCoordinateReferenceSystem, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from qgis.PyQt.QtGui import QKeyEvent

from groundcast.ui.aoi_tool import AoiMapTool

PIXELS = [(100, 100), (400, 120), (380, 400), (120, 380)]


@pytest.fixture()
def canvas(qgis_canvas):
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    qgis_canvas.setExtent(QgsRectangle(4_500_000, 1_700_000, 4_508_000, 1_706_000))
    qgis_canvas.refresh()
    return qgis_canvas


@pytest.fixture()
def tool(canvas):
    tool = AoiMapTool(canvas)
    canvas.setMapTool(tool)
    yield tool
    canvas.unsetMapTool(tool)
    tool.remove_band()


def click(tool, canvas, xy, button=Qt.LeftButton):
    pos = QPoint(*xy)
    tool.canvasPressEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonPress, pos, button, button))
    tool.canvasReleaseEvent(QgsMapMouseEvent(canvas, QEvent.MouseButtonRelease, pos, button, Qt.NoButton))


def move(tool, canvas, xy):
    tool.canvasMoveEvent(QgsMapMouseEvent(canvas, QEvent.MouseMove, QPoint(*xy), Qt.NoButton, Qt.NoButton))


def key(tool, code):
    event = QKeyEvent(QEvent.KeyPress, code, Qt.NoModifier)
    tool.keyPressEvent(event)
    return event


def test_clicks_build_polygon_in_canvas_crs(tool, canvas):
    finished = []
    tool.polygonFinished.connect(finished.append)
    for xy in PIXELS:
        click(tool, canvas, xy)
        move(tool, canvas, (xy[0] + 5, xy[1] + 5))
    assert len(tool.vertices) == 4
    assert tool.band.numberOfVertices() == 5  # the four clicks plus the vertex following the mouse
    click(tool, canvas, (0, 0), Qt.RightButton)

    assert len(finished) == 1
    polygon = finished[0]
    assert polygon.type() == QgsWkbTypes.PolygonGeometry and polygon.isGeosValid()
    to_map = canvas.getCoordinateTransform()
    expected = [to_map.toMapCoordinates(*xy) for xy in PIXELS]
    ring = polygon.asPolygon()[0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    for got, want in zip(ring, expected):
        assert got.distance(want) < 1e-6
    assert polygon.boundingBox().xMinimum() > 4e6  # EPSG:3035 metres, not pixels
    assert polygon.area() > 1e6
    assert tool.vertices == [] and tool.band.numberOfVertices() == 0


def test_needs_three_vertices(tool, canvas):
    finished = []
    tool.polygonFinished.connect(finished.append)
    click(tool, canvas, PIXELS[0])
    click(tool, canvas, PIXELS[1])
    click(tool, canvas, (0, 0), Qt.RightButton)
    assert finished == [] and len(tool.vertices) == 2  # still drawing


def test_escape_cancels_and_clears(tool, canvas):
    finished, cancelled = [], []
    tool.polygonFinished.connect(finished.append)
    tool.cancelled.connect(lambda: cancelled.append(True))
    for xy in PIXELS[:3]:
        click(tool, canvas, xy)
    assert key(tool, Qt.Key_Escape).isAccepted()
    assert tool.vertices == [] and tool.band.numberOfVertices() == 0
    assert cancelled == [True]
    click(tool, canvas, (0, 0), Qt.RightButton)
    assert finished == []


def test_backspace_removes_last_vertex(tool, canvas):
    for xy in PIXELS[:3]:
        click(tool, canvas, xy)
    key(tool, Qt.Key_Backspace)
    assert len(tool.vertices) == 2
    assert tool.vertices[-1].distance(canvas.getCoordinateTransform().toMapCoordinates(*PIXELS[1])) < 1e-6
