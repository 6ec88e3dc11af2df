"""The three widgets docked together fit a 1920 x 1080 screen: the window is not forced taller, and each
widget scrolls inside its dock instead of squeezing its lists and buttons over each other."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QApplication, QScrollArea

pytestmark = pytest.mark.smoke


def test_segment_review_and_finetune_docked_together_fit_a_1080p_screen(viewer, dock, small_oct, qtbot):
    window = viewer.__wrapped__.window._qt_window  # the main window (the public viewer has no size API)
    widgets = [dock(name) for name in ("Segment", "Review", "Fine-tune")]
    window.resize(1920, 1080)
    for _ in range(5):
        QApplication.processEvents()
    assert window.height() <= 1080 and window.minimumSizeHint().height() <= 1080
    for widget in widgets:
        assert widget.height() >= widget.minimumHeight() > 0
        scroll = widget.findChild(QScrollArea)
        assert scroll is not None and scroll.widgetResizable()
        # what does not fit is reachable by scrolling, not cut off or overlapping
        content = scroll.widget()
        assert content.height() >= content.minimumSizeHint().height()
