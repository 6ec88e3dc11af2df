"""Tests of edit statistics (reseg.review.edits): exact counts for a known edit, Dice, JSON, the volume fast path."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reseg.classes import IGNORE_INDEX
from reseg.review.edits import slice_edit_statistics, volume_edit_statistics

NUM_CLASSES = 5


def _prediction() -> np.ndarray:
    """20 x 30: class 1 in columns 0..14, class 2 in 15..29, a 4 x 5 block of class 3; 0 and 4 absent."""
    labels = np.ones((20, 30), dtype=np.uint8)
    labels[:, 15:] = 2
    labels[2:6, 20:25] = 3
    return labels


def test_known_edit_gives_exact_counts_and_dice() -> None:
    prediction = _prediction()
    corrected = prediction.copy()
    corrected[:, 10:15] = 2  # move the 1|2 boundary 5 columns left: 100 pixels from 1 to 2
    corrected[2:6, 20:25] = 0  # the grader erases class 3 (20 pixels) into class 0
    stats = slice_edit_statistics(prediction, corrected, NUM_CLASSES)

    assert stats["pixels_changed"] == 120
    assert stats["fraction_changed"] == pytest.approx(120 / 600)
    assert stats["removed"] == {0: 0, 1: 100, 2: 0, 3: 20, 4: 0}
    assert stats["added"] == {0: 20, 1: 0, 2: 100, 3: 0, 4: 0}
    dice = stats["dice"]
    assert dice[0] == 0.0  # only in the correction
    assert dice[1] == pytest.approx(2 * 200 / (300 + 200))
    assert dice[2] == pytest.approx(2 * 280 / (280 + 380))
    assert dice[3] == 0.0  # erased by the grader: the prediction missed entirely
    assert dice[4] is None  # in neither
    assert stats["mean_dice"] == pytest.approx(np.mean([0.0, 0.8, 560 / 660, 0.0]))


def test_identical_slices_have_no_changes_and_dice_one() -> None:
    prediction = _prediction()
    stats = slice_edit_statistics(prediction, prediction.copy(), NUM_CLASSES)
    assert stats["pixels_changed"] == 0 and stats["fraction_changed"] == 0.0
    assert set(stats["removed"].values()) == set(stats["added"].values()) == {0}
    assert stats["dice"] == {0: None, 1: 1.0, 2: 1.0, 3: 1.0, 4: None}
    assert stats["mean_dice"] == 1.0


def test_ignored_pixels_are_changes_but_not_scored() -> None:
    prediction = _prediction()
    corrected = prediction.copy()
    corrected[:, :5] = IGNORE_INDEX  # 100 pixels of class 1 set to "unknown"
    stats = slice_edit_statistics(prediction, corrected, NUM_CLASSES)
    assert stats["pixels_changed"] == 100
    assert stats["removed"][1] == 100 and sum(stats["added"].values()) == 0
    assert stats["dice"][1] == 1.0  # the remaining class 1 pixels agree


def test_statistics_are_json_serialisable() -> None:
    prediction = _prediction()
    corrected = prediction.copy()
    corrected[0, 0] = 4
    volume = volume_edit_statistics(np.stack([prediction, prediction]), np.stack([prediction, corrected]), NUM_CLASSES)
    restored = json.loads(json.dumps(volume, allow_nan=False))
    assert [entry["slice"] for entry in restored] == [0, 1]
    assert restored[1]["added"]["4"] == 1 and restored[1]["dice"]["0"] is None


def test_volume_statistics_report_only_the_changed_slices() -> None:
    rng = np.random.default_rng(0)
    prediction = rng.integers(0, 10, size=(49, 496, 768), dtype=np.uint8)
    corrected = prediction.copy()
    corrected[[3, 30], 100:140, 200:260] = 4
    stats = volume_edit_statistics(prediction, corrected, 10)
    assert len(stats) == 49
    assert [s["slice"] for s in stats if s["pixels_changed"]] == [3, 30]
    expected = int(np.count_nonzero(prediction[3, 100:140, 200:260] != 4))
    assert stats[3]["pixels_changed"] == stats[3]["added"][4] == expected


def test_shape_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="one shape"):
        slice_edit_statistics(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8), 2)
    with pytest.raises(ValueError, match="Z, H, W"):
        volume_edit_statistics(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), 2)
