"""Tests of the per-slice review state (reseg.review.state): marking, navigation, confidence jump, round trip."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from reseg.review.state import ReviewState, SliceReview, SliceStatus


def test_new_state_is_all_unreviewed_with_a_reviewer() -> None:
    state = ReviewState.new(49)
    assert len(state) == 49
    assert state.indices("unreviewed") == list(range(49))
    assert state.reviewer  # the OS user, or "unknown"
    assert ReviewState.new(3, reviewer="Dr. Chiu").reviewer == "Dr. Chiu"


def test_mark_records_who_and_when_and_unmark_forgets() -> None:
    state = ReviewState.new(5, reviewer="grader A")
    state.mark(2, SliceStatus.REVIEWED)
    review = state.slices[2]
    assert review.status is SliceStatus.REVIEWED and review.reviewer == "grader A"
    assert datetime.fromisoformat(review.timestamp).tzinfo is not None  # UTC, parseable

    state.mark(3, "skipped", reviewer="grader B", timestamp="2026-01-02T03:04:05+00:00")
    assert state.slices[3] == SliceReview(SliceStatus.SKIPPED, "grader B", "2026-01-02T03:04:05+00:00")

    state.reviewer = "grader C"  # the editable reviewer name applies to later marks only
    state.mark(4, "reviewed")
    assert state.slices[4].reviewer == "grader C" and state.slices[2].reviewer == "grader A"

    state.mark(2, "unreviewed")
    assert state.slices[2] == SliceReview()
    assert state.indices(SliceStatus.REVIEWED) == [4]
    assert state.indices(SliceStatus.SKIPPED) == [3]
    with pytest.raises(ValueError):
        state.mark(0, "approved")


def test_progress_text_counts_reviewed_only() -> None:
    state = ReviewState.new(49)
    for i in range(23):
        state.mark(i, "reviewed")
    state.mark(30, "skipped")
    assert state.reviewed_count == 23
    assert state.progress_text("B-scans") == "23 / 49 B-scans reviewed"
    assert state.progress_text() == "23 / 49 slices reviewed"


def test_next_unreviewed_wraps_around() -> None:
    state = ReviewState.new(6)
    for i in (0, 1, 4):
        state.mark(i, "reviewed")
    state.mark(5, "skipped")  # skipped slices are not "unreviewed"
    assert state.next_unreviewed() == 2
    assert state.next_unreviewed(after=2) == 3
    assert state.next_unreviewed(after=3) == 2  # past the end, back to the start
    assert state.next_unreviewed(after=5) == 2
    state.mark(2, "reviewed")
    assert state.next_unreviewed(after=3) == 3  # the current slice itself comes last
    state.mark(3, "reviewed")
    assert state.next_unreviewed(after=3) is None
    assert ReviewState.new(0).next_unreviewed() is None


def test_least_confident_unreviewed() -> None:
    state = ReviewState.new(5)
    confidence = np.array([0.2, 0.9, 0.5, np.nan, 0.4])
    assert state.least_confident_unreviewed(confidence) == 0
    state.mark(0, "reviewed")
    assert state.least_confident_unreviewed(confidence) == 4  # NaN (not predicted) is passed over
    state.mark(4, "skipped")
    assert state.least_confident_unreviewed(confidence) == 2
    for i in (1, 2):
        state.mark(i, "reviewed")
    assert state.least_confident_unreviewed(confidence) == 3  # only NaN left: the next unreviewed slice
    state.mark(3, "reviewed")
    assert state.least_confident_unreviewed(confidence) is None
    with pytest.raises(ValueError, match="one confidence per slice"):
        state.least_confident_unreviewed(np.ones(4))


def test_round_trip_through_json() -> None:
    state = ReviewState.new(4, reviewer="grader A")
    state.mark(0, "reviewed")
    state.mark(2, "skipped", reviewer="grader B", timestamp="2026-01-02T03:04:05+00:00")
    restored = ReviewState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    assert restored.slices[0].status is SliceStatus.REVIEWED
    assert restored.progress_text("B-scans") == "1 / 4 B-scans reviewed"
