"""EngineTask: progress and cancel through the engine's Progress protocol, errors to the message bar."""
from __future__ import annotations

import time

import pytest

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtCore import QCoreApplication

from groundcast.engine.errors import Cancelled, InputError
from groundcast.engine.fileio import atomic_dir
from groundcast.ui.task import EngineTask


def wait_for(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting for the task")
        QCoreApplication.processEvents()
        time.sleep(0.01)


class Config:
    def __init__(self, out_dir):
        self.out_dir = str(out_dir)


def slow_runner(config, progress):
    """Like the engine: writes into a temporary folder, renamed only at the end; polls cancel."""
    with atomic_dir(config.out_dir) as tmp:
        for i in range(500):
            (tmp / f"part{i}.tif").write_bytes(b"x")
            progress.progress(i / 500, f"step {i}")
            if progress.should_cancel():
                raise Cancelled("cancelled by the user")
            time.sleep(0.01)
    return {"done": True}


def snapshot(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class Recorder:
    def __init__(self, task):
        self.events, self.messages, self.progress = [], [], []
        task.succeeded.connect(lambda result: self.events.append(("succeeded", result)))
        task.failed.connect(lambda message: self.events.append(("failed", message)))
        task.cancelled.connect(lambda: self.events.append(("cancelled", None)))
        task.messageChanged.connect(self.messages.append)
        task.progressChanged.connect(self.progress.append)


def test_cancel_writes_nothing_and_adds_no_layer(tmp_path, qgis_new_project):
    (tmp_path / "keep.txt").write_text("the user's own file")
    before = snapshot(tmp_path)
    layers_before = set(QgsProject.instance().mapLayers())
    task = EngineTask("forecast", Config(tmp_path / "run"), runner=slow_runner)
    seen = Recorder(task)
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: seen.messages)  # the engine is running and reporting
    task.cancel()
    wait_for(lambda: seen.events)
    assert seen.events == [("cancelled", None)]
    assert snapshot(tmp_path) == before  # no run folder, no temporary leftovers
    assert set(QgsProject.instance().mapLayers()) == layers_before


def test_success_reports_progress_and_result(tmp_path):
    def runner(config, progress):
        for i in range(5):
            progress.progress(i / 4, f"step {i}")
        return {"summary": 1}

    task = EngineTask("backtest", Config(tmp_path), runner=runner)
    seen = Recorder(task)
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: seen.events)
    assert seen.events == [("succeeded", {"summary": 1})]
    assert seen.messages[0] == "step 0" and seen.messages[-1] == "step 4"
    assert max(seen.progress) == 100


def run_failing(tmp_path, bar, error: Exception) -> list:
    """The events of a task whose engine run raises `error`."""
    bar.clear_messages()

    def runner(config, progress):
        raise error

    task = EngineTask("forecast", Config(tmp_path), runner=runner, message_bar=bar)
    seen = Recorder(task)
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: seen.events)
    return seen.events


def test_input_error_is_one_sentence_in_message_bar(tmp_path, qgis_iface):
    bar = qgis_iface.messageBar()
    events = run_failing(tmp_path, bar, InputError("points.csv: no date columns (yyyymmdd) were found."))
    assert events == [("failed", "points.csv: no date columns (yyyymmdd) were found.")]
    sentence = "points.csv: no date columns (yyyymmdd) were found."
    assert bar.get_messages(Qgis.Critical) == [f"GroundCast:{sentence}"]


def test_unexpected_error_sentence_and_traceback_in_log(tmp_path, qgis_iface):
    bar = qgis_iface.messageBar()
    bar.clear_messages()
    logged = []
    log = QgsApplication.messageLog()
    log.messageReceived[str, str, Qgis.MessageLevel].connect(
        lambda msg, tag, level: logged.append((tag, msg)))

    def runner(config, progress):
        return {}["missing key"]

    task = EngineTask("forecast", Config(tmp_path), runner=runner, message_bar=bar)
    seen = Recorder(task)
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: seen.events)
    wait_for(lambda: any("Traceback" in m for _, m in logged))
    kind, message = seen.events[0]
    assert kind == "failed" and "KeyError" in message and "log" in message and "\n" not in message
    assert len(bar.get_messages(Qgis.Critical)) == 1
    assert any(tag == "GroundCast" and "Traceback" in msg and "missing key" in msg for tag, msg in logged)


def test_unknown_kind():
    with pytest.raises(ValueError):
        EngineTask("train", None)


def test_cancelled_task_does_not_end_as_failed(tmp_path, qgis_new_project):
    """QGIS's task bar reads a terminated task as "Task failed": a cancelled run ends complete."""
    from qgis.core import QgsTask

    task = EngineTask("forecast", Config(tmp_path / "run"), runner=slow_runner)
    seen = Recorder(task)
    statuses = []
    task.statusChanged.connect(statuses.append)
    QgsApplication.taskManager().addTask(task)
    wait_for(lambda: seen.messages)
    task.cancel()
    wait_for(lambda: seen.events and statuses and statuses[-1] in (QgsTask.Complete, QgsTask.Terminated))
    assert seen.events == [("cancelled", None)]
    assert statuses[-1] == QgsTask.Complete
    assert "cancelled" in task.description()


def test_errors_name_settings_not_command_line_flags(tmp_path, qgis_iface):
    error = InputError("training diverged; try another --seed or --cell-size 200, or --no-priors.")
    kind, message = run_failing(tmp_path, qgis_iface.messageBar(), error)[0]
    assert kind == "failed" and "--" not in message
    assert "\u201cRandom seed\u201d" in message and "\u201cCell size\u201d 200" in message
    assert "\u201cUse the prior maps\u201d off" in message
