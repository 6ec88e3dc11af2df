"""Per-slice review state: which B-scans / slices a grader has checked, skipped or not seen, by whom and when.

This is what turns corrected labels into trustworthy training data: an export keeps only reviewed slices
unless asked otherwise, and records who reviewed each one and when.
"""

from __future__ import annotations

import getpass
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np


class SliceStatus(StrEnum):
    UNREVIEWED = "unreviewed"
    REVIEWED = "reviewed"
    SKIPPED = "skipped"


def default_reviewer() -> str:
    """The operating-system user name, a sensible default for the editable reviewer field."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class SliceReview:
    status: SliceStatus = SliceStatus.UNREVIEWED
    reviewer: str | None = None
    timestamp: str | None = None  # ISO 8601, UTC


@dataclass
class ReviewState:
    """Review status of every slice of one scan."""

    slices: list[SliceReview]
    reviewer: str = field(default_factory=default_reviewer)

    @classmethod
    def new(cls, n_slices: int, reviewer: str | None = None) -> ReviewState:
        return cls([SliceReview() for _ in range(n_slices)], reviewer or default_reviewer())

    def __len__(self) -> int:
        return len(self.slices)

    def mark(
        self, index: int, status: SliceStatus | str, reviewer: str | None = None, timestamp: str | None = None
    ) -> None:
        """Set a slice's status; reviewed/skipped slices record who and when, unreviewed ones forget it."""
        status = SliceStatus(status)
        if status is SliceStatus.UNREVIEWED:
            self.slices[index] = SliceReview()
        else:
            self.slices[index] = SliceReview(status, reviewer or self.reviewer, timestamp or now_iso())

    def indices(self, status: SliceStatus | str) -> list[int]:
        status = SliceStatus(status)
        return [i for i, review in enumerate(self.slices) if review.status is status]

    @property
    def reviewed_count(self) -> int:
        return len(self.indices(SliceStatus.REVIEWED))

    def progress_text(self, unit: str = "slices") -> str:
        return f"{self.reviewed_count} / {len(self)} {unit} reviewed"

    def next_unreviewed(self, after: int = -1) -> int | None:
        """The first unreviewed slice after `after`, wrapping around; None when all are done.

        The default starts from slice 0; `after` may be any slice index (the current one).
        """
        if not self.slices:
            return None
        start = (after + 1) % len(self)
        order = list(range(start, len(self))) + list(range(0, start))
        return next((i for i in order if self.slices[i].status is SliceStatus.UNREVIEWED), None)

    def least_confident_unreviewed(self, slice_confidence: np.ndarray) -> int | None:
        """The unreviewed slice whose model confidence (one score per slice, e.g. mean max-softmax) is lowest.

        NaN scores (slices not yet predicted) are passed over; when every unreviewed slice has one, the
        first unreviewed slice is returned. The lowest index wins a tie.
        """
        scores = np.asarray(slice_confidence, dtype=float)
        if scores.shape != (len(self),):
            raise ValueError(f"expected one confidence per slice ({len(self)}), got shape {scores.shape}")
        candidates = [i for i in self.indices(SliceStatus.UNREVIEWED) if not np.isnan(scores[i])]
        if not candidates:
            return self.next_unreviewed()
        return min(candidates, key=lambda i: scores[i])

    def to_dict(self) -> dict[str, Any]:
        return {
            "reviewer": self.reviewer,
            "slices": [{**asdict(review), "status": review.status.value} for review in self.slices],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReviewState:
        slices = [SliceReview(SliceStatus(s["status"]), s.get("reviewer"), s.get("timestamp")) for s in data["slices"]]
        return cls(slices, data.get("reviewer") or default_reviewer())
