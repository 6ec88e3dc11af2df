"""The TSNIT plot of a peripapillary circle scan: thickness by anatomical angle, temporal - superior - nasal -
inferior - temporal, with the quadrant borders and each quadrant's mean, as glaucoma graders read it.

Drawn with QPainter so the plugin needs no plotting library (as `_curve_plot`).
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from reseg.measurement.tsnit import QUADRANTS, TsnitProfile

PROFILE_COLOUR = QColor(90, 200, 120)
BORDER_COLOUR = QColor(150, 150, 150)
_TICKS = ((0, "T"), (90, "S"), (180, "N"), (270, "I"), (360, "T"))


class TsnitPlot(QWidget):
    """Shows one `TsnitProfile` (or nothing); `show_profile` redraws."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.profile: TsnitProfile | None = None
        self.title = ""

    def show_profile(self, profile: TsnitProfile | None, title: str = "") -> None:
        self.profile, self.title = profile, title
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(36, 18, -8, -20)
        text = self.palette().text().color()
        painter.setPen(QPen(text, 1))
        painter.drawRect(frame)
        painter.drawText(QRectF(frame.left(), 0, frame.width(), 16), Qt.AlignmentFlag.AlignLeft, self.title)
        known = self.profile.thickness_um[np.isfinite(self.profile.thickness_um)] if self.profile else np.empty(0)
        top = float(np.ceil(known.max() / 50) * 50) if known.size else 200.0

        def point(angle: float, value: float) -> QPointF:
            return QPointF(
                frame.left() + frame.width() * angle / 360.0,
                frame.bottom() - frame.height() * min(max(value / top, 0.0), 1.0),
            )

        for angle, label in _TICKS:
            x = point(angle, 0).x()
            painter.drawText(QRectF(x - 10, frame.bottom() + 2, 20, 16), Qt.AlignmentFlag.AlignHCenter, label)
        painter.drawText(QRectF(0, frame.top() - 6, 32, 16), Qt.AlignmentFlag.AlignRight, f"{top:.0f}")
        painter.drawText(QRectF(0, frame.bottom() - 10, 32, 16), Qt.AlignmentFlag.AlignRight, "0 um")
        if self.profile is None:
            painter.end()
            return
        painter.setPen(QPen(BORDER_COLOUR, 1, Qt.PenStyle.DashLine))
        for _, first, _last in QUADRANTS:
            painter.drawLine(point(first, 0), point(first, top))
        means = self.profile.sector_means(QUADRANTS)
        for name, first, last in QUADRANTS:
            mean = means[name]
            label = f"{mean:.0f}" if mean is not None else "-"
            # a quadrant through 0 (temporal) shows at both ends of the plot
            centres = [(first + last) / 2] if first < last else [(first + 360) / 2, last / 2]
            for centre in centres:
                x = point(centre, 0).x()
                painter.drawText(QRectF(x - 20, frame.top() + 2, 40, 16), Qt.AlignmentFlag.AlignHCenter, label)
        painter.setPen(QPen(PROFILE_COLOUR, 1.5))
        path: QPainterPath | None = None
        for angle, value in zip(self.profile.angle_deg, self.profile.thickness_um, strict=True):
            if not np.isfinite(value):
                if path is not None:
                    painter.drawPath(path)
                path = None
                continue
            if path is None:
                path = QPainterPath(point(angle, value))
            else:
                path.lineTo(point(angle, value))
        if path is not None:
            painter.drawPath(path)
        painter.end()
