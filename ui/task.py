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
    from ..engine import run

    return {"forecast": run.run_forecast, "backtest": run.run_backtest}[kind]


def build_config(**params):
    """An engine RunConfig from keyword parameters (the names of RunConfig's fields)."""
    from ..engine.params import RunConfig

    return RunConfig.from_values(params)


def user_words(message: str) -> str:
    """An engine sentence for a form's reader: a command-line flag becomes the setting's label."""
    from ..engine.params import PARAMETERS

    flags = {p.cli_flag: f"\u201c{p.label}\u201d" for p in PARAMETERS}
    for p in PARAMETERS:
        if p.kind == "bool":
            flags["--no-" + p.cli_flag[2:]] = f"\u201c{p.label}\u201d off"
    for flag in sorted(flags, key=len, reverse=True):  # --geology-field before --geology
        message = message.replace(flag, flags[flag])
    return message


def run_engine(command: str, config, progress=None, log=None) -> dict:
    """The one way the dock's task and Processing run the engine.

    Checks `config` against PARAMETERS, then runs the forecast or backtest with the time left
    added to the progress messages. Returns the summary (forecast) or the metrics (backtest).
    Raises the engine's InputError / Cancelled; callers turn them into their own messages.
    """
    from ..engine.progress import with_time_left

    config.check(command)
    result = engine_function(command)(config, with_time_left(progress), log=log or _log_to_qgis)
    return result if isinstance(result, dict) else {"result": result}


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
    """Runs `engine.run.run_<kind>(config, progress)` in the background.

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
        """`runner(config, progress[, log])` replaces run_engine (tests)."""
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
            if self.runner is None:
                self.result = run_engine(self.kind, self.config, _TaskProgress(self))
            else:
                kwargs = {"log": _log_to_qgis} if _accepts_log(self.runner) else {}
                self.result = self.runner(self.config, _TaskProgress(self), **kwargs)
        except cancelled_error:
            return self._end_cancelled()
        except input_error as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "Invalid input."
            self.error = user_words(first_line)
            QgsMessageLog.logMessage(f"{self.kind}: {self.error}", LOG_TAG, Qgis.Warning)
            return False
        except ImportError as exc:
            self.error = (f"The GroundCast engine cannot start: {exc}. "
                          "See the GroundCast dock for what to install.")
            QgsMessageLog.logMessage(traceback.format_exc(), LOG_TAG, Qgis.Critical)
            return False
        except Exception as exc:  # noqa: BLE001 (a worker must never raise into QGIS)
            if self.isCanceled():
                return self._end_cancelled()
            first_line = str(exc).splitlines()[0] if str(exc) else "no message"
            self.error = (f"The {self.kind} failed unexpectedly ({type(exc).__name__}: {first_line}); "
                          "details are in the log.")
            QgsMessageLog.logMessage(f"{self.kind} failed:\n{traceback.format_exc()}", LOG_TAG, Qgis.Critical)
            return False
        if self.isCanceled():
            return self._end_cancelled()
        if self.kind == "forecast":
            self._build_point_timeline()
        if not isinstance(self.result, dict):
            self.result = {"result": self.result}
        return True

    def _build_point_timeline(self) -> None:
        """The points' per-date layer, here in the background, so adding the layers stays quick.
        A failure costs only the points' timeline (they stay fixed at the horizon), never the run."""
        from .layers import build_point_timeline

        class Stop(Exception):
            pass

        def step(_fraction: float) -> None:  # the bar stays full: the forecast itself is done
            if self.isCanceled():
                raise Stop
        _TaskProgress(self).progress(1.0, "preparing the points' timeline")
        try:
            build_point_timeline(self.config.out_dir, step)
        except Stop:
            pass
        except Exception:  # noqa: BLE001 (the forecast is written; only the timeline is lost)
            QgsMessageLog.logMessage(f"points' timeline:\n{traceback.format_exc()}", LOG_TAG, Qgis.Warning)

    def _end_cancelled(self) -> bool:
        """A cancelled run ends cleanly (nothing written), so the task reports success, not failure.

        QgsTask has no "cancelled" status: returning False would make QGIS's task bar say
        "Task failed" while the dock says "Cancelled". The description says what happened.
        """
        self.was_cancelled = True
        self.result = None
        self.setDescription(f"{self.description()} (cancelled, nothing written)")
        return True

    def finished(self, result: bool) -> None:  # GUI thread
        if self.was_cancelled:
            QgsMessageLog.logMessage(f"{self.kind} cancelled; nothing was written.", LOG_TAG, Qgis.Info)
            self.cancelled.emit()
        elif result:
            self.setProgress(100.0)
            self.succeeded.emit(self.result)
        else:
            message = self.error or f"The {self.kind} stopped without saying why; see the log."
            if self.message_bar is not None:
                self.message_bar.pushMessage("GroundCast", message, Qgis.Critical, 10)
            self.failed.emit(message)
