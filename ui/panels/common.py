"""What the panels share: the user-error type, form and combo helpers, the map-tool switch."""
from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QFontMetrics
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel, QSizePolicy

LOG_TAG = "GroundCast"


class UserError(Exception):
    """A problem the user can fix; its message is one sentence for the message bar."""


def form() -> QFormLayout:
    layout = QFormLayout()
    layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    layout.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    layout.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    return layout


def narrow(combo, chars: int = 8):
    """Long layer names must not widen the dock: the combo elides instead."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    return combo


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" + ("" if count == 1 else "s")


class ElidedLabel(QLabel):
    """At most `lines` lines of text, cut with an ellipsis; the whole text is the tooltip.

    A long message must never grow the label and push the widgets around it.
    """

    def __init__(self, text: str = "", lines: int = 2, parent=None):
        super().__init__(parent)
        self.lines = lines
        self.full_text = ""
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(QFontMetrics(self.font()).lineSpacing() * lines + 4)
        self.setText(text)

    def text(self) -> str:  # the whole message, not the cut one on screen
        return self.full_text

    def setText(self, text: str) -> None:  # noqa: N802 (Qt API)
        self.full_text = str(text)
        self.setToolTip(self.full_text if self._elided() != self.full_text else "")
        super().setText(self._elided())

    def _elided(self) -> str:
        metrics = QFontMetrics(self.font())
        width = max(self.width(), 40)
        # a little under `lines` full lines: word wrapping leaves each line's end unused
        budget = int(width * self.lines * 0.85)
        return metrics.elidedText(self.full_text, Qt.TextElideMode.ElideRight, budget)

    def resizeEvent(self, event):  # noqa: N802 (Qt API)
        super().resizeEvent(event)
        self.setText(self.full_text)


class ToolSwitch:
    """Puts a panel's map tool on the canvas and gives the user's own tool back afterwards."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.ours = []
        self.previous = None

    def own(self, tool) -> None:
        self.ours.append(tool)

    def use(self, tool) -> None:
        if self.canvas.mapTool() is not tool:
            current = self.canvas.mapTool()
            if current not in self.ours:
                self.previous = current
            self.canvas.setMapTool(tool)

    def restore(self) -> None:
        previous, self.previous = self.previous, None
        try:
            if previous is not None and previous not in self.ours:
                self.canvas.setMapTool(previous)
                return
        except RuntimeError:  # the previous tool was deleted meanwhile
            pass
        if self.canvas.mapTool() in self.ours:
            self.canvas.unsetMapTool(self.canvas.mapTool())

    def release(self, tool) -> None:
        """`tool` no longer wanted: give the canvas back if it still holds it."""
        if self.canvas.mapTool() is tool:
            self.restore()

    def remove_all(self) -> None:
        for tool in self.ours:
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        self.ours = []
