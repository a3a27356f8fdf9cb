"""The GroundCast Processing provider: toolbox, Model Designer and qgis_process."""
from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS

ICON = os.path.join(os.path.dirname(os.path.dirname(__file__)), "resources", "icon.png")


class GroundCastProvider(QgsProcessingProvider):
    def id(self):
        return "groundcast"

    def name(self):
        return "GroundCast"

    def longName(self):
        return "GroundCast ground-motion forecasts"

    def icon(self):
        return QIcon(ICON)

    def svgIconPath(self):
        return ICON

    def loadAlgorithms(self):
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
