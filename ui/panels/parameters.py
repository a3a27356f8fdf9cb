"""Parameters panel: one widget per run parameter the dock shows, built from engine.params.

`widgets_for(parameters)` makes the widgets (same range, unit and default as the specification);
`value_of` / `set_value` read and write them as typed values. The horizon can also be given as a
target date, turned into days so that the last forecast date is on or after that date.
"""
from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget
from qgis.PyQt.QtCore import QDate
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDateEdit,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ...engine import params as engine_params
from ...engine.definitions import STEP_DAYS
from ...engine.errors import InputError
from .. import settings
from .common import UserError, form

WIDGET_KINDS = frozenset({"int", "float", "bool", "choice", "checkpoint", "folder"})
CHOICE_LABELS = {"auto": "Auto", "cpu": "CPU", "cuda": "GPU (CUDA)", "base": "Base model, fine-tuned here",
                 "zero-shot": "Base model as it is", "scratch": "Trained here from scratch"}
UNSET_TEXT = "Built-in"  # an optional number left empty: the engine's own choice
DEFAULT_OUTPUT = str(Path.home() / "GroundCast")


def dock_parameters() -> list:
    """The parameters the dock shows as widgets here (the points, priors and area have panels)."""
    return [p for p in engine_params.PARAMETERS if "dock" in p.fronts and p.kind in WIDGET_KINDS]


def _unset_allowed(p) -> bool:
    return p.optional and p.default is None


def _step(p) -> float:
    if p.unit == "days":
        return STEP_DAYS
    if p.kind == "int" or p.minimum is None or p.maximum is None:
        return 1
    return 10.0 ** (math.floor(math.log10(max(p.maximum - p.minimum, 1))) - 2)


def widget_for(p) -> QWidget:
    """The widget for one parameter, set to its default."""
    tip = p.help + (f" ({p.range_text()})" if p.minimum is not None and p.maximum is not None else "")
    if p.kind in ("int", "float"):
        spin = QSpinBox() if p.kind == "int" else QDoubleSpinBox()
        if p.kind == "float":
            spin.setDecimals(1)
        low = -2**31 + 1 if p.minimum is None else p.minimum
        high = 2**31 - 1 if p.maximum is None else p.maximum
        if _unset_allowed(p):  # one step below the minimum reads "Built-in" and means None
            low -= 1
            spin.setSpecialValueText(UNSET_TEXT)
        number = int if p.kind == "int" else float
        spin.setRange(number(low), number(high))
        spin.setSingleStep(_step(p))
        if p.unit:
            spin.setSuffix(f" {p.unit}")
        widget = spin
    elif p.kind == "bool":
        widget = QCheckBox(p.label)
    elif p.kind == "choice":
        widget = QComboBox()
        for choice in p.choices:
            widget.addItem(CHOICE_LABELS.get(choice, str(choice)), choice)
    elif p.kind in ("checkpoint", "folder"):
        widget = QgsFileWidget()
        if p.kind == "folder":
            widget.setStorageMode(QgsFileWidget.GetDirectory)
            widget.setDialogTitle(p.label)
        else:
            widget.setStorageMode(QgsFileWidget.GetFile)
            widget.setFilter("Model weights (*.safetensors)")
            widget.setDialogTitle(p.label)
    else:
        raise ValueError(f"the dock has no widget for parameters of kind {p.kind!r} ({p.name})")
    widget.setObjectName(f"groundcast_{p.name}")
    widget.setToolTip(tip)
    set_value(p, widget, p.default)
    return widget


def widgets_for(parameters) -> dict:
    """{name: widget} for `parameters`, each with the specification's range, unit and default."""
    return {p.name: widget_for(p) for p in parameters}


def value_of(p, widget):
    """The widget's value, typed as RunConfig holds it (None for an optional value left empty)."""
    if p.kind in ("int", "float"):
        if _unset_allowed(p) and widget.value() == widget.minimum():
            return None
        return int(widget.value()) if p.kind == "int" else float(widget.value())
    if p.kind == "bool":
        return widget.isChecked()
    if p.kind == "choice":
        return widget.currentData()
    text = widget.filePath().strip()
    return text or None


def set_value(p, widget, value) -> None:
    if p.kind in ("int", "float"):
        if value is None or value == "":
            value = widget.minimum() if _unset_allowed(p) else (p.minimum or 0)
        widget.setValue(int(value) if p.kind == "int" else float(value))
    elif p.kind == "bool":
        widget.setChecked(bool(value) if value is not None else False)
    elif p.kind == "choice":
        index = widget.findData(value)
        widget.setCurrentIndex(max(index, 0))
    else:
        widget.setFilePath("" if value is None else str(value))


