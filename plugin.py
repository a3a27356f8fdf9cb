"""GroundCast plugin shell: toolbar button, menu entry, dock, Processing provider.

Nothing here imports the engine or torch: QGIS starts fast and a missing dependency only
shows up in the dock, never as a traceback at load.
"""
from __future__ import annotations

import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

LOG_TAG = "GroundCast"
MENU = "&GroundCast"
ICON = Path(__file__).resolve().parent / "resources" / "icon.png"


class GroundCastPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.action = None
        self.report_action = None
        self.dock = None
        self.provider = None
        self.switcher = None

    def initGui(self):  # noqa: N802 (QGIS API)
        self.action = QAction(QIcon(str(ICON)), "GroundCast", self.iface.mainWindow())
        self.action.setObjectName("GroundCastAction")
        self.action.setCheckable(True)
        self.action.setToolTip("GroundCast: forecast ground motion from EGMS points")
        self.action.toggled.connect(self._toggle_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(MENU, self.action)
        self.report_action = QAction("Report\u2026", self.iface.mainWindow())
        self.report_action.setObjectName("GroundCastReportAction")
        self.report_action.setToolTip("Lay out the last forecast's maps and a time series; export PDF or PNG")
        self.report_action.triggered.connect(self.open_report)
        self.iface.addPluginToMenu(MENU, self.report_action)

        self._init_dock()
        self.initProcessing()
        self._init_temporal()

    def _init_dock(self):
        try:
            from .ui.dock import GroundCastDock

            self.dock = GroundCastDock(self.iface, self.iface.mainWindow())
        except Exception:  # noqa: BLE001 (never break QGIS start-up)
            self._log_failure("The GroundCast panel could not be created")
            return
        self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()  # QGIS shows added docks; ours opens from the button
        self.dock.visibilityChanged.connect(self.action.setChecked)

    def initProcessing(self):  # noqa: N802 (QGIS API: qgis_process calls only this, with iface None)
        if self.provider is not None:
            return
        try:
            from .ui.provider import GroundCastProvider

            self.provider = GroundCastProvider()
            if not QgsApplication.processingRegistry().addProvider(self.provider):
                self.provider = None
        except Exception:  # noqa: BLE001 (toolbox entries are optional; the dock still works)
            self.provider = None
            self._log_failure("The GroundCast Processing tools could not be registered")

    def _init_temporal(self):
        try:
            from .ui.layers import TemporalBandSwitcher

            self.switcher = TemporalBandSwitcher(self.iface.mapCanvas())
        except Exception:  # noqa: BLE001
            self.switcher = None
            self._log_failure("Forecast dates cannot follow the Temporal Controller")

    def _log_failure(self, sentence: str):
        QgsMessageLog.logMessage(f"{sentence}:\n{traceback.format_exc()}", LOG_TAG, Qgis.Critical)
        if self.iface is not None:  # None under qgis_process
            self.iface.messageBar().pushMessage("GroundCast", f"{sentence}; see the GroundCast log.",
                                                Qgis.Warning, 8)

    def _toggle_dock(self, checked: bool):
        if self.dock is None:
            return
        self.dock.setVisible(checked)
        if checked:
            self.dock.raise_()

    def open_report(self):
        """The dock's Report…: the last forecast, or a forecast folder the user picks."""
        if self.dock is None:
            return None
        return self.dock.open_report()

    def unload(self):
        if self.switcher is not None:
            self.switcher.stop()
            self.switcher.deleteLater()
            self.switcher = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.hide()
            self.dock.setParent(None)  # gone from the main window at once, deleted later
            self.dock.deleteLater()
            self.dock = None
        if self.report_action is not None:
            self.iface.removePluginMenu(MENU, self.report_action)
            self.report_action.setParent(None)
            self.report_action.deleteLater()
            self.report_action = None
        if self.action is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.setParent(None)
            self.action.deleteLater()
            self.action = None
