"""Draw docs/segment_widget.png: the Segment widget docked beside the OCT sample it has just segmented.

    xvfb-run -a python docs/make_screenshot.py
"""

from __future__ import annotations

from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_reseg._segment_widget import SegmentWidget

OUT = Path(__file__).resolve().parent / "segment_widget.png"


def main() -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 950)
    viewer.open_sample("napari-reseg", "oct-phantom")
    viewer.layers["OCT phantom true labels"].visible = False
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment", area="right")
    widget.image_combo.setCurrentText("OCT phantom")
    widget.model_combo.setCurrentText("lightreseg-oct")
    widget.confidence_check.setChecked(True)
    widget.start()
    while widget.worker is not None:
        QApplication.processEvents()
    viewer.layers["OCT phantom confidence"].visible = False
    viewer.layers.selection.active = viewer.layers["OCT phantom labels"]
    viewer.dims.set_current_step(0, 8)
    viewer.reset_view()
    viewer.camera.zoom *= 1.6
    for _ in range(10):
        QApplication.processEvents()
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"wrote {OUT}: {widget.status.text()}")
    viewer.close()


if __name__ == "__main__":
    main()