def horizon_days_for(target: dt.date, first_observation: dt.date, last_observation: dt.date) -> int:
    """Days from the forecast origin to `target`, so that the last forecast date is on or after it.

    The engine's time axis steps STEP_DAYS from the first observation; its origin is the last step
    at or before the last observation, and it forecasts ceil(horizon_days / STEP_DAYS) steps
    from there. Counting from the last observation instead would fall up to STEP_DAYS - 1 short.
    """
    origin = first_observation + dt.timedelta(
        days=(last_observation - first_observation).days // STEP_DAYS * STEP_DAYS)
    return (target - origin).days


class ParametersPanel(QWidget):
    """The run parameters: the main ones in "Parameters", the advanced ones in a collapsed box."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.parameters = dock_parameters()
        self.widgets = widgets_for(self.parameters)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        main = QGroupBox("Parameters")
        main_form = form()
        main.setLayout(main_form)
        self.advanced = QgsCollapsibleGroupBox("Advanced")
        self.advanced.setCollapsed(True)
        advanced_form = form()
        self.advanced.setLayout(advanced_form)
        for p in self.parameters:
            target = advanced_form if p.advanced else main_form
            widget = self.widgets[p.name]
            label = p.label + (" (backtest)" if p.commands == frozenset({"backtest"}) else "")
            if p.name == "horizon_days":
                target.addRow(label, self._horizon_row(widget))
            elif p.kind == "bool":
                target.addRow(widget)
            elif p.kind == "folder":
                heading = QLabel(f"{p.label} (each run adds a sub-folder)")
                heading.setWordWrap(True)
                target.addRow(heading)
                target.addRow(widget)
            else:
                target.addRow(label, widget)
        layout.addWidget(main)
        layout.addWidget(self.advanced)
        self.restore()

    def _horizon_row(self, spin) -> QWidget:
        self.days_radio = QRadioButton("Days ahead")
        self.date_radio = QRadioButton("Until date")
        group = QButtonGroup(self)
        group.addButton(self.days_radio)
        group.addButton(self.date_radio)
        self.target_date = QDateEdit()
        self.target_date.setCalendarPopup(True)
        self.target_date.setDisplayFormat("yyyy-MM-dd")
        self.target_date.setToolTip("The last forecast date is on or after this date")
        row = QWidget()
        grid = QGridLayout(row)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.addWidget(self.days_radio, 0, 0)
        grid.addWidget(spin, 0, 1)
        grid.addWidget(self.date_radio, 1, 0)
        grid.addWidget(self.target_date, 1, 1)
        grid.setColumnStretch(1, 1)
        self.days_radio.toggled.connect(self._sync_horizon)
        self.days_radio.setChecked(True)
        return row

    def _sync_horizon(self, *_args) -> None:
        if "horizon_days" in self.widgets:
            self.widgets["horizon_days"].setEnabled(self.days_radio.isChecked())
            self.target_date.setEnabled(self.date_radio.isChecked())

    def widget(self, name: str) -> QWidget:
        return self.widgets[name]

    def parameter(self, name: str):
        return next(p for p in self.parameters if p.name == name)

    def values(self, command: str, first_observation=None, last_observation=None) -> dict:
        """{name: typed value} of the parameters `command` takes (out_dir: the base folder)."""
        values = {}
        for p in self.parameters:
            if command in p.commands:
                values[p.name] = value_of(p, self.widgets[p.name])
        if values.get("out_dir") is None and "out_dir" in self.widgets:
            values["out_dir"] = DEFAULT_OUTPUT
        if "horizon_days" in values and self.date_radio.isChecked():
            target = self.target_date.date().toPyDate()
            if last_observation is None or target <= last_observation:
                after = f" ({last_observation:%Y-%m-%d})" if last_observation else ""
                raise UserError(f"The target date must be after the last observation{after}.")
            values["horizon_days"] = horizon_days_for(target, first_observation, last_observation)
        return values

    # -- remembered between sessions ------------------------------------------------------------
    def restore(self) -> None:
        for p in self.parameters:
            default = DEFAULT_OUTPUT if p.kind == "folder" else p.default
            stored = settings.read(settings.parameter_key(p.name), None, str)
            value = default if stored in (None, "") else _parse(p, stored, default)
            set_value(p, self.widgets[p.name], value)
        if "horizon_days" in self.widgets:
            by_date = settings.read(settings.HORIZON_MODE, "days") == "date"
            self.date_radio.setChecked(by_date)
            self.days_radio.setChecked(not by_date)
            target = QDate.fromString(settings.read(settings.TARGET_DATE, ""), "yyyy-MM-dd")
            self.target_date.setDate(target if target.isValid() else QDate.currentDate().addYears(1))
            self._sync_horizon()

    def save(self) -> None:
        for p in self.parameters:
            value = value_of(p, self.widgets[p.name])
            settings.write(settings.parameter_key(p.name), "" if value is None else str(value))
        if "horizon_days" in self.widgets:
            settings.write(settings.HORIZON_MODE, "date" if self.date_radio.isChecked() else "days")
            settings.write(settings.TARGET_DATE, self.target_date.date().toString("yyyy-MM-dd"))


def _parse(p, text: str, default):
    """A remembered value back in the parameter's type; the default when it no longer fits."""
    try:
        if p.kind == "int":
            value = int(float(text))
        elif p.kind == "float":
            value = float(text)
        elif p.kind == "bool":
            value = text.lower() in ("true", "1", "yes")
        else:
            value = text
        p.check(value)
        return value
    except (ValueError, TypeError, InputError):
        return default
