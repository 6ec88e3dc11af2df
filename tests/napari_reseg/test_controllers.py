"""The widgets' decisions, driven without Qt or a viewer: model choice by modality, what a run asks before it
starts, the run's states, the review of one labels layer, and the fine-tune lifecycle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from napari_reseg._finetune_controller import FinetuneController
from napari_reseg._finetune_controller import Phase as TuningPhase
from napari_reseg._layer_state import LabelsRecord, ScanRecord, pixel_free
from napari_reseg._review_controller import ReviewController
from napari_reseg._segment_controller import Phase, SegmentController, has_user_edits
from reseg.classes import OCT_CLASSES
from reseg.errors import ResegError
from reseg.io import Volume
from reseg.review.state import SliceStatus
from reseg.zoo.catalogue import resolve_card


def _scan(modality: str, n_slices: int = 3, source: Path = Path("<array>")) -> ScanRecord:
    volume = Volume(
        np.zeros((n_slices, 16, 20), np.uint8),
        (0.12, 0.0039, 0.0113),
        modality,
        source,
        metadata={"spacing_known": (True, True, True)},
    )
    return ScanRecord(f"key:{modality}", modality, pixel_free(volume), from_file=source.exists())


@pytest.mark.parametrize(
    ("modality", "expected"), [("OCT", "lightreseg-oct"), ("CT", "l2gnet-ct"), ("unknown", "lightreseg-oct")]
)
def test_the_preselected_model_suits_the_scan(modality, expected):
    assert SegmentController().preselect(modality) == expected


def test_no_model_is_preselected_when_none_suits(monkeypatch):
    controller = SegmentController()
    monkeypatch.setattr(controller, "model_names", lambda: ["l2gnet-ct"])  # only the CT model is installed
    assert controller.preselect("OCT") is None  # no preselection rather than the wrong model
    assert controller.preselect("CT") == "l2gnet-ct"


def test_a_run_asks_about_another_modality_and_about_edits():
    controller = SegmentController()
    plan = controller.plan(_scan("OCT"), "scan", "l2gnet-ct", "cpu", 2, None, raw=False, with_confidence=False)
    assert plan.slices == [0, 1, 2]
    assert "trained on CT" in controller.modality_question(plan)
    plan = controller.plan(_scan("OCT"), "scan", "lightreseg-oct", "cpu", 2, 1, raw=False, with_confidence=False)
    assert controller.modality_question(plan) is None and plan.slices == [1]

    card = resolve_card("lightreseg-oct")[0]
    data = np.zeros((3, 16, 20), np.uint8)
    record = LabelsRecord("key:OCT", tuple(card.classes), plan.scan.geometry, prediction=data.copy())
    assert controller.overwrite_question(plan, "scan labels", record, data) is None
    data[0, 3, 3] = 9  # an edit on slice 0 does not concern a run of slice 1 only
    assert controller.overwrite_question(plan, "scan labels", record, data) is None
    data[1, 3, 3] = 9
    assert "scan labels" in controller.overwrite_question(plan, "scan labels", record, data)


def test_labels_without_a_prediction_count_as_the_users_work():
    data = np.zeros((2, 4, 4), np.uint8)
    assert not has_user_edits(None, data, [0, 1])
    data[1, 0, 0] = 3  # opened from a file or painted by hand
    assert has_user_edits(None, data, [1]) and not has_user_edits(None, data, [0])


def test_the_run_moves_through_its_phases():
    controller = SegmentController()
    plan = controller.plan(_scan("OCT"), "scan", "lightreseg-oct", "cpu", 1, None, raw=False, with_confidence=False)
    assert controller.started(plan).startswith("loading") and controller.phase is Phase.LOADING
    with pytest.raises(ResegError, match="already running"):
        controller.plan(_scan("OCT"), "scan", "lightreseg-oct", "cpu", 1, None, raw=False, with_confidence=False)
    assert "loaded on cpu" in controller.progressed(0, "cpu", 1) and controller.phase is Phase.RUNNING
    assert controller.progressed(1, "cpu", 1) == "lightreseg-oct on cpu: 1 / 3 slices"
    assert controller.cancel() and controller.phase is Phase.CANCELLING and controller.cancel() is None
    assert controller.cancelled() == "cancelled after 1 / 3 slices; finished slices are kept"
    controller.ended()
    assert controller.phase is Phase.IDLE


def test_review_marks_navigation_edits_and_rows(tmp_path):
    card = resolve_card("lightreseg-oct")[0]
    prediction = np.ones((3, 16, 20), np.uint8)
    layer_data = prediction.copy()
    record = LabelsRecord(
        "key",
        tuple(OCT_CLASSES),
        _scan("OCT").geometry,
        modality="OCT",
        card=card,
        prediction=prediction,
        slice_confidence=np.array([0.9, 0.5, 0.7], np.float32),
    )
    review = ReviewController.for_record(record, layer_data, "alice", None)
    assert record.session is review.session and review.session_path is None  # no scan file: not autosaved
    assert review.save().startswith("not autosaved")
    assert review.progress_text() == "0 / 3 B-scans reviewed"
    assert review.mark(0, SliceStatus.REVIEWED, None) == 1
    assert review.least_confident(0) == (1, None)
    layer_data[2, :4, :4] = 9  # the grader paints: the session sees the layer's own array
    review.note_edit({2})
    assert review.measure_edits() and not review.measure_edits()
    rows = review.rows()
    assert rows[0].status is SliceStatus.REVIEWED and "alice" in rows[0].text
    assert "edited 16 px" in rows[2].text and "conf 0.700" in rows[2].text


def test_review_of_a_scan_file_is_saved_where_asked(tmp_path):
    scan_file = tmp_path / "scan.tif"
    scan_file.write_bytes(b"pixels")
    record = LabelsRecord(
        "key",
        tuple(OCT_CLASSES),
        _scan("OCT", source=scan_file).geometry,
        modality="OCT",
        prediction=np.zeros((3, 16, 20), np.uint8),
    )
    review = ReviewController.for_record(record, np.zeros((3, 16, 20), np.uint8), "", tmp_path / "sessions")
    assert review.session_path.parent == tmp_path / "sessions"
    assert review.save().startswith("autosaved") and review.session_path.exists()


def test_finetune_lifecycle_stages_and_cleans_up(user_models, corrections):
    controller = FinetuneController()
    assert controller.base_for(corrections, "l2gnet-ct") == "lightreseg-oct"
    assert controller.problem_with_inputs([], "x") == "add at least one exported corrections folder"
    assert "exists already" in controller.problem_with_inputs([str(corrections)], "lightreseg-oct")
    assert controller.free_name("lightreseg-oct") == "lightreseg-oct-2"
    staging = controller.start()
    assert staging.is_dir() and controller.phase is TuningPhase.TRAINING
    controller.stopped()  # cancelled: no result, nothing stays
    assert not staging.exists() and controller.phase is TuningPhase.IDLE
    with pytest.raises(ResegError, match="no new model"):
        controller.keep()


def test_a_plugin_session_records_which_spacings_the_scan_file_gave():
    known = _scan("OCT").geometry
    unknown = dataclasses.replace(known, spacing=(1.0, 1.0, 1.0), metadata={"spacing_known": (False, False, False)})
    for geometry, expected in ((known, (True, True, True)), (unknown, (False, False, False))):
        record = LabelsRecord(
            "key", tuple(OCT_CLASSES), geometry, modality="OCT", prediction=np.zeros((3, 16, 20), np.uint8)
        )
        session = ReviewController.for_record(record, np.zeros((3, 16, 20), np.uint8), "", None).session
        assert session.spacing_known == expected  # boundary exports write null for an unknown axial spacing
