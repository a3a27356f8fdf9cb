"""Plugin shell on pytest-qgis's iface: load, dock, dependency banner, unload leaves nothing."""
from __future__ import annotations

import pytest

from qgis.core import QgsApplication
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QAction, QDockWidget

import groundcast
from groundcast.ui import deps


class FakeQgisUi:
    """Stands in for the parts of QGIS's main window that the test iface leaves as no-ops."""

    def __init__(self, iface, monkeypatch):
        self.toolbar, self.menus, self.docks = [], {}, []
        window = iface.mainWindow()
        monkeypatch.setattr(iface, "addToolBarIcon", self.toolbar.append)
        monkeypatch.setattr(iface, "removeToolBarIcon", self.toolbar.remove)
        monkeypatch.setattr(iface, "addPluginToMenu",
                            lambda name, a: self.menus.setdefault(name, []).append(a))
        monkeypatch.setattr(iface, "removePluginMenu", lambda name, a: self.menus[name].remove(a))

        def add_dock(area, dock):
            window.addDockWidget(area, dock)
            self.docks.append(dock)

        def remove_dock(dock):
            window.removeDockWidget(dock)
            self.docks.remove(dock)

        monkeypatch.setattr(iface, "addDockWidget", add_dock)
        monkeypatch.setattr(iface, "removeDockWidget", remove_dock)


def _flush_deletes():
    QCoreApplication.sendPostedEvents(None, QEvent.DeferredDelete)
    QCoreApplication.processEvents()


def _groundcast_docks(window):
    return [d for d in window.findChildren(QDockWidget) if d.objectName() == "GroundCastDock"]


def _rubber_bands(canvas):
    return [item for item in canvas.scene().items() if isinstance(item, QgsRubberBand)]


@pytest.fixture()
def ui(qgis_iface, monkeypatch):
    return FakeQgisUi(qgis_iface, monkeypatch)


def test_load_toggle_unload_leaves_nothing(qgis_iface, ui, qgis_new_project):
    window, canvas = qgis_iface.mainWindow(), qgis_iface.mapCanvas()
    registry = QgsApplication.processingRegistry()
    # another test module may have registered the provider already; the plugin must not clash
    registered_before = registry.providerById("groundcast")
    bands_before = len(_rubber_bands(canvas))
    # docks of other test modules may still hold tools on the shared canvas: only ours must go
    tools_before = {id(t) for t in canvas.findChildren(QgsMapTool)}

    plugin = groundcast.classFactory(qgis_iface)
    plugin.initGui()

    action = plugin.action
    assert action in ui.toolbar and ui.menus["&GroundCast"] == [action, plugin.report_action]
    assert plugin.report_action.text() == "Report\u2026"
    assert action.text() == "GroundCast" and action.isCheckable() and not action.icon().isNull()
    docks = _groundcast_docks(window)
    assert docks == [plugin.dock] and ui.docks == [plugin.dock]
    assert plugin.dock.windowTitle() == "GroundCast" and plugin.dock.isHidden()
    action.trigger()
    assert not plugin.dock.isHidden()
    action.trigger()
    assert plugin.dock.isHidden()
    assert registry.providerById("groundcast") is not None
    if registered_before is None:
        assert registry.providerById("groundcast") is plugin.provider
    else:
        assert plugin.provider is None  # duplicate refused, loading went on
    assert canvas.findChildren(QgsMapTool)  # the dock's AOI and pick tools

    # the AOI tool in use and an AOI shown when the plugin goes away
    plugin.dock.area.draw_button.setChecked(True)
    assert canvas.mapTool() is plugin.dock.area.tool
    plugin.dock.area.use_canvas_extent()
    assert len(_rubber_bands(canvas)) > bands_before

    plugin.unload()
    _flush_deletes()
    assert ui.toolbar == [] and ui.menus["&GroundCast"] == [] and ui.docks == []
    assert _groundcast_docks(window) == []
    assert not [a for a in window.findChildren(QAction) if a.objectName() == "GroundCastAction"]
    assert canvas.mapTool() is None or "groundcast" not in type(canvas.mapTool()).__module__
    assert not [t for t in canvas.findChildren(QgsMapTool)
                if "groundcast" in type(t).__module__ and id(t) not in tools_before]
    assert len(_rubber_bands(canvas)) == bands_before
    assert registry.providerById("groundcast") is registered_before  # ours gone, nobody else's touched


def test_missing_dependency_still_loads_and_says_what(qgis_iface, ui, monkeypatch):
    monkeypatch.setattr(deps, "missing_dependencies", lambda: ["torch", "safetensors"])
    monkeypatch.setattr(deps, "dependency_problems",
                        lambda: {"torch": "not installed", "safetensors": "not installed"})
    plugin = groundcast.classFactory(qgis_iface)
    plugin.initGui()
    try:
        dock = plugin.dock
        assert dock is not None and not dock.deps.widget.isHidden()
        text = dock.deps.label.text()
        assert "torch" in text and "safetensors" in text
        command = dock.deps.command.toPlainText()
        assert "-m pip install --user" in command and "torch==2.13.0" in command
        assert "safetensors==0.8.0" in command
        assert dock.deps.command.isReadOnly()
        assert dock.deps.install_button.isEnabled()
        run = dock.run_panel
        assert not run.forecast_button.isEnabled() and not run.backtest_button.isEnabled()
    finally:
        plugin.unload()
        _flush_deletes()


def test_report_menu_asks_for_a_forecast_folder(qgis_iface, ui, monkeypatch, tmp_path):
    from qgis.PyQt.QtWidgets import QFileDialog

    asked = []
    answers = iter(["", str(tmp_path)])

    def pick(*args):
        asked.append(args)
        return next(answers)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", pick)
    messages = []
    monkeypatch.setattr(qgis_iface.messageBar(), "pushMessage", lambda *args: messages.append(args))
    plugin = groundcast.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert plugin.dock.results.forecast_dir is None  # no run yet: the menu asks for a folder
        plugin.report_action.trigger()
        assert len(asked) == 1 and messages == []  # cancelled: nothing happens
        plugin.report_action.trigger()
        # an empty folder is no forecast: one sentence, no dialog
        assert len(asked) == 2 and len(messages) == 1 and str(tmp_path) in messages[0][1]
    finally:
        plugin.unload()
        _flush_deletes()


def test_nothing_missing_here():
    assert deps.missing_dependencies() == []


def test_install_command_pins_and_apt(monkeypatch):
    monkeypatch.setattr(deps, "is_debian", lambda: False)
    command = deps.install_command(["torch", "numpy", "rasterio"])
    assert command.count("\n") == 0
    python = deps.python_executable()
    assert command.startswith(python) or command.startswith(f'"{python}"')
    assert '"numpy>=1.22,<2"' in command and "torch==2.13.0" in command and '"rasterio>=1.3,<2"' in command

    monkeypatch.setattr(deps, "is_debian", lambda: True)
    command = deps.install_command(["torch", "rasterio", "shapely"])
    apt, pip = command.splitlines()
    assert apt == "sudo apt install python3-rasterio"
    # Debian 12's python3-shapely is 1.8: shapely 2 must come from pip
    assert "torch==2.13.0" in pip and '"shapely>=2.0,<2.1"' in pip and "rasterio" not in pip


def test_version_problems_are_reported(monkeypatch):
    import importlib.metadata

    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: {"numpy": "2.1.0", "shapely": "1.8.5"}.get(name) or real(name))
    problems = deps.dependency_problems()
    assert set(problems) == {"numpy", "shapely"}
    assert "2.1.0" in problems["numpy"] and "1.8.5" in problems["shapely"]
