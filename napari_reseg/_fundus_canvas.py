"""The fundus image with each B-scan's path drawn on it, scaled to the dock; a click on or near a path picks
that B-scan.

Drawn with QPainter, so the plugin needs no plotting library. The image is scaled once per size of the dock
(a cached pixmap), so moving the B-scan slider repaints only the paths: a few dozen lines.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPixmap, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from reseg.measurement.fundus import FundusView, nearest_bscan
from reseg.review.state import SliceStatus

CURRENT_COLOUR = QColor(255, 225, 25)
START_COLOUR = QColor(255, 255, 255)  # the current B-scan's first A-scan (its left edge on screen)
# Reviewed and skipped as the Review list shows them; not reviewed in light blue, since the list's grey would
# vanish on a grey SLO image, thin and half transparent, so that the fundus shows between dense raster lines.
PATH_COLOURS = {
    SliceStatus.REVIEWED: QColor(60, 180, 75),
    SliceStatus.SKIPPED: QColor(245, 130, 48),
    SliceStatus.UNREVIEWED: QColor(110, 190, 255, 130),
}
PATH_WIDTHS = {SliceStatus.REVIEWED: 1.5, SliceStatus.SKIPPED: 1.5, SliceStatus.UNREVIEWED: 1.0}
CURRENT_WIDTH = 2.5
CLICK_TOLERANCE_PX = 8  # how far from a path (on screen) a click still picks its B-scan


def _qimage(image: np.ndarray) -> QImage:
    """A QImage owning a copy of the uint8 grey (H, W) or RGB (H, W, 3) pixels."""
    height, width = image.shape[:2]
    grey = image.ndim == 2
    layout = QImage.Format.Format_Grayscale8 if grey else QImage.Format.Format_RGB888
    return QImage(image.data, width, height, int(image.strides[0]), layout).copy()


class FundusCanvas(QWidget):
    """Paints a `FundusView`: the image at its physical aspect and one path per B-scan, coloured by review
    status, the current one highlighted (with a dot where its first A-scan lies)."""

    bscan_clicked = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(200, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("click a B-scan's line to go to it")
        self.view: FundusView | None = None
        self.current: int | None = None
        self.statuses: tuple[SliceStatus, ...] = ()
        self._image: QImage | None = None
        self._aspect = 1.0  # physical height / width of the fundus
        self._scaled: QPixmap | None = None

    def show_view(self, view: FundusView | None) -> None:
        """Show a scan's fundus (None: nothing)."""
        self.view = view
        self._image = _qimage(view.image) if view is not None else None
        self._aspect = view.aspect if view is not None else 1.0
        self._scaled = None
        self.update()

    def set_current(self, index: int | None) -> None:
        if index != self.current:
            self.current = index
            self.update()

    def set_statuses(self, statuses: Sequence[SliceStatus]) -> None:
        self.statuses = tuple(statuses)
        self.update()

    def image_rect(self) -> QRectF:
        """Where the fundus is drawn: as large as fits, centred, at its physical aspect."""
        width = min(float(self.width()), self.height() / self._aspect)
        height = width * self._aspect
        return QRectF((self.width() - width) / 2, (self.height() - height) / 2, width, height)

    @property
    def drawn_paths(self) -> tuple[np.ndarray, ...]:
        """Each B-scan's path as drawn, (N, 2) x, y in this widget's pixels (empty where unknown)."""
        if self.view is None:
            return ()
        rect = self.image_rect()
        width, height = self.view.size
        scale = np.array([rect.width() / width, rect.height() / height])
        offset = np.array([rect.left(), rect.top()])
        return tuple(path * scale + offset for path in self.view.paths)

    def paintEvent(self, event: QPaintEvent) -> None:
        if self._image is None:
            return
        painter = QPainter(self)
        rect = self.image_rect()
        size = rect.size().toSize()
        if self._scaled is None or self._scaled.size() != size:
            self._scaled = QPixmap.fromImage(
                self._image.scaled(
                    size, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation
                )
            )
        painter.drawPixmap(rect.topLeft(), self._scaled)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setClipRect(rect)
        paths = self.drawn_paths
        for index, path in enumerate(paths):
            if index != self.current and len(path):
                status = self._status(index)
                painter.setPen(QPen(PATH_COLOURS[status], PATH_WIDTHS[status]))
                painter.drawPolyline(_polygon(path))
        if self.current is not None and 0 <= self.current < len(paths) and len(paths[self.current]):
            path = paths[self.current]
            painter.setPen(QPen(CURRENT_COLOUR, CURRENT_WIDTH))
            painter.drawPolyline(_polygon(path))
            status = self._status(self.current)
            if status is not SliceStatus.UNREVIEWED:  # the current B-scan's mark shows inside its highlight
                painter.setPen(QPen(PATH_COLOURS[status], 1.0))
                painter.drawPolyline(_polygon(path))
            painter.setClipping(False)  # the first A-scan may lie on the image's edge
            painter.setPen(QPen(QColor(0, 0, 0), 1.0))
            painter.setBrush(START_COLOUR)
            painter.drawEllipse(QPointF(*path[0]), 4.5, 4.5)
        painter.end()

    def _status(self, index: int) -> SliceStatus:
        return self.statuses[index] if index < len(self.statuses) else SliceStatus.UNREVIEWED

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() != Qt.MouseButton.LeftButton or self.view is None:
            return super().mousePressEvent(event)
        where = event.position()
        index = nearest_bscan(self.drawn_paths, (where.x(), where.y()), CLICK_TOLERANCE_PX)
        if index is not None:
            self.bscan_clicked.emit(index)


def _polygon(path: np.ndarray) -> QPolygonF:
    return QPolygonF([QPointF(float(x), float(y)) for x, y in path])
