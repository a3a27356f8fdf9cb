"""Run panel: Forecast, Backtest and Cancel, the progress bar and one status line."""
from __future__ import annotations

from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget

from .common import ElidedLabel


class RunPanel(QWidget):
    """Emits startRequested("forecast" | "backtest") and cancelRequested()."""

    startRequested = pyqtSignal(str)
    cancelRequested = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        row = QHBoxLayout()
        self.forecast_button = QPushButton("Forecast")
        self.forecast_button.setToolTip("Train on the points' history and forecast to the horizon")
        self.forecast_button.clicked.connect(lambda: self.startRequested.emit("forecast"))
        self.backtest_button = QPushButton("Backtest")
        self.backtest_button.setToolTip("Hold out the last months and score the forecast against simple "
                                        "baselines")
        self.backtest_button.clicked.connect(lambda: self.startRequested.emit("backtest"))
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancelRequested.emit)
        for button in (self.forecast_button, self.backtest_button, self.cancel_button):
            row.addWidget(button)
        layout.addLayout(row)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        layout.addWidget(self.progress)
        self.status_label = ElidedLabel("Ready.", lines=2)
        layout.addWidget(self.status_label)
        self.set_state(ready=False, running=False)

    def set_state(self, ready: bool, running: bool) -> None:
        for button in (self.forecast_button, self.backtest_button):
            button.setEnabled(ready and not running)
        self.cancel_button.setEnabled(running)

    def set_status(self, text: str) -> None:
        self.status_label.setText(text)

    def status(self) -> str:
        return self.status_label.text()

    def set_progress(self, value: float) -> None:
        self.progress.setValue(int(value))
