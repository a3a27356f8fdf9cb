"""Run the engine's forecast or backtest in a QgsTask so QGIS never freezes."""
from __future__ import annotations

import inspect
import traceback

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

LOG_TAG = "GroundCast"
KINDS = ("forecast", "backtest")


def engine_function(kind: str):
    """run_forecast or run_backtest, imported only now: torch loads in the worker, not at startup."""
    from ..engine import pipeline

    return {"forecast": pipeline.run_forecast, "backtest": pipeline.run_backtest}[kind]


def build_config(**params):
    """An engine RunConfig from keyword parameters (the names of RunConfig's fields)."""
    from ..engine.pipeline import RunConfig

    return RunConfig(**params)


def _engine_errors():
    try:
        from ..engine.errors import Cancelled, InputError
    except ImportError:  # engine unusable: no error is "expected"
        class Cancelled(Exception):
            pass

        class InputError(ValueError):
            pass
    return Cancelled, InputError


def _accepts_log(func) -> bool:
    try:
        return "log" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _log_to_qgis(*parts) -> None:
    """The engine's progress notes (training losses, device) go to the log panel, not stdout."""
    QgsMessageLog.logMessage(" ".join(str(p) for p in parts), LOG_TAG, Qgis.Info)


class _TaskProgress:
    """The engine Progress protocol on top of a QgsTask."""

    def __init__(self, task: EngineTask):
        self.task = task

    def progress(self, fraction: float, message: str) -> None:
        self.task.setProgress(100.0 * min(max(float(fraction), 0.0), 1.0))
        if message and message != self.task.message:
            self.task.message = message
            self.task.messageChanged.emit(message)  # queued to the GUI thread

    def should_cancel(self) -> bool:
        return self.task.isCanceled()


class EngineTask(QgsTask):
    """Runs `engine.pipeline.run_<kind>(config, progress)` in the background.

    Signals (all delivered in the GUI thread):
      messageChanged(str): the engine's current step;
      succeeded(dict): the result dict (summary or metrics) after a successful run;
      failed(str): one sentence for the message bar (the traceback, if any, went to the log);
      cancelled(): the user cancelled; the engine wrote nothing.
    `QgsTask.finished(bool)` is a virtual method here, hence `succeeded` rather than `finished`.
    """

    messageChanged = pyqtSignal(str)
    succeeded = pyqtSignal(dict)
    failed = pyqtSignal(str)
    cancelled = pyqtSignal()

    def __init__(self, kind: str, config, runner=None, message_bar=None, description: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown task kind {kind!r}")
        super().__init__(description or f"GroundCast {kind}", QgsTask.Flag.CanCancel)
        self.kind = kind
        self.config = config
        self.runner = runner
        self.message_bar = message_bar
        self.message = ""
        self.result = None
        self.error = ""
        self.was_cancelled = False

    def run(self) -> bool:
        cancelled_error, input_error = _engine_errors()
        try:
            runner = self.runner or engine_function(self.kind)
            kwargs = {"log": _log_to_qgis} if _accepts_log(runner) else {}
            self.result = runner(self.config, _TaskProgress(self), **kwargs)
        except cancelled_error:
            self.was_cancelled = True
            return False
        except input_error as exc:
            self.error = str(exc).strip().splitlines()[0] if str(exc).strip() else "Invalid input."
            QgsMessageLog.logMessage(f"{self.kind}: {self.error}", LOG_TAG, Qgis.Warning)
            return False
        except ImportError as exc:
            self.error = (f"The GroundCast engine cannot start: {exc}. "
                          "See the GroundCast dock for what to install.")
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            return False
        except Exception as exc:  # noqa: BLE001 (a worker must never raise into QGIS)
            if self.isCanceled():
                self.was_cancelled = True
                return False
            first_line = str(exc).splitlines()[0] if str(exc) else "no message"
            self.error = (f"The {self.kind} failed unexpectedly ({type(exc).__name__}: {first_line}); "
                          "details are in the log.")
            QgsMessageLog.logMessage(f"{self.kind} failed:\n{traceback.format_exc()}", LOG_TAG, Qgis.Critical)
            return False
        if self.isCanceled():
            self.was_cancelled = True
            return False
        if not isinstance(self.result, dict):
            self.result = {"result": self.result}
        return True

    def finished(self, result: bool) -> None:  # GUI thread
        if result:
            self.setProgress(100.0)
            self.succeeded.emit(self.result)
        elif self.was_cancelled or self.isCanceled():
            QgsMessageLog.logMessage(f"{self.kind} cancelled; nothing was written.", LOG_TAG, Qgis.Info)
            self.cancelled.emit()
        else:
            message = self.error or f"The {self.kind} stopped without saying why; see the log."
            if self.message_bar is not None:
                self.message_bar.pushMessage("GroundCast", message, Qgis.Critical, 10)
            self.failed.emit(message)
