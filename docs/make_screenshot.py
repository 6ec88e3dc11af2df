"""Draw the README's widget screenshots, with the widgets docked as napari's Plugins menu docks them.

- docs/segment_widget.png: the Segment widget beside the real Spectralis line scan it has just segmented
  (../shared/data; the OCT sample when that is absent);
- docs/three_widgets.png: Segment, Review and Fine-tune docked together on a 1920 x 1080 window, mid-review;
- docs/ct_radiological.png: the real CT volume and its labels in the radiological convention;
- docs/finetune_widget.png: the Fine-tune widget after a short run on phantom "corrections" (a temporary
  user model folder, so nothing is kept).

    xvfb-run -a -s "-screen 0 1920x1080x24" python docs/make_screenshot.py
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication, QDockWidget

from reseg.cli import main as reseg

DOCS = Path(__file__).resolve().parent
SHARED = DOCS.parent.parent / "shared" / "data"
LINE_SCAN = SHARED / "spectralis_vol" / "Willis_B_716_0.vol"
CT = SHARED / "ct_totalseg" / "example_ct_sm.nii.gz"


def _settle(viewer) -> None:
    """Let the window draw, then close napari's notification pop-ups: they are not the widget."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for _ in range(20):
        QApplication.processEvents()
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    QApplication.processEvents()


def _wait(widget) -> None:
    while widget.task.running or widget.engine.running:
        QApplication.processEvents()
        time.sleep(0.005)


def _viewer(width: int, height: int):
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(width, height)
    return viewer


def _open_oct(viewer) -> str:
    if LINE_SCAN.exists():  # a copy: the review session is saved beside the scan, never into ../shared
        copy = Path(tempfile.mkdtemp()) / LINE_SCAN.name
        shutil.copy(LINE_SCAN, copy)
        [layer] = viewer.open(str(copy), plugin="napari-reseg")
        return layer.name
    viewer.open_sample("napari-reseg", "oct-phantom")
    viewer.layers["OCT phantom true labels"].visible = False
    return "OCT phantom"


def _segment(viewer, confidence: bool = False):
    _, segment = viewer.window.add_plugin_dock_widget("napari-reseg", "Segment")
    segment.confidence_check.setChecked(confidence)
    segment.run_button.click()
    _wait(segment)
    return segment


def segment_screenshot() -> None:
    viewer = _viewer(1600, 950)
    name = _open_oct(viewer)
    segment = _segment(viewer, confidence=True)
    viewer.layers[f"{name} doubt"].visible = True
    viewer.layers.selection.active = viewer.layers[f"{name} labels"]
    viewer.reset_view()
    _settle(viewer)
    viewer.screenshot(str(DOCS / "segment_widget.png"), canvas_only=False, flash=False)
    print(f"wrote {DOCS / 'segment_widget.png'}: {segment.status.text()}")
    viewer.close()


def three_widgets_screenshot() -> None:
    viewer = _viewer(1920, 1080)
    name = _open_oct(viewer)
    segment = _segment(viewer)
    _, review = viewer.window.add_plugin_dock_widget("napari-reseg", "Review")
    _, finetune = viewer.window.add_plugin_dock_widget("napari-reseg", "Fine-tune")
    review.buttons["reviewed"].click()
    dock = review
    while not isinstance(dock, QDockWidget):
        dock = dock.parent()
    dock.raise_()  # the Review tab in front, as mid-review
    viewer.layers.selection.active = viewer.layers[f"{name} labels"]
    viewer.reset_view()
    _wait(finetune)
    _settle(viewer)
    window = viewer.window._qt_window
    viewer.screenshot(str(DOCS / "three_widgets.png"), canvas_only=False, flash=False)
    print(
        f"wrote {DOCS / 'three_widgets.png'}: window {window.width()} x {window.height()}, "
        f"{segment.status.text()}; {review.progress_label.text()}"
    )
    viewer.close()


def ct_screenshot() -> None:
    if not CT.exists():
        print(f"skipped the CT screenshot: {CT} is not here")
        return
    viewer = _viewer(1600, 950)
    copy = Path(tempfile.mkdtemp()) / CT.name
    shutil.copy(CT, copy)
    [scan] = viewer.open(str(copy), plugin="napari-reseg")
    segment = _segment(viewer)
    viewer.dims.set_current_step(0, scan.data.shape[0] // 2)
    viewer.reset_view()
    _settle(viewer)
    viewer.screenshot(str(DOCS / "ct_radiological.png"), canvas_only=False, flash=False)
    print(f"wrote {DOCS / 'ct_radiological.png'}: {segment.status.text()}")
    viewer.close()


def finetune_screenshot() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["RESEG_MODEL_DIR"] = str(Path(scratch) / "models")
        export = Path(scratch) / "review-export"
        reseg(["phantom", str(export), "--volumes", "5", "--bscans", "4", "--seed", "500"])
        viewer = _viewer(1600, 1100)
        viewer.open_sample("napari-reseg", "oct-phantom")
        _, widget = viewer.window.add_plugin_dock_widget("napari-reseg", "Fine-tune")
        widget.add_data_folder(export)
        _wait(widget)
        widget.set_frozen(["encoder"])
        widget.epochs_spin.setValue(4)
        widget.start_button.click()
        _wait(widget)
        _settle(viewer)
        viewer.screenshot(str(DOCS / "finetune_widget.png"), canvas_only=False, flash=False)
        print(f"wrote {DOCS / 'finetune_widget.png'}: {widget.status.text()}")
        widget.discard_button.click()
        viewer.close()


if __name__ == "__main__":
    segment_screenshot()
    three_widgets_screenshot()
    ct_screenshot()
    finetune_screenshot()
