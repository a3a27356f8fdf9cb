"""The GroundCast dock: the panels of ui/panels/ put together, and the run they start.

The panels gather inputs, area and parameters; the dock turns them into one typed RunConfig,
hands it to ui/task.py's EngineTask and shows what the engine wrote. The forecasting itself
lives in engine/.
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QFileDialog, QFrame, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ..engine.errors import InputError
from ..engine.params import RunConfig
from . import settings
from . import task as task_module
from .deps import MissingPackagesBox
from .panels.area import AreaPanel
from .panels.common import LOG_TAG, ToolSwitch, UserError
from .panels.inputs import InputsPanel
from .panels.parameters import ParametersPanel
from .panels.results import ResultsPanel
from .panels.run import RunPanel

SETUP_TAB, RESULTS_TAB = 0, 1

# Engine sentences written for the command line, said the way the dock shows the same choice.
DOCK_WORDS = [
    (re.compile("(?:--device|\u201cDevice\u201d) cuda was asked for, but torch finds no CUDA GPU on this "
                r"machine\.?"),
     "Device is set to GPU (CUDA), but this computer has no CUDA GPU that PyTorch can use; choose "
     "Auto or CPU under Advanced."),
]


def user_words(message: str, aoi_name: str = "", files: dict | None = None) -> str:
    """An engine sentence in the dock's words: its labels for CLI flags, the area's and layers' names
    for the text and temporary files the dock handed over."""
    for pattern, words in DOCK_WORDS:
        message = pattern.sub(words, message)
    name = f"\u201c{aoi_name}\u201d" if aoi_name else "you set"
    message = re.sub(r"(the )?area of interest WKT text", f"the area of interest {name}", message)
    message = re.sub(r"area of interest 'EPSG:\d+;[^']*'", f"the area of interest {name}", message)
    for path, layer_name in (files or {}).items():
        message = message.replace(path, f"the layer \u201c{layer_name}\u201d")
    message = task_module.user_words(message)
    return message[:1].upper() + message[1:]


def _scrolled(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)  # never cut off silently
    area.setWidget(widget)
    return area


class GroundCastDock(QgsDockWidget):
    def __init__(self, iface, parent=None):
        super().__init__("GroundCast", parent)
        self.setObjectName("GroundCastDock")
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.task = None
        self.tmp_dir = None
        self.running = None  # {"kind", "config", "aoi_name", "files"} of the run in progress
        self.tools = ToolSwitch(self.canvas)

        self.deps = MissingPackagesBox(iface.messageBar(), on_status=self._status,
                                       changed=lambda missing: self._update_buttons())
        self.inputs = InputsPanel()
        self.area = AreaPanel(self.canvas, self.tools)
        self.parameters = ParametersPanel()
        self.run_panel = RunPanel()
        self.results = ResultsPanel(self.canvas, self.tools)
        for panel in (self.inputs, self.area, self.results):
            panel.problem.connect(lambda message: self._error(message, Qgis.Warning))
        self.inputs.readyChanged.connect(lambda ok: self._update_buttons())
        self.run_panel.startRequested.connect(self.start)
        self.run_panel.cancelRequested.connect(self.cancel)
        self.results.reportRequested.connect(self.open_report)

        setup = QWidget()
        setup_layout = QVBoxLayout(setup)
        setup_layout.setContentsMargins(2, 2, 2, 2)
        for panel in (self.inputs, self.area, self.parameters):
            setup_layout.addWidget(panel)
        setup_layout.addStretch(1)
        self.tabs = QTabWidget()
        self.tabs.addTab(_scrolled(setup), "Set up")
        self.tabs.addTab(_scrolled(self.results), "Results")
        root = QWidget()
        outer = QVBoxLayout(root)
        outer.setContentsMargins(4, 4, 4, 4)
        outer.addWidget(self.deps.widget)
        outer.addWidget(self.tabs, 1)
        outer.addWidget(self.run_panel)
        self.setWidget(root)
        self.setMinimumWidth(360)  # every button label and the 2-column forms fit without scrolling
        self.deps.refresh()
        self._update_buttons()

    # -- state --------------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        ready = self.inputs.points_ok and not self.deps.missing
        self.run_panel.set_state(ready=ready, running=self.task is not None)

    def _status(self, text: str) -> None:
        self.run_panel.set_status(text)

    def _error(self, message: str, level=Qgis.Critical) -> None:
        QgsMessageLog.logMessage(message, LOG_TAG, level)
        self.iface.messageBar().pushMessage("GroundCast", message, level, 8)

    def save_settings(self) -> None:
        self.parameters.save()

    # -- the run --------------------------------------------------------------------------------
    def run_config(self, kind: str) -> RunConfig:
        """The typed RunConfig of what the panels show; layers that are not plain files are
        exported to tmp_dir. Raises UserError or the engine's InputError, in the user's words."""
        values = self.parameters.values(kind, self.inputs.first_observation, self.inputs.last_observation)
        stamp = dt.datetime.now().strftime("%Y%m%d_%H%M%S")
        values["out_dir"] = str(Path(values["out_dir"]).expanduser() / f"{kind}_{stamp}")
        self.tmp_dir = self.tmp_dir or tempfile.mkdtemp(prefix="groundcast_inputs_")
        values.update(self.inputs.values(self.tmp_dir))
        values["aoi"] = self.area.text()
        config = RunConfig.from_values(values)
        config.check(kind)
        from ..engine.results import check_output_folder

        check_output_folder(config, kind)  # before the task: a folder that cannot take the result
        return config

    def start(self, kind: str):
        """Start a forecast or backtest task; returns the task, or None when it could not start."""
        if self.task is not None:
            return None
        self.save_settings()
        aoi_name = self.area.name or self.inputs.points_name()
        try:
            config = self.run_config(kind)
        except (UserError, InputError) as exc:
            self._cleanup_tmp()
            self._error(user_words(str(exc), aoi_name, self.inputs.exported), Qgis.Warning)
            return None
        except Exception as exc:  # noqa: BLE001 (engine missing or broken: say so, keep QGIS running)
            self._cleanup_tmp()
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self._error(f"The GroundCast engine could not be prepared ({type(exc).__name__}: {exc}).")
            return None
        self.running = {"kind": kind, "config": config, "aoi_name": aoi_name,
                        "files": dict(self.inputs.exported)}
        task = task_module.EngineTask(kind, config, description=f"GroundCast {kind}")
        task.progressChanged.connect(self.run_panel.set_progress)
        task.messageChanged.connect(self._status)
        task.succeeded.connect(self._on_succeeded)
        task.failed.connect(self._on_failed)
        task.cancelled.connect(self._on_cancelled)
        self.task = task
        self.run_panel.set_progress(0)
        self._status(f"Starting the {kind}\u2026")
        self._update_buttons()
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        if self.task is not None:
            self._status("Cancelling\u2026")
            self.run_panel.cancel_button.setEnabled(False)
            self.task.cancel()

    def _task_over(self) -> dict:
        running, self.running = self.running or {}, None
        self.task = None
        self._cleanup_tmp()
        self._update_buttons()
        return running

    def _cleanup_tmp(self) -> None:
        if self.tmp_dir:
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
            self.tmp_dir = None

    def _on_cancelled(self) -> None:
        self._task_over()
        self.run_panel.set_progress(0)
        self._status("Cancelled; nothing was written.")

    def _on_failed(self, message: str) -> None:
        running = self._task_over()
        self.run_panel.set_progress(0)
        message = user_words(message, running.get("aoi_name", ""), running.get("files"))
        self._status(message)
        self._error(message)

    def _on_succeeded(self, result: dict) -> None:
        running = self._task_over()
        config = running.get("config")
        out_dir = config.out_dir if config is not None else ""
        try:
            if running.get("kind") == "backtest":
                self.show_backtest(out_dir)
            else:
                self.show_forecast(out_dir, running.get("aoi_name", ""), config.aoi if config else None)
        except Exception as exc:  # noqa: BLE001 (results exist on disk; say where)
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            self._error(f"The run finished but its results could not be shown ({exc}); "
                        f"they are in {out_dir}.")
            self._status(f"Finished; results in {out_dir}.")

    # -- results ------------------------------------------------------------------------------
    def show_forecast(self, out_dir: str, aoi_name: str = "", aoi=None) -> dict:
        """Add the styled layers of the forecast in `out_dir` and switch to the Results tab."""
        layers = self.results.show_forecast(out_dir, aoi_name, aoi)
        if layers.get("aoi") is not None:
            self.area.shown_by_layer()
        self.tabs.setCurrentIndex(RESULTS_TAB)
        self._status("Forecast done; layers added.")
        group = layers.get("group")
        where = f" in \u201c{group.name()}\u201d" if group is not None else ""
        self.iface.messageBar().pushMessage("GroundCast", f"Forecast ready: layers added{where}.",
                                            Qgis.Success, 6)
        return layers

    def show_backtest(self, out_dir: str) -> None:
        self.results.show_backtest(out_dir)
        self.tabs.setCurrentIndex(RESULTS_TAB)
        self._status("Backtest done.")
        self.iface.messageBar().pushMessage("GroundCast", "Backtest done: see the skill table in the dock.",
                                            Qgis.Success, 6)

    def open_report(self):
        """The report dialog for the last forecast; without one, the user picks a forecast folder."""
        out_dir = self.results.forecast_dir
        result_layers = self.results.result_layers if out_dir else None
        if not out_dir:
            start = settings.read(settings.LAST_REPORT_DIR, str(Path.home()))
            out_dir = QFileDialog.getExistingDirectory(self, "Forecast folder to report on", start)
            if not out_dir:
                return None
            settings.write(settings.LAST_REPORT_DIR, out_dir)
        try:
            from .report_dialog import open_report_dialog
        except ImportError as exc:
            self._error(f"The report cannot be made here ({exc}).")
            return None
        return open_report_dialog(self.iface, out_dir, parent=self, result_layers=result_layers,
                                  backtest_dir=self.results.backtest_dir)

    # -- leaving ------------------------------------------------------------------------------
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
        self.tools.remove_all()
        self.area.cleanup()
        self.results.cleanup()
        self._cleanup_tmp()
