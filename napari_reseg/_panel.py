"""Building blocks every dock widget of the plugin shares: a body that scrolls instead of forcing the window
taller, one tabbed dock for the plugin's widgets, collapsible sections for what is not needed all the time,
and the one yes/no question dialog.

With Segment, Review and Fine-tune stacked in one column of a 1080-pixel screen each would get a third of
the height (the Review's slice list four rows); a widget whose minimum height is its whole content would push
the window off the screen. Tabbed, each gets the whole column and scrolls if even that is short.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, Qt
from qtpy.QtWidgets import (
    QDockWidget,
    QFrame,
    QMainWindow,
    QMessageBox,
    QScrollArea,
    QSizePolicy,
    QStyle,
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
        self._content = content
        self._joined = False
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(120)

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ParentChange and not self._joined:
            dock = self.parent()
            while dock is not None and not isinstance(dock, QDockWidget):
                dock = dock.parent()
            if dock is not None:  # napari made the dock; it is put into the window next
                self._joined = True
                # As narrow as the content allows (it does not scroll sideways); set once, not a Python
                # size-hint override that Qt's layout would call (and wait for the GIL) again and again.
                scrollbar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
                self.setMinimumWidth(self._content.minimumSizeHint().width() + scrollbar)
                self._docked = lambda _area: self._join_other_panels(dock)
                dock.dockLocationChanged.connect(self._docked)
        return super().event(event)

    def _join_other_panels(self, dock: QDockWidget) -> None:
        """Share one tabbed dock with the plugin's other widgets docked in the same area, and come to the
        front: each then has the whole height (the Review list needs it) instead of a third of it."""
        window = dock.parent()
        dock.dockLocationChanged.disconnect(self._docked)  # once: the user may move it anywhere afterwards
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return
        area = window.dockWidgetArea(dock)
        for other in window.findChildren(QDockWidget):
            if other is dock or other.isFloating() or window.dockWidgetArea(other) != area:
                continue
            if isinstance(other.widget(), Panel) or other.findChild(Panel) is not None:
                window.tabifyDockWidget(other, dock)
                dock.show()
                dock.raise_()
                return


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
    answer = QMessageBox.question(
        parent,
        title,
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes
