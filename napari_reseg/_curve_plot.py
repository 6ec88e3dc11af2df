"""A small live plot of training: loss per step (left axis) and held-out mean Dice per epoch (right).

Drawn with QPainter so the plugin needs no plotting library; it only has to show whether training converges.
"""

from __future__ import annotations

import itertools
import math

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

LOSS_COLOUR = QColor(90, 160, 255)
DICE_COLOUR = QColor(255, 170, 60)


class CurvePlot(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.steps_per_epoch = 1
        self.losses: list[float] = []
        self.dice: list[tuple[int, float]] = []  # (epoch, mean Dice)

    def clear(self, steps_per_epoch: int = 1) -> None:
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.losses, self.dice = [], []
        self.update()

    def add_loss(self, loss: float) -> None:
        self.losses.append(loss)
        self.update()

    def add_dice(self, epoch: int, dice: float) -> None:
        self.dice.append((epoch, dice))
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.Antialiasing)
        frame = QRectF(self.rect()).adjusted(34, 8, -34, -20)
        painter.setPen(QPen(self.palette().text().color(), 1))
        painter.drawRect(frame)
        top_loss = max(self.losses, default=1.0) or 1.0
        steps = max(len(self.losses), self.steps_per_epoch * max((e for e, _ in self.dice), default=1), 1)

        # The Dice axis starts at the tenth below the lowest value, so that late small gains stay visible.
        dice_low = min(math.floor(min((d for _, d in self.dice), default=0.0) * 10) / 10, 0.9)

        def point(step: float, value: float, top: float, low: float = 0.0) -> QPointF:
            return QPointF(
                frame.left() + frame.width() * step / steps,
                frame.bottom() - frame.height() * min(max((value - low) / (top - low), 0.0), 1.0),
            )

        if len(self.losses) > 1:
            path = QPainterPath(point(1, self.losses[0], top_loss))
            for step, loss in enumerate(self.losses[1:], start=2):
                path.lineTo(point(step, loss, top_loss))
            painter.setPen(QPen(LOSS_COLOUR, 1.2))
            painter.drawPath(path)
        painter.setPen(QPen(DICE_COLOUR, 2))
        points = [point(epoch * self.steps_per_epoch, dice, 1.0, dice_low) for epoch, dice in self.dice]
        for a, b in itertools.pairwise(points):
            painter.drawLine(a, b)
        for p in points:
            painter.drawEllipse(p, 3, 3)

        painter.setPen(LOSS_COLOUR)
        painter.drawText(QRectF(0, frame.top() - 4, 32, 16), Qt.AlignRight, f"{top_loss:.2g}")
        painter.drawText(QRectF(0, frame.bottom() - 12, 32, 16), Qt.AlignRight, "0")
        painter.drawText(QRectF(frame.left(), frame.bottom() + 2, 120, 16), Qt.AlignLeft, "loss / step")
        painter.setPen(DICE_COLOUR)
        painter.drawText(QRectF(frame.right() + 2, frame.top() - 4, 32, 16), Qt.AlignLeft, "1")
        painter.drawText(QRectF(frame.right() + 2, frame.bottom() - 12, 32, 16), Qt.AlignLeft, f"{dice_low:g}")
        painter.drawText(
            QRectF(frame.right() - 200, frame.bottom() + 2, 200, 16), Qt.AlignRight, "held-out mean Dice / epoch"
        )
        painter.end()
