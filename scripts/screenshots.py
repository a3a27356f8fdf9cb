"""Runs inside the QGIS desktop (`qgis --code scripts/screenshots.py`, see screenshots.sh).

Starts the GroundCast plugin from QGIS_PLUGINPATH, shows the demo forecast through the dock
as a user would, saves the window and the time-series plot as PNGs, then quits QGIS. Every
step runs from the event loop (QTimer) so the canvas and widgets really paint in between.
Paths come from the environment: GROUNDCAST_DEMO, GROUNDCAST_SHOTS, GROUNDCAST_LOG.
"""
import os
import sys
import time
import traceback
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProject,
    QgsSettings,
)
from qgis.PyQt.QtCore import QTimer
from qgis.utils import active_plugins, iface, loadPlugin, plugins, startPlugin

DEMO = Path(os.environ["GROUNDCAST_DEMO"])
SHOTS = Path(os.environ["GROUNDCAST_SHOTS"])
LOG = Path(os.environ.get("GROUNDCAST_LOG", "/dev/stderr"))
STEP_MS = 1500
# screenshots.sh has its own timeout; this one quits cleanly first and says what blocked
HARD_LIMIT_S = int(os.environ.get("GROUNDCAST_SHOT_LIMIT_S", "240"))

state = {}


def log(message):
    with open(LOG, "a", encoding="utf-8") as handle:
        handle.write(f"screenshots.py: {message}\n")


def quit_qgis(code):
    log(f"quitting with status {code}")
    QgsProject.instance().setDirty(False)  # no "save changes?" dialog
    # QGIS's exit path can hang on background threads under Xvfb; the status must get out
    QTimer.singleShot(3000, lambda: os._exit(code))
    QgsApplication.exit(code)


def settle(seconds=1.0):
    """Let queued paints and the canvas render finish."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QgsApplication.processEvents()
        time.sleep(0.02)
    iface.mapCanvas().waitWhileRendering()
    QgsApplication.processEvents()


def save(widget, name):
    path = SHOTS / name
    tmp = SHOTS / f".{name}.partial.png"
    if not widget.grab().save(str(tmp), "PNG"):
        raise RuntimeError(f"could not save {path}")
    os.replace(tmp, path)
    log(f"wrote {path}")


def step_start():
    # no "Select Transformation" dialogs: the project is in the results' CRS before they load
    QgsSettings().setValue("/projections/promptWhenMultipleTransformsExist", False, QgsSettings.App)
    QgsProject.instance().setCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    window = iface.mainWindow()
    window.resize(1600, 1000)
    window.showMaximized()
    if "groundcast" not in active_plugins:
        if not loadPlugin("groundcast"):
            raise RuntimeError("the GroundCast plugin was not found on QGIS_PLUGINPATH or did not import")
        if not startPlugin("groundcast"):
            raise RuntimeError("the GroundCast plugin did not start")
    plugin = plugins["groundcast"]
    if plugin.dock is None:
        raise RuntimeError("the GroundCast dock was not created")
    plugin.action.setChecked(True)  # opens the dock as the toolbar button does
    state["dock"] = plugin.dock


def step_show_results():
    from groundcast.engine import results

    dock = state["dock"]
    aoi = DEMO / "data" / "aoi.geojson"
    layers = dock.show_forecast(str(DEMO / "forecast"), "Demo region", str(aoi) if aoi.is_file() else None)
    if results.read_manifest(DEMO / "backtest") is not None:
        dock.show_backtest(str(DEMO / "backtest"))
    state["layers"] = layers


def step_zoom():
    # after the layers: QGIS may have set the project CRS from its defaults meanwhile
    forecast = state["layers"]["forecast"]
    QgsProject.instance().setCrs(forecast.crs())
    frame = state["layers"].get("aoi") or forecast  # the AOI reaches beyond the forecast cells
    extent = frame.extent()
    if frame.crs() != forecast.crs():  # canvas.setExtent ignores a rectangle's CRS
        transform = QgsCoordinateTransform(frame.crs(), forecast.crs(), QgsProject.instance())
        extent = transform.transformBoundingBox(extent)
    extent.scale(1.08)
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(forecast.crs())
    canvas.setExtent(extent)
    canvas.refresh()


def step_main_shot():
    settle(2.0)
    log(f"project CRS {QgsProject.instance().crs().authid()}, "
        f"canvas CRS {iface.mapCanvas().mapSettings().destinationCrs().authid()}")
    save(iface.mainWindow(), "screenshot_main.png")


def step_timeseries():
    points = state["layers"].get("points")
    if points is None:
        raise RuntimeError("the forecast has no points layer")
    # the point with the most forecast change: the plot a reader wants to see
    field = points.renderer().classAttribute()
    fids = sorted(((-abs(f[field]) if f[field] is not None else 0.0, f.id()) for f in points.getFeatures()))
    points.selectByIds([fids[0][1]])  # the dock plots the selected point


def step_timeseries_shot():
    dock = state["dock"]
    # float the dock wide enough for a readable plot; the docked panel is narrow
    dock.setFloating(True)
    dock.resize(760, 980)
    dock.move(40, 10)
    settle(1.5)
    save(dock.results.plot, "screenshot_timeseries.png")
    dock.setFloating(False)


def step_report_dialog():
    from groundcast.ui.report_dialog import open_report_dialog

    dialog = open_report_dialog(iface, str(DEMO / "forecast"), parent=iface.mainWindow(),
                                result_layers=state["layers"])
    if dialog is None:
        raise RuntimeError("the report dialog did not open")
    dialog.move(200, 200)
    state["report_dialog"] = dialog


def step_report_dialog_shot():
    settle(1.0)
    save(state["report_dialog"], "screenshot_report_dialog.png")
    state["report_dialog"].close()


STEPS = [step_start, step_show_results, step_zoom, step_main_shot, step_timeseries, step_timeseries_shot,
         step_report_dialog, step_report_dialog_shot]


def run(index=0):
    if index == len(STEPS):
        quit_qgis(0)
        return
    try:
        log(f"step {STEPS[index].__name__}")
        STEPS[index]()
    except Exception:  # noqa: BLE001 (any failure must end QGIS with a status, not hang it)
        log(traceback.format_exc())
        quit_qgis(1)
        return
    QTimer.singleShot(STEP_MS, lambda: run(index + 1))


def _watchdog():
    log(f"gave up after {HARD_LIMIT_S}s")
    # name what blocks: usually a modal dialog that no one will click
    for widget in QgsApplication.topLevelWidgets():
        if widget.isVisible():
            log(f"visible: {type(widget).__name__} {widget.windowTitle()!r}")
    quit_qgis(2)


sys.excepthook = lambda *exc: log("".join(traceback.format_exception(*exc)))
QTimer.singleShot(HARD_LIMIT_S * 1000, _watchdog)
QTimer.singleShot(STEP_MS, run)
