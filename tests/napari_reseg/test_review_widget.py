"""The Review widget as a grader uses it: mark slices, paint corrections, autosave, restore, check, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_reseg._review_widget import ReviewWidget
from reseg.data.phantom import make_oct_phantom


@pytest.fixture
def scan_file(tmp_path):
    phantom = make_oct_phantom(n_bscans=4, height=224, width=192, seed=21)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, phantom.image, imagej=True, resolution=(1 / 0.0113, 1 / 0.00387),
                     metadata={"spacing": 0.12, "unit": "mm", "axes": "ZYX"})
    return path


@pytest.fixture
def segmented(viewer, widget, wait_for_run, scan_file):
    """The scan opened from its file and segmented with the bundled OCT model."""
    [image] = viewer.open(str(scan_file), plugin="napari-reseg")
    widget.image_combo.setCurrentText(image.name)
    widget.model_combo.setCurrentText("lightreseg-oct")
    widget.start()
    wait_for_run(widget)
    return image, viewer.layers[f"{image.name} labels"]


@pytest.fixture
def review(viewer):
    review_widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(review_widget, name="Review")
    review_widget.ask = lambda title, text: True
    return review_widget


def test_marking_slices_records_who_and_when_and_moves_on(viewer, segmented, review):
    image, labels = segmented
    assert review.labels is labels and review.progress_label.text() == "0 / 4 B-scans reviewed"
    review.reviewer_edit.setText("alice")
    review.reviewer_edit.editingFinished.emit()
    viewer.dims.set_current_step(0, 1)
    review.mark_reviewed_and_next()
    assert review.current_slice() == 2
    review.skip_and_next()
    assert review.current_slice() == 3
    entry = review.session.review.slices[1]
    assert entry.status.value == "reviewed" and entry.reviewer == "alice" and entry.timestamp
    assert review.session.review.slices[2].status.value == "skipped"
    assert review.progress_label.text() == "1 / 4 B-scans reviewed"
    assert "reviewed" in review.slice_list.item(1).text() and "alice" in review.slice_list.item(1).text()


def test_least_confident_unreviewed_slice_comes_from_the_model(viewer, segmented, review):
    confidence = review.session.confidence
    assert confidence is not None and np.all(np.isfinite(confidence))
    review.go_to_least_confident()
    assert review.current_slice() == int(np.argmin(confidence))


def test_a_painted_stroke_is_tracked_against_the_prediction(viewer, segmented, review, qtbot):
    image, labels = segmented
    viewer.dims.set_current_step(0, 2)
    labels.brush_size = 7
    labels.paint((2, 100, 90), 9)
    qtbot.waitUntil(lambda: 2 in review.edit_stats, timeout=5_000)
    stats = review.edit_stats[2]
    changed = int((labels.data[2] != review.session.prediction[2]).sum())
    assert stats["pixels_changed"] == changed > 0 and set(review.edit_stats) == {2}
    assert stats["added"][9] > 0 and stats["mean_dice"] < 1
    assert "edited" in review.slice_list.item(2).text()
    qtbot.waitUntil(lambda: "autosaved" in review.save_label.text(), timeout=10_000)


def test_autosave_survives_and_restores_in_a_new_viewer(make_napari_viewer, viewer, segmented, review, scan_file,
                                                        qtbot):
    image, labels = segmented
    viewer.dims.set_current_step(0, 0)
    review.mark_reviewed_and_next()  # a review mark saves at once
    labels.paint((1, 120, 100), 9)
    qtbot.waitUntil(lambda: 1 in review.edit_stats, timeout=5_000)
    review.autosave()
    saved_labels = labels.data.copy()
    path = review.session_path
    assert path.exists() and path.name == "scan.tif.reseg-session.npz"

    other = make_napari_viewer()  # as after a crash: a fresh napari, the scan opened again
    restorer = ReviewWidget(other)
    other.window.add_dock_widget(restorer, name="Review")
    restorer.ask = lambda title, text: True
    other.open(str(scan_file), plugin="napari-reseg")
    restored = restorer.labels
    assert restored is not None and restored.name == "scan.tif labels"
    np.testing.assert_array_equal(restored.data, saved_labels)
    assert restorer.session.review.slices[0].status.value == "reviewed"
    assert restorer.progress_label.text() == "1 / 4 B-scans reviewed"
    assert set(restorer.edit_stats) == {1}


def test_topology_check_and_one_click_fix_with_undo(viewer, segmented, review):
    image, labels = segmented
    labels.data[1, :, 40:60] = labels.data[1, ::-1, 40:60]  # turn 20 A-scans upside down
    review.check_topology()
    assert "A-scans with layers out of order" in review.topology_label.text() and review.fix_button.isEnabled()
    broken = labels.data.copy()
    review.fix_topology()
    assert "in order in every A-scan" in review.topology_label.text()
    labels.undo()
    np.testing.assert_array_equal(labels.data, broken)


def test_export_writes_reviewed_slices_as_a_training_set(viewer, segmented, review, tmp_path, qtbot):
    viewer.dims.set_current_step(0, 0)
    review.mark_reviewed_and_next()
    review.mark_reviewed_and_next()
    done = []
    worker = review.export(tmp_path / "export")
    worker.finished.connect(lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)
    manifest = json.loads((tmp_path / "export" / "dataset.json").read_text())
    assert [item["slice"] for item in manifest["items"]] == [0, 1]
    assert manifest["items"][0]["reviewer"] == review.session.review.reviewer
    label = tifffile.imread(tmp_path / "export" / manifest["items"][1]["label"])
    np.testing.assert_array_equal(label, review.session.labels[1])
