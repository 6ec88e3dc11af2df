"""The three widgets docked together fit a 1920 x 1080 screen: they share one tabbed dock, the window is not
forced taller, and each widget scrolls inside its dock instead of squeezing its lists and buttons."""

from __future__ import annotations

import pytest
from qtpy.QtWidgets import QApplication, QDockWidget, QScrollArea, QTabBar

pytestmark = pytest.mark.smoke


def test_segment_review_and_finetune_docked_together_fit_a_1080p_screen(make_napari_viewer_proxy, oct_file):
    viewer = make_napari_viewer_proxy(show=True)  # a window on screen, as a user has it
    viewer.open(str(oct_file[0]), plugin="napari-reseg")
    window = viewer.__wrapped__.window._qt_window  # the main window (the public viewer has no size API)
    window.resize(1920, 1080)
    widgets = [
        viewer.window.add_plugin_dock_widget("napari-reseg", name)[1] for name in ("Segment", "Review", "Fine-tune")
    ]
    for _ in range(5):
        QApplication.processEvents()
    assert window.height() <= 1080 and window.minimumSizeHint().height() <= 1080
    docks = [dock for dock in window.findChildren(QDockWidget) if dock.windowTitle().endswith("(napari-reseg)")]
    assert len(docks) == 3
    assert set(window.tabifiedDockWidgets(docks[0])) == set(docks[1:])  # one tabbed dock
    [tabs] = [bar for bar in window.findChildren(QTabBar) if bar.count() == 3]
    assert tabs.tabText(tabs.currentIndex()).startswith("Fine-tune")  # the widget opened last is in front
    for widget in widgets:
        assert widget.height() >= widget.minimumHeight() > 0
        scroll = widget.findChild(QScrollArea)
        assert scroll is not None and scroll.widgetResizable()
        # what does not fit is reachable by scrolling, not cut off or overlapping
        content = scroll.widget()
        assert content.height() >= content.minimumSizeHint().height()
