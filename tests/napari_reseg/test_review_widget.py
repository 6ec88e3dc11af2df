"""The Review widget as a grader uses it in napari: opened after a run it is ready, follows the layer being
worked on, marks slices with buttons and keys, tracks painted corrections, autosaves, restores, checks the
layer order and exports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from qtpy.QtWidgets import QFileDialog


@pytest.fixture
def review(dock):
    return dock("Review")


@pytest.mark.slow
@pytest.mark.smoke
def test_opened_after_a_run_it_is_ready_and_marks_with_its_buttons(viewer, segmented, review, click):
    _image, _labels = segmented
    assert all(button.isEnabled() for button in review.buttons.values()) and review.export_button.isEnabled()
    assert review.labels_combo.currentText() == "scan.tif labels"
    assert review.progress_label.text() == "0 / 4 B-scans reviewed"
    review.reviewer_edit.setText("alice")
    review.reviewer_edit.editingFinished.emit()
    viewer.dims.set_current_step(0, 1)
    click(review.buttons["reviewed"])
    assert review.current_slice() == 2
    click(review.buttons["skip"])
    assert review.current_slice() == 3
    session = review.controller.session
    entry = session.review.slices[1]
    assert entry.status.value == "reviewed" and entry.reviewer == "alice" and entry.timestamp
    assert session.review.slices[2].status.value == "skipped"
    assert review.progress_label.text() == "1 / 4 B-scans reviewed"
    assert "reviewed" in review.slice_list.item(1).text() and "alice" in review.slice_list.item(1).text()


@pytest.mark.slow
@pytest.mark.smoke
def test_keys_work_and_are_released_when_the_widget_closes(viewer, segmented, review, qtbot):
    from napari.utils.key_bindings import coerce_keybinding
    from qtpy.QtCore import Qt

    canvas = viewer.__wrapped__.window._qt_viewer.canvas.native  # where napari receives the grader's keys
    viewer.dims.set_current_step(0, 0)
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    assert review.controller.session.review.slices[0].status.value == "reviewed"
    assert review.current_slice() == 1
    viewer.window.remove_dock_widget(review)
    assert coerce_keybinding("Shift-R") not in viewer.keymap
    qtbot.keyClick(canvas, Qt.Key.Key_R, Qt.KeyboardModifier.ShiftModifier)
    assert review.controller.session.review.slices[1].status.value == "unreviewed"


@pytest.mark.slow
def test_it_follows_the_labels_layer_the_user_works_on(
    viewer, segment, segmented, review, write_oct_scan, click, wait_for
):
    path, _ = write_oct_scan("second.tif", seed=12)
    viewer.open(str(path), plugin="napari-reseg")
    segment.image_combo.setCurrentText("second.tif")
    click(segment.run_button)
    wait_for(segment)
    assert review.labels_combo.currentText() == "second.tif labels"  # the run's layer, selected by the run
    viewer.layers.selection.active = viewer.layers["scan.tif labels"]
    assert review.labels_combo.currentText() == "scan.tif labels"
    assert review.controller.session.source.name == "scan.tif"


@pytest.mark.slow
def test_least_confident_unreviewed_slice_comes_from_the_model(viewer, segmented, review, click):
    confidence = review.controller.session.confidence
    assert confidence is not None and np.all(np.isfinite(confidence))
    click(review.buttons["doubtful"])
    assert review.current_slice() == int(np.argmin(confidence))


@pytest.mark.slow
def test_a_painted_stroke_is_tracked_against_the_prediction(viewer, segmented, review, qtbot):
    _image, labels = segmented
    viewer.dims.set_current_step(0, 2)
    labels.brush_size = 7
    labels.paint((2, 100, 90), 9)
    qtbot.waitUntil(lambda: 2 in review.controller.edit_stats, timeout=5_000)
    stats = review.controller.edit_stats[2]
    changed = int((labels.data[2] != review.controller.session.prediction[2]).sum())
    assert stats["pixels_changed"] == changed > 0 and set(review.controller.edit_stats) == {2}
    assert stats["added"][9] > 0 and stats["mean_dice"] < 1
    assert "edited" in review.slice_list.item(2).text()
    qtbot.waitUntil(lambda: "autosaved" in review.save_label.text(), timeout=10_000)


@pytest.mark.slow
def test_autosave_survives_and_restores_in_a_new_viewer(
    make_napari_viewer_proxy,
    viewer,
    segment,
    small_oct,
    click,
    wait_for,
    dock,
    oct_file,
    qtbot,
    answers,
    reseg_settings,
):
    reseg_settings.review.session_folder = ""  # the default: beside the scan (here in the test's folder)
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers["scan.tif labels"]
    review = dock("Review")
    viewer.dims.set_current_step(0, 0)
    click(review.buttons["reviewed"])  # a review mark saves at once
    labels.paint((1, 120, 100), 9)
    qtbot.waitUntil(lambda: 1 in review.controller.edit_stats, timeout=5_000)
    review.autosave()
    saved_labels = labels.data.copy()
    path = review.controller.session_path
    assert path.exists() and path.name == "scan.tif.reseg-session.npz"

    other = make_napari_viewer_proxy()  # as after a crash: a fresh napari, the scan opened again
    _, restorer = other.window.add_plugin_dock_widget("napari-reseg", "Review")
    answers.append(True)
    other.open(str(oct_file[0]), plugin="napari-reseg")
    assert "Restore it?" in answers.asked[0]
    restored = restorer.labels
    assert restored is not None and restored.name == "scan.tif labels"
    np.testing.assert_array_equal(restored.data, saved_labels)
    assert restorer.controller.session.review.slices[0].status.value == "reviewed"
    assert restorer.progress_label.text() == "1 / 4 B-scans reviewed"
    assert set(restorer.controller.edit_stats) == {1}
    restored.paint((2, 120, 100), 9)  # edits of the restored layer reach the session
    assert restorer.controller.session.labels[2, 120, 100] == 9


@pytest.mark.slow
def test_sessions_go_where_the_preferences_say(
    viewer, segment, small_oct, click, wait_for, dock, tmp_path, reseg_settings
):
    reseg_settings.review.session_folder = str(tmp_path / "my sessions")
    reseg_settings.review.reviewer = "dr. bob"
    click(segment.run_button)
    wait_for(segment)
    review = dock("Review")
    assert review.reviewer_edit.text() == "dr. bob"
    viewer.dims.set_current_step(0, 0)
    click(review.buttons["reviewed"])
    assert review.controller.session_path.parent == tmp_path / "my sessions"
    assert review.controller.session_path.exists()
    assert review.controller.session.review.slices[0].reviewer == "dr. bob"


@pytest.mark.slow
def test_topology_check_and_one_click_fix_with_undo(viewer, segmented, review, click):
    _image, labels = segmented
    labels.data[1, :, 40:60] = labels.data[1, ::-1, 40:60]  # turn 20 A-scans upside down
    click(review.check_button)
    assert "A-scans with layers out of order" in review.topology_label.text() and review.fix_button.isEnabled()
    broken = labels.data.copy()
    click(review.fix_button)
    assert "in order in every A-scan" in review.topology_label.text()
    labels.undo()
    np.testing.assert_array_equal(labels.data, broken)


@pytest.mark.slow
def test_export_writes_reviewed_slices_and_asks_before_replacing_another_export(
    viewer, segmented, review, click, tmp_path, qtbot, monkeypatch, answers
):
    folder = tmp_path / "export"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    viewer.dims.set_current_step(0, 0)
    click(review.buttons["reviewed"])
    click(review.buttons["reviewed"])
    click(review.export_button)
    qtbot.waitUntil(lambda: "exported" in review.save_label.text(), timeout=30_000)
    manifest = json.loads((folder / "dataset.json").read_text())
    assert [item["slice"] for item in manifest["items"]] == [0, 1]
    assert manifest["items"][0]["reviewer"] == review.controller.session.review.reviewer
    label = tifffile.imread(folder / manifest["items"][1]["label"])
    np.testing.assert_array_equal(label, review.controller.session.labels[1])

    folder = tmp_path / "someone else's folder"  # not an export of ours: replacing it needs a yes
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    answers.append(False)
    click(review.export_button)
    qtbot.waitUntil(lambda: bool(answers.asked), timeout=30_000)
    assert "Overwrite?" in answers.asked[0] and "holds no reseg training set" in answers.asked[0]
    qtbot.waitUntil(lambda: "nothing was written" in review.save_label.text(), timeout=5_000)
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
