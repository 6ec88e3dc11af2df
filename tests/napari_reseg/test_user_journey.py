"""A grader's session from start to end on real scans, as napari runs it: open, segment, correct, run again,
review, export, save, reopen, fine-tune. The OCT line scan and the CT volume take the same path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from napari.layers import Labels
from qtpy.QtWidgets import QFileDialog

from reseg.classes import CT_CLASSES, OCT_CLASSES

pytestmark = pytest.mark.smoke

JOURNEYS = {
    "oct": (("spectralis_vol", "Willis_B_716_0.vol"), "lightreseg-oct", OCT_CLASSES, ".tif"),
    "ct": (("ct_totalseg", "example_ct_sm.nii.gz"), "l2gnet-ct", CT_CLASSES, ".nii.gz"),
}


@pytest.mark.slow
@pytest.mark.parametrize("journey", sorted(JOURNEYS))
def test_a_graders_session_from_open_to_fine_tune(
    journey, viewer, dock, shared_data, click, wait_for, answers, tmp_path, monkeypatch, qtbot, user_models
):
    parts, model, classes, suffix = JOURNEYS[journey]
    [scan] = viewer.open(str(shared_data(*parts)), plugin="napari-reseg")
    if journey == "ct":  # radiological: the patient's right on the screen's left, anterior at the top
        assert scan.scale[1] < 0 and scan.scale[2] < 0
    else:  # B-scans stretched in depth as graders view them, not a thin strip
        axial, lateral = scan.metadata["reseg"].geometry.spacing[1:]
        assert scan.scale[1] == pytest.approx(3 * axial) and scan.scale[2] == pytest.approx(lateral)

    segment = dock("Segment")
    assert segment.model_combo.currentText() == model  # the model made for this kind of scan
    click(segment.run_button)
    wait_for(segment)
    [labels] = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert labels.data.any() and np.allclose(labels.scale, scan.scale) and np.allclose(labels.translate, scan.translate)

    z = labels.data.shape[0] // 2
    viewer.dims.set_current_step(0, z)
    labels.brush_size = 9
    labels.paint((z, labels.data.shape[1] // 2, labels.data.shape[2] // 2), 3)  # the grader's correction
    corrected = labels.data.copy()
    answers.append(False)  # "keep my edits"
    click(segment.run_button)
    assert len(answers.asked) == 1 and not segment.task.running
    np.testing.assert_array_equal(labels.data, corrected)
    assert len([layer for layer in viewer.layers if isinstance(layer, Labels)]) == 1

    review = dock("Review")
    assert review.labels_combo.currentText() == labels.name and review.buttons["reviewed"].isEnabled()
    click(review.buttons["reviewed"])
    assert review.controller.session.review.slices[z].status.value == "reviewed"
    qtbot.waitUntil(lambda: z in review.controller.edit_stats, timeout=5_000)

    export = tmp_path / "export"
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(export))
    click(review.export_button)
    qtbot.waitUntil(lambda: "exported" in review.save_label.text(), timeout=60_000)
    manifest = json.loads((export / "dataset.json").read_text())
    assert [item["slice"] for item in manifest["items"]] == [z]
    assert manifest["items"][0]["edit_statistics"]["pixels_changed"] > 0

    [written] = labels.save(str(tmp_path / f"corrected{suffix}"), plugin="napari-reseg")
    [reopened] = viewer.open(written, plugin="napari-reseg")
    assert isinstance(reopened, Labels) and list(reopened.features["class"]) == [c.name for c in classes]
    np.testing.assert_array_equal(reopened.data, corrected)
    np.testing.assert_allclose(reopened.scale, scan.scale)
    np.testing.assert_allclose(reopened.translate, scan.translate)
    offered = [segment.image_combo.itemText(i) for i in range(segment.image_combo.count())]
    assert offered == [scan.name]  # the label file is never offered as a scan

    finetune = dock("Fine-tune")
    finetune.add_data_folder(export)
    assert finetune.base_combo.currentText() == model  # the base whose classes are the export's
    assert finetune.start_button.isEnabled()
