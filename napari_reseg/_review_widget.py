"""The Review dock widget: go through a segmented scan slice by slice, mark what was checked, track edits,
autosave the session, check the OCT layer order, and export the corrections for retraining.

All logic lives in the engine (`reseg.review`, `reseg.edits`, `reseg.topology`, `reseg.session`,
`reseg.export`); this module wires it to napari layers, keys and dialogs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from reseg.edits import slice_edit_statistics
from reseg.errors import ResegError
from reseg.io import Volume, as_stack
from reseg.review import ReviewState, SliceStatus
from reseg.session import Session, find_session, load_session, save_session, scan_sha256, session_path_for
from reseg.topology import check_oct_topology, fix_oct_topology

from ._layers import labels_layer_kwargs
from ._paint_events import touched_slices

if TYPE_CHECKING:
    import napari

AUTOSAVE_DELAY_MS = 1500
STATUS_COLOURS = {SliceStatus.REVIEWED: QColor(60, 180, 75), SliceStatus.SKIPPED: QColor(245, 130, 48),
                  SliceStatus.UNREVIEWED: QColor(160, 160, 160)}
KEYS = {"reviewed": "Shift-R", "skip": "Shift-S", "previous": "Shift-B", "next": "Shift-N",
        "doubtful": "Shift-L"}


def _image_of(labels: Labels) -> Image | None:
    return labels.metadata.get("reseg", {}).get("image")


def _scan_volume(image: Image) -> Volume:
    """The scan as the engine's Volume: the reader's geometry with the layer's pixels (a single B-scan: Z = 1)."""
    data = np.asarray(image.data)
    stack = as_stack(data)
    geometry = image.metadata.get("reseg", {}).get("geometry")
    if isinstance(geometry, Volume) and geometry.data.shape == stack.shape:
        return dataclasses.replace(geometry, data=stack)
    return Volume(stack, spacing=((1.0,) * 3 + tuple(image.scale))[-3:], modality="unknown",
                  source=Path(image.metadata.get("reseg", {}).get("source", image.name)),
                  ndim_on_disk=data.ndim)


