"""Draw the README's widget screenshots.

- docs/segment_widget.png: the Segment widget docked beside the OCT sample it has just segmented;
- docs/finetune_widget.png: the Fine-tune widget after a short run on phantom "corrections" (a temporary
  user model folder, so nothing is kept).

    xvfb-run -a python docs/make_screenshot.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_reseg._finetune_widget import FinetuneWidget
from napari_reseg._segment_widget import SegmentWidget
from reseg.cli import main as reseg

DOCS = Path(__file__).resolve().parent
OUT = DOCS / "segment_widget.png"


def _hide_toasts(viewer) -> None:
    """Close napari's notification pop-ups (e.g. its PyQt5 deprecation notice): they are not the widget."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.processEvents()


def _wait(widget) -> None:
    while widget.worker is not None:
        QApplication.processEvents()


def segment_screenshot() -> None:
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
    _wait(widget)
    viewer.layers["OCT phantom confidence"].visible = False
    viewer.layers.selection.active = viewer.layers["OCT phantom labels"]
    viewer.dims.set_current_step(0, 8)
    viewer.reset_view()
    viewer.camera.zoom *= 1.6
    for _ in range(10):
        QApplication.processEvents()
    _hide_toasts(viewer)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"wrote {OUT}: {widget.status.text()}")
    viewer.close()


def finetune_screenshot() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["RESEG_MODEL_DIR"] = str(Path(scratch) / "models")
        export = Path(scratch) / "review-export"
        reseg(["phantom", str(export), "--volumes", "5", "--bscans", "4", "--seed", "500"])
        viewer = napari.Viewer(show=True)
        viewer.window._qt_window.resize(1600, 1100)
        viewer.open_sample("napari-reseg", "oct-phantom")
        widget = FinetuneWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Fine-tune", area="right")
        widget.add_data_folder(export)
        widget.set_frozen(["encoder"])
        widget.epochs_spin.setValue(4)
        widget.start()
        _wait(widget)
        for _ in range(10):
            QApplication.processEvents()
        _hide_toasts(viewer)
        viewer.screenshot(str(DOCS / "finetune_widget.png"), canvas_only=False, flash=False)
        print(f"wrote {DOCS / 'finetune_widget.png'}: {widget.status.text()}")
        widget.discard()
        viewer.close()


if __name__ == "__main__":
    segment_screenshot()
    finetune_screenshot()
