"""What the Review widget does with one labels layer, without Qt or a viewer: the review session (marks,
reviewer, autosave), edit statistics against the model's prediction, where navigation goes, the rows and the
progress line the widget shows, and the OCT layer-order check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reseg.review.edits import slice_edit_statistics
from reseg.review.session import Session, save_session, scan_sha256, session_path_for
from reseg.review.state import ReviewState, SliceStatus
from reseg.topology import check_oct_topology, fix_oct_topology

from ._layer_state import LabelsRecord


@dataclass(frozen=True)
class SliceRow:
    text: str
    status: SliceStatus
    tooltip: str


def _spacing_known(record: LabelsRecord) -> tuple[bool, bool, bool]:
    """Which of the scan's (z, y, x) spacings its file recorded: boundary exports write null for the others."""
    z, y, x = (bool(known) for known in record.geometry.metadata.get("spacing_known", (False, False, False)))
    return z, y, x


def start_session(record: LabelsRecord, data: np.ndarray, reviewer: str) -> Session:
    """A session for a labels layer: the corrections are the layer's own array (a view, so every edit is in
    the session), measured against the model's last prediction."""
    labels = data if data.ndim == 3 else data[None]
    source = record.geometry.source
    card = record.card
    prediction = record.prediction if record.prediction is not None else labels.copy()
    from_file = source.exists()
    return Session(
        labels=labels,
        prediction=prediction,
        review=ReviewState.new(len(labels), reviewer or None),
        classes=list(record.classes),
        spacing=record.geometry.spacing,
        source=source.resolve() if from_file else source,
        source_sha256=scan_sha256(source) if from_file else "",
        modality=record.modality,
        model_name=card.name if card else None,
        weights_sha256=card.weights_sha256 if card else None,
        confidence=record.slice_confidence,
        spacing_known=_spacing_known(record),
    )


class ReviewController:
    """The review of one labels layer (its `LabelsRecord`); `session.labels` is the layer's array."""

    def __init__(self, session: Session, session_path: Path | None) -> None:
        self.session = session
        self.session_path = session_path
        self.pending: set[int] = set()
        self.edit_stats = {
            z: self._statistics(z)
            for z in range(len(session.labels))
            if not np.array_equal(session.labels[z], session.prediction[z])
        }

    @classmethod
    def for_record(
        cls, record: LabelsRecord, data: np.ndarray, reviewer: str, session_folder: Path | None
    ) -> ReviewController:
        """Resume the record's session, or start one; sessions of scans from a file are autosaved."""
        session = record.session or start_session(record, data, reviewer)
        record.session = session
        if reviewer:
            session.review.reviewer = reviewer
        from_file = session.source.exists()
        return cls(session, session_path_for(session.source, session_folder) if from_file else None)

    @property
    def unit(self) -> str:
        return "B-scans" if self.session.modality == "OCT" else "slices"

    @property
    def n_slices(self) -> int:
        return len(self.session.review)

    def progress_text(self) -> str:
        return self.session.review.progress_text(self.unit)

    # --- marks and navigation --------------------------------------------------------------------------

    def mark(self, index: int, status: SliceStatus, reviewer: str | None) -> int | None:
        """Mark a slice; returns the next unreviewed slice to go to (None when all are done)."""
        self.session.review.mark(index, status, reviewer=reviewer or None)
        return self.session.review.next_unreviewed(index)

    def clamp(self, index: int) -> int:
        return int(np.clip(index, 0, self.n_slices - 1))

    def least_confident(self, current: int) -> tuple[int | None, str | None]:
        """The least confident unreviewed slice, and a note when the model gave no confidence."""
        if self.session.confidence is None:
            return (
                self.session.review.next_unreviewed(current),
                "no model confidence for this layer; going to the next unreviewed slice",
            )
        return self.session.review.least_confident_unreviewed(self.session.confidence), None

    # --- edits -----------------------------------------------------------------------------------------

    def _statistics(self, z: int) -> dict:
        return slice_edit_statistics(self.session.prediction[z], self.session.labels[z], self.session.num_classes)

    def note_edit(self, slices: set[int]) -> None:
        """An edit touched these slices; they are measured by `measure_edits` once its pixels are written."""
        self.pending |= slices

    def measure_edits(self) -> bool:
        """Measure the slices edited since the last call; True when there were any."""
        if not self.pending:
            return False
        for z in sorted(self.pending):
            if 0 <= z < self.n_slices:
                self.edit_stats[z] = self._statistics(z)
        self.pending.clear()
        return True

    def rows(self) -> list[SliceRow]:
        """One row per slice: index, status, who and when, how much was edited, the model's confidence."""
        rows = []
        confidence = self.session.confidence
        for index, entry in enumerate(self.session.review.slices):
            parts = [f"{index:3d}", entry.status.value]
            if entry.reviewer:
                parts.append(f"{entry.reviewer} {(entry.timestamp or '')[11:16]}")
            if index in self.edit_stats:
                stats = self.edit_stats[index]
                parts.append(f"edited {stats['pixels_changed']:,} px, Dice {stats['mean_dice']:.3f}")
            if confidence is not None and np.isfinite(confidence[index]):
                parts.append(f"conf {confidence[index]:.3f}")
            tooltip = (
                f"{entry.status.value} by {entry.reviewer} at {entry.timestamp}"
                if entry.reviewer
                else "not reviewed yet"
            )
            rows.append(SliceRow("  ".join(parts), entry.status, tooltip))
        return rows

    # --- saving ----------------------------------------------------------------------------------------

    def save(self) -> str:
        """Save the session now (atomically); returns the line to show. Raises OSError / ResegError."""
        if self.session_path is None:
            return "not autosaved: the scan was not opened from a file"
        save_session(self.session_path, self.session)
        return f"autosaved {self.session.saved} to {self.session_path}"

    # --- OCT layer order -------------------------------------------------------------------------------

    def check_topology(self) -> tuple[str, bool]:
        """The check's summary, and whether there is something to fix."""
        report = check_oct_topology(self.session.labels)
        if report.ok:
            return "layers are in order in every A-scan; no fluid outside the retina", False
        shown = ", ".join(map(str, report.problem_slices[:12])) + (" ..." if len(report.problem_slices) > 12 else "")
        return (
            f"{len(report.broken)} A-scans with layers out of order, {len(report.misplaced_fluid)} with fluid "
            f"outside the retina, in B-scans {shown}"
        ), True

    def topology_fix(self) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """(indices, values) of the pixels the fix changes, in the session's (Z, Y, X) order."""
        fixed = fix_oct_topology(self.session.labels)
        changed = np.nonzero(fixed != self.session.labels)
        return changed, fixed[changed]