class ReviewWidget(QWidget):
    """Slice-by-slice review of one labels layer made by the Segment widget (or restored from a session)."""

    def __init__(self, napari_viewer: "napari.viewer.Viewer") -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.labels: Labels | None = None
        self.session: Session | None = None
        self.session_path: Path | None = None
        self.edit_stats: dict[int, dict[str, Any]] = {}
        self.pending_slices: set[int] = set()
        # Replaced in tests: yes/no questions (restore a session? overwrite an export?).
        self.ask: Callable[[str, str], bool] = self._ask
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self.autosave)

        self.labels_combo = QComboBox()
        self.reviewer_edit = QLineEdit()
        self.progress_label = QLabel("no labels layer to review yet: run Segment first")
        self.slice_list = QListWidget()
        self.slice_list.setMinimumHeight(160)
        self.buttons = {
            "reviewed": QPushButton(f"Reviewed, next ({KEYS['reviewed']})"),
            "skip": QPushButton(f"Skip ({KEYS['skip']})"),
            "previous": QPushButton(f"Previous ({KEYS['previous']})"),
            "next": QPushButton(f"Next ({KEYS['next']})"),
            "doubtful": QPushButton(f"Least confident ({KEYS['doubtful']})"),
        }
        self.topology_label = QLabel("")
        self.topology_label.setWordWrap(True)
        self.check_button = QPushButton("Check layer order")
        self.fix_button = QPushButton("Fix order")
        self.fix_button.setEnabled(False)
        self.export_format = QComboBox()
        self.export_format.addItems(["reseg training set", "nnU-Net v2 raw"])
        self.include_unreviewed = QCheckBox("also export unreviewed slices (as 'ignore')")
        self.export_button = QPushButton("Export...")
        self.save_label = QLabel("")
        self.save_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("labels", self.labels_combo)
        form.addRow("reviewer", self.reviewer_edit)
        grid = QGridLayout()
        for position, key in enumerate(("reviewed", "skip", "previous", "next", "doubtful")):
            grid.addWidget(self.buttons[key], position // 2, position % 2)
        topology = QGroupBox("OCT layer order")
        topology_layout = QVBoxLayout(topology)
        topology_layout.addWidget(self.topology_label)
        topology_layout.addWidget(self.check_button)
        topology_layout.addWidget(self.fix_button)
        export = QGroupBox("Export for retraining")
        export_layout = QVBoxLayout(export)
        export_layout.addWidget(self.export_format)
        export_layout.addWidget(self.include_unreviewed)
        export_layout.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.slice_list)
        layout.addLayout(grid)
        layout.addWidget(topology)
        layout.addWidget(export)
        layout.addWidget(self.save_label)

        self.buttons["reviewed"].clicked.connect(self.mark_reviewed_and_next)
        self.buttons["skip"].clicked.connect(self.skip_and_next)
        self.buttons["previous"].clicked.connect(lambda: self.go_to(self.current_slice() - 1))
        self.buttons["next"].clicked.connect(lambda: self.go_to(self.current_slice() + 1))
        self.buttons["doubtful"].clicked.connect(self.go_to_least_confident)
        self.check_button.clicked.connect(self.check_topology)
        self.fix_button.clicked.connect(self.fix_topology)
        self.export_button.clicked.connect(self._choose_export_folder)
        self.slice_list.itemDoubleClicked.connect(lambda item: self.go_to(self.slice_list.row(item)))
        self.labels_combo.activated.connect(lambda _: self._attach_chosen())
        self.reviewer_edit.editingFinished.connect(self._set_reviewer)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.layers.selection.events.active.connect(lambda _: self._fill_labels())
        self._bind_keys()
        self._fill_labels()
        self._set_enabled(False)

    # --- which layer ----------------------------------------------------------------------------------

    def _reviewable(self) -> list[Labels]:
        return [layer for layer in self.viewer.layers
                if isinstance(layer, Labels) and "prediction" in layer.metadata.get("reseg", {})]

    def _fill_labels(self) -> None:
        current = self.labels_combo.currentText()
        names = [layer.name for layer in self._reviewable()]
        self.labels_combo.clear()
        self.labels_combo.addItems(names)
        if current in names:
            self.labels_combo.setCurrentText(current)
        if self.labels is None and names:
            self._attach_chosen()

    def _attach_chosen(self) -> None:
        name = self.labels_combo.currentText()
        if name and (self.labels is None or self.labels.name != name):
            self.attach(self.viewer.layers[name])

    def _attached(self) -> bool:
        """True when a layer is under review; a layer that became reviewable since (a finished Segment run)
        is picked up here, so the keys work without touching the widget first."""
        if self.session is None:
            self._fill_labels()
        return self.session is not None

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (*self.buttons.values(), self.check_button, self.export_button, self.reviewer_edit):
            widget.setEnabled(enabled)

    def attach(self, labels: Labels) -> None:
        """Review `labels`: resume its session if it has one, else start one from the model's prediction."""
        self.autosave()
        if self.labels is not None:
            self.labels.events.paint.disconnect(self._on_paint)
        self.labels = labels
        self.session = labels.metadata["reseg"].get("session") or self._new_session(labels)
        labels.metadata["reseg"]["session"] = self.session
        self.edit_stats = {}
        for z in range(len(self.session.labels)):
            if not np.array_equal(self.session.labels[z], self.session.prediction[z]):
                self.edit_stats[z] = slice_edit_statistics(self.session.prediction[z], self.session.labels[z],
                                                           self.session.num_classes)
        labels.events.paint.connect(self._on_paint)
        typed = self.reviewer_edit.text().strip()
        if typed:
            self.session.review.reviewer = typed
        else:
            self.reviewer_edit.setText(self.session.review.reviewer)
        self.labels_combo.setCurrentText(labels.name)
        self.fix_button.setEnabled(False)
        self.topology_label.setText("")
        self._set_enabled(True)
        self.check_button.setEnabled(self.session.modality == "OCT")
        self.refresh()

    def _new_session(self, labels: Labels) -> Session:
        reseg = labels.metadata["reseg"]
        image, card = _image_of(labels), reseg.get("card")
        volume = _scan_volume(image) if image is not None else None
        stack = as_stack(labels.data)
        prediction = reseg["prediction"]
        source = volume.source if volume is not None else Path(labels.name)
        self.session_path = session_path_for(source) if source.exists() else None
        return Session(
            labels=stack, prediction=as_stack(prediction),
            review=ReviewState.new(len(stack)), classes=list(card.classes) if card else [],
            spacing=volume.spacing if volume is not None else (1.0, 1.0, 1.0), source=source.resolve(),
            source_sha256=scan_sha256(source) if source.exists() else "", modality=card.modality if card else "unknown",
            model_name=card.name if card else None, weights_sha256=card.weights_sha256 if card else None,
            confidence=reseg.get("slice_confidence"),
        )

    # --- navigation and review state -------------------------------------------------------------------

    def current_slice(self) -> int:
        if self.labels is None or self.labels.ndim == 2:
            return 0
        return int(self.viewer.dims.current_step[self.viewer.dims.ndim - 3])

    def go_to(self, index: int | None) -> None:
        if self.session is None or index is None:
            return
        index = int(np.clip(index, 0, len(self.session.review) - 1))
        if self.labels.ndim == 3:
            self.viewer.dims.set_current_step(self.viewer.dims.ndim - 3, index)
        self.slice_list.setCurrentRow(index)

    def _mark(self, status: SliceStatus) -> None:
        if not self._attached():
            return
        index = self.current_slice()
        self.session.review.mark(index, status, reviewer=self.reviewer_edit.text().strip() or None)
        self.refresh()
        self.autosave()
        self.go_to(self.session.review.next_unreviewed(index))

    def mark_reviewed_and_next(self) -> None:
        self._mark(SliceStatus.REVIEWED)

    def skip_and_next(self) -> None:
        self._mark(SliceStatus.SKIPPED)

    def go_to_least_confident(self) -> None:
        if not self._attached():
            return
        if self.session.confidence is None:
            show_info("napari-reseg: no model confidence for this layer; going to the next unreviewed slice")
            self.go_to(self.session.review.next_unreviewed(self.current_slice()))
            return
        self.go_to(self.session.review.least_confident_unreviewed(self.session.confidence))

    def _set_reviewer(self) -> None:
        if self.session is not None and self.reviewer_edit.text().strip():
            self.session.review.reviewer = self.reviewer_edit.text().strip()

    def refresh(self) -> None:
        """Progress line and one list row per slice: status, who, when, and how much was edited."""
        if self.session is None:
            return
        review = self.session.review
        unit = "B-scans" if self.session.modality == "OCT" else "slices"
        self.progress_label.setText(review.progress_text(unit))
        self.slice_list.clear()
        for index, entry in enumerate(review.slices):
            parts = [f"{index:3d}", entry.status.value]
            if entry.reviewer:
                parts.append(f"{entry.reviewer} {(entry.timestamp or '')[11:16]}")
            if index in self.edit_stats:
                stats = self.edit_stats[index]
                parts.append(f"edited {stats['pixels_changed']:,} px, Dice {stats['mean_dice']:.3f}")
            if self.session.confidence is not None and np.isfinite(self.session.confidence[index]):
                parts.append(f"conf {self.session.confidence[index]:.3f}")
            item = QListWidgetItem("  ".join(parts))
            item.setForeground(STATUS_COLOURS[entry.status])
            item.setToolTip(f"{entry.status.value} by {entry.reviewer} at {entry.timestamp}" if entry.reviewer
                            else "not reviewed yet")
            self.slice_list.addItem(item)
        self.slice_list.setCurrentRow(self.current_slice())

    # --- edits and autosave ----------------------------------------------------------------------------

    def _on_paint(self, event) -> None:
        """napari announces an edit as it records its history, before every pixel is written: note the
        slices now and measure them once the event loop is back (zero-delay timer)."""
        if self.session is None:
            return
        self.pending_slices |= touched_slices(event.value, self.labels.ndim, len(self.session.labels))
        QTimer.singleShot(0, self._measure_edits)

    def _measure_edits(self) -> None:
        if self.session is None or not self.pending_slices:
            return
        for z in sorted(self.pending_slices):
            self.edit_stats[z] = slice_edit_statistics(self.session.prediction[z], self.session.labels[z],
                                                       self.session.num_classes)
        self.pending_slices.clear()
        self.refresh()
        self.autosave_timer.start()

    def autosave(self) -> None:
        """Save the session now (atomically); edits schedule this after a short pause, review marks at once."""
        self.autosave_timer.stop()
        if self.session is None or self.session_path is None:
            if self.session is not None:
                self.save_label.setText("not autosaved: the scan was not opened from a file")
            return
        try:
            save_session(self.session_path, self.session)
        except (ResegError, OSError, ValueError) as error:
            show_error(f"napari-reseg could not autosave the review of {self.labels.name!r}: {error}")
            return
        self.save_label.setText(f"autosaved {self.session.saved} to {self.session_path}")

    def _on_layer_removed(self, event) -> None:
        if event.value is self.labels:
            self.autosave()
            self.labels, self.session, self.session_path = None, None, None
            self._set_enabled(False)
        self._fill_labels()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        self.autosave()
        super().closeEvent(event)

    # --- restoring -------------------------------------------------------------------------------------

    def _on_layer_inserted(self, event) -> None:
        layer = event.value
        if isinstance(layer, Labels):
            self._fill_labels()
            return
        source = layer.metadata.get("reseg", {}).get("source") if isinstance(layer, Image) else None
        if not source:
            return
        try:
            found = find_session(source)
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        if found.stale is not None:
            show_info(f"napari-reseg: {found.message}")
        if found and self.ask("Restore review session?", f"{found.message}. Restore it?"):
            self.restore(layer, found.path)

    def restore(self, image: Image, path: Path) -> Labels:
        """Add the saved corrections of `image` as its labels layer and resume reviewing them."""
        session = load_session(path)
        kwargs = labels_layer_kwargs(session.classes, image.scale, f"{image.name} labels", units=image.units)
        kwargs["metadata"] = {"reseg": {"image": image, "model": session.model_name, "session": session,
                                        "prediction": session.prediction, "slice_confidence": session.confidence}}
        data = session.labels if image.ndim == 3 else session.labels[0]
        session.labels = as_stack(data)  # a view of the layer's array: autosave sees every edit
        labels = self.viewer.add_labels(data, **kwargs)
        self.session_path = path
        self.attach(labels)
        show_info(f"napari-reseg: restored {session.review.progress_text()} from {path.name}")
        return labels

    # --- topology --------------------------------------------------------------------------------------

    def check_topology(self) -> None:
        if not self._attached():
            return
        report = check_oct_topology(self.session.labels)
        if report.ok:
            self.topology_label.setText("layers are in order in every A-scan; no fluid outside the retina")
        else:
            slices = ", ".join(map(str, report.problem_slices[:12])) + (" ..." if len(report.problem_slices) > 12 else "")
            self.topology_label.setText(
                f"{len(report.broken)} A-scans with layers out of order, {len(report.misplaced_fluid)} with fluid "
                f"outside the retina, in B-scans {slices}"
            )
        self.fix_button.setEnabled(not report.ok)

    def fix_topology(self) -> None:
        """Re-order the broken A-scans as one undoable edit (napari's undo restores them)."""
        fixed = fix_oct_topology(self.session.labels)
        changed = np.nonzero(fixed != self.session.labels)
        indices = changed if self.labels.ndim == 3 else changed[1:]
        self.labels.data_setitem(indices, fixed[changed])
        self.check_topology()

    # --- export ----------------------------------------------------------------------------------------

    def _choose_export_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export corrections to folder")
        if folder:
            self.export(Path(folder))

    def export(self, folder: Path, overwrite: bool = False):
        """Export in a worker thread; a refused overwrite asks once and tries again if the user agrees."""
        from reseg.export import export_nnunet, export_training_set

        volume = _scan_volume(_image_of(self.labels))
        include = self.include_unreviewed.isChecked()
        if self.export_format.currentIndex() == 0:
            worker = create_worker(export_training_set, self.session, folder, volume=volume,
                                   include_unreviewed=include, overwrite=overwrite, _ignore_errors=True)
        else:
            name = "".join(c for c in self.labels.name.title() if c.isalnum()) or "Reseg"
            worker = create_worker(export_nnunet, self.session, folder, 501, name, volume=volume,
                                   include_unreviewed=include, overwrite=overwrite, _ignore_errors=True)

        def done(result) -> None:
            self.save_label.setText(f"exported {len(result.added)} new and {len(result.updated)} updated slices to "
                                    f"{result.folder} ({result.total} in the dataset)")
            show_info(f"napari-reseg: {self.save_label.text()}")

        def failed(error: Exception) -> None:
            if not overwrite and "overwrite" in str(error) and self.ask("Overwrite export?", f"{error}\n\nOverwrite?"):
                self.export(folder, overwrite=True)
                return
            show_error(f"napari-reseg: export failed: {error}")

        worker.returned.connect(done)
        worker.errored.connect(failed)
        worker.start()
        return worker

    # --- keys and dialogs ------------------------------------------------------------------------------

    def _bind_keys(self) -> None:
        actions = {"reviewed": self.mark_reviewed_and_next, "skip": self.skip_and_next,
                   "previous": lambda: self.go_to(self.current_slice() - 1),
                   "next": lambda: self.go_to(self.current_slice() + 1), "doubtful": self.go_to_least_confident}
        for name, action in actions.items():
            self.viewer.bind_key(KEYS[name], lambda viewer, act=action: act(), overwrite=True)

    def _ask(self, title: str, text: str) -> bool:
        return QMessageBox.question(self, title, text) == QMessageBox.Yes

