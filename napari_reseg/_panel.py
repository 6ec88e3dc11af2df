"""Building blocks every dock widget of the plugin shares: a body that scrolls instead of forcing the window
taller, collapsible sections for what is not needed all the time, and the one yes/no question dialog.

With Segment, Review and Fine-tune docked together on a 1080-pixel screen each dock gets about a third of
the height; a widget whose minimum height is its whole content would push the window off the screen.
"""

from __future__ import annotations

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFrame,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)


class Panel(QWidget):
    """A dock widget whose content (`self.body`, a vertical layout) scrolls when the dock is short."""

    def __init__(self) -> None:
        super().__init__()
        content = QWidget()
        self.body = QVBoxLayout(content)
        self.body.setContentsMargins(6, 6, 6, 6)
        scroll = QScrollArea()
        scroll.setWidget(content)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(120)


class Section(QWidget):
    """A titled part of a panel that the user can fold away (its state is the widget's, not a setting)."""

    def __init__(self, title: str, content: QWidget, expanded: bool = True) -> None:
        super().__init__()
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setChecked(expanded)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setStyleSheet("QToolButton { border: none; font-weight: bold; }")
        self.content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 4, 0, 0)
        layout.addWidget(self.toggle)
        layout.addWidget(content)
        self.toggle.toggled.connect(self._show)
        self._show(expanded)

    def _show(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.content.setVisible(expanded)


def confirm(parent: QWidget, title: str, text: str) -> bool:
    """Ask a yes/no question; No is the default, so Enter never discards work by accident."""
    answer = QMessageBox.question(parent, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.No)
    return answer == QMessageBox.StandardButton.Yes
