"""The Review dock widget: go through a segmented scan slice by slice, mark what was checked, track edits,
autosave the session, check the OCT layer order, and export the corrections for retraining.

It follows the labels layer the user works on: the one selected, or the one a run just filled. The review
logic is `ReviewController`'s (and the engine's); this module lays out the widget and wires it to napari.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from reseg.errors import ExportClash, ResegError
from reseg.review.state import SliceStatus

from ._display import LayerTransform
from ._layer_state import (
    LabelsRecord,
    ScanRecord,
    find_labels,
    find_scan,
    labels_identity,
    labels_record,
    pixel_free,
    reviewable_labels,
    set_record,
)
from ._layers import labels_layer_kwargs
from ._lifecycle import BackgroundTask, Connections, when_closed
from ._paint_events import touched_slices
from ._panel import Panel, Section, confirm
from ._review_controller import ReviewController
from ._settings import preferences

if TYPE_CHECKING:
    import napari

    from reseg.io import Volume
    from reseg.review.export import ExportResult
    from reseg.review.session import Session

AUTOSAVE_DELAY_MS = 1500
STATUS_COLOURS = {
    SliceStatus.REVIEWED: QColor(60, 180, 75),
    SliceStatus.SKIPPED: QColor(245, 130, 48),
    SliceStatus.UNREVIEWED: QColor(160, 160, 160),
}
KEYS = {"reviewed": "Shift-R", "skip": "Shift-S", "previous": "Shift-B", "next": "Shift-N", "doubtful": "Shift-L"}
EXPORT_FORMATS = ("reseg training set", "nnU-Net v2 raw")


def _export(
    session: Session,
    folder: Path,
    volume: Volume | None,
    nnunet_name: str | None,
    include_unreviewed: bool,
    overwrite: bool,
) -> ExportResult:
    """Worker body: one export, in our format or nnU-Net's (id 501 and the layer's name)."""
    from reseg.review.export import export_nnunet, export_training_set

    if nnunet_name is None:
        return export_training_set(
            session, folder, volume=volume, include_unreviewed=include_unreviewed, overwrite=overwrite
        )
    return export_nnunet(
        session, folder, 501, nnunet_name, volume=volume, include_unreviewed=include_unreviewed, overwrite=overwrite
    )


class _SaveWhenGone:
    """Saves the review once more when napari destroys the widget without closing it (napari quits): the
    edits of the last autosave delay are kept. A plain object: the widget itself is half gone by then."""

    def __init__(self) -> None:
        self.controller: ReviewController | None = None

    def __call__(self, *_: object) -> None:
        if self.controller is not None and self.controller.session_path is not None:
            try:
                self.controller.save()
            except (ResegError, OSError, ValueError):
                pass  # nowhere left to tell it; the previous autosave is whole (saves are atomic)


class ReviewWidget(Panel):
    """Slice-by-slice review of the labels layer the user works on (made by Segment or restored)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.controller: ReviewController | None = None
        self.identity: str | None = None
        self.connections = Connections(self)
        self.layer_connections = Connections(self)  # to the reviewed layer: redone on every attach
        self.export_task = BackgroundTask(self)
        self.key_bindings: dict[str, Callable] = {}
        self.save_when_gone = _SaveWhenGone()
        self.destroyed.connect(self.save_when_gone)
        self.autosave_timer = QTimer(self)
        self.autosave_timer.setSingleShot(True)
        self.autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self.autosave_timer.timeout.connect(self.autosave)

        self.labels_combo = QComboBox()
        self.reviewer_edit = QLineEdit(preferences().reviewer)
        self.reviewer_edit.setPlaceholderText("your name (recorded with each mark)")
        self.progress_label = QLabel("no labels layer to review yet: run Segment first")
        self.progress_label.setWordWrap(True)
        self.slice_list = QListWidget()
        self.slice_list.setMinimumHeight(90)
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
        self.export_format.addItems(EXPORT_FORMATS)
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
        topology = QWidget()
        topology_layout = QVBoxLayout(topology)
        topology_layout.setContentsMargins(0, 0, 0, 0)
        topology_layout.addWidget(self.topology_label)
        topology_buttons = QGridLayout()
        topology_buttons.addWidget(self.check_button, 0, 0)
        topology_buttons.addWidget(self.fix_button, 0, 1)
        topology_layout.addLayout(topology_buttons)
        export = QWidget()
        export_layout = QVBoxLayout(export)
        export_layout.setContentsMargins(0, 0, 0, 0)
        export_layout.addWidget(self.export_format)
        export_layout.addWidget(self.include_unreviewed)
        export_layout.addWidget(self.export_button)
        self.body.addLayout(form)
        self.body.addWidget(self.progress_label)
        self.body.addWidget(self.slice_list, 1)
        self.body.addLayout(grid)
        self.body.addWidget(Section("OCT layer order", topology))
        self.body.addWidget(Section("export for retraining", export))
        self.body.addWidget(self.save_label)

        self.buttons["reviewed"].clicked.connect(self.mark_reviewed_and_next)
        self.buttons["skip"].clicked.connect(self.skip_and_next)
        self.buttons["previous"].clicked.connect(lambda: self.go_to(self.current_slice() - 1))
        self.buttons["next"].clicked.connect(lambda: self.go_to(self.current_slice() + 1))
        self.buttons["doubtful"].clicked.connect(self.go_to_least_confident)
        self.check_button.clicked.connect(self.check_topology)
        self.fix_button.clicked.connect(self.fix_topology)
        self.export_button.clicked.connect(self._choose_export_folder)
        self.slice_list.itemDoubleClicked.connect(lambda item: self.go_to(self.slice_list.row(item)))
        self.labels_combo.activated.connect(lambda _: self._attach_identity(self.labels_combo.currentData()))
        self.reviewer_edit.editingFinished.connect(self._set_reviewer)
        self.connections.connect(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self.connections.connect(self.viewer.layers.events.removed, self._on_layer_removed)
        self.connections.connect(self.viewer.layers.selection.events.active, lambda _: self._follow_selection())
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                self.connections.connect(layer.events.metadata, self._on_labels_metadata)
        self._bind_keys()
        when_closed(self, self._close)
        self._set_enabled(False)
        self._fill_labels()
        self._follow_selection()
        if self.controller is None and self.labels_combo.count():
            self._attach_identity(self.labels_combo.itemData(0))

    # --- which layer ----------------------------------------------------------------------------------

    def _layer(self, identity: str | None = None) -> Labels | None:
        identity = identity or self.identity
        return find_labels(self.viewer.layers, identity)

    @property
    def labels(self) -> Labels | None:
        """The labels layer under review (looked up afresh: napari hands out a new proxy on every lookup)."""
        return self._layer() if self.identity else None

    def _fill_labels(self) -> None:
        self.labels_combo.clear()
        for layer in self.viewer.layers:
            record = reviewable_labels(layer)
            if record is not None:
                self.labels_combo.addItem(layer.name, labels_identity(record))
        self.labels_combo.setCurrentIndex(max(self.labels_combo.findData(self.identity), 0))

    def _follow_selection(self) -> None:
        record = reviewable_labels(self.viewer.layers.selection.active)
        if record is not None and labels_identity(record) != self.identity:
            self._attach_identity(labels_identity(record))

    def _on_labels_metadata(self, event: Any) -> None:
        """A labels layer's record changed (a run finished, a session started): review it if it is the one
        selected or nothing is under review; refresh if it is the one under review."""
        self._fill_labels()
        record = reviewable_labels(event.source)
        if record is None:
            return
        identity = labels_identity(record)
        if identity == self.identity:
            if self.controller is not None and record.session is not self.controller.session:
                self._attach_identity(identity)
            else:
                self.refresh()
            return
        active = reviewable_labels(self.viewer.layers.selection.active)
        if self.identity is None or (active is not None and labels_identity(active) == identity):
            self._attach_identity(identity)

    def _attach_identity(self, identity: str | None) -> None:
        layer = self._layer(identity) if identity else None
        if layer is not None:
            self.attach(layer)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (*self.buttons.values(), self.export_button, self.reviewer_edit):
            widget.setEnabled(enabled)
        oct_scan = enabled and self.controller is not None and self.controller.session.modality == "OCT"
        self.check_button.setEnabled(oct_scan)
        self.fix_button.setEnabled(False)

    def attach(self, labels: Labels) -> None:
        """Review `labels`: resume its session if it has one, else start one from the model's prediction."""
        self.autosave()
        self.layer_connections.disconnect_all()
        record = labels_record(labels)
        assert record is not None, "only a labels layer of ours is reviewed"
        settings = preferences()
        self.controller = ReviewController.for_record(
            record, labels.data, self.reviewer_edit.text().strip(), settings.session_dir
        )
        self.identity = labels_identity(record)
        self.save_when_gone.controller = self.controller
        if not self.reviewer_edit.text().strip():
            self.reviewer_edit.setText(self.controller.session.review.reviewer)
        self.layer_connections.connect(labels.events.paint, self._on_paint)
        self.topology_label.setText("")
        self._fill_labels()
        self._set_enabled(True)
        self.refresh()
        self.save_label.setText(
            "" if self.controller.session_path else "not autosaved: the scan was not opened from a file"
        )

    # --- navigation and review state -------------------------------------------------------------------

    def current_slice(self) -> int:
        labels = self.labels
        if labels is None or labels.ndim == 2:
            return 0
        return int(self.viewer.dims.current_step[self.viewer.dims.ndim - 3])

    def go_to(self, index: int | None) -> None:
        labels = self.labels
        if self.controller is None or labels is None or index is None:
            return
        index = self.controller.clamp(index)
        if labels.ndim == 3:
            self.viewer.dims.set_current_step(self.viewer.dims.ndim - 3, index)
        self.slice_list.setCurrentRow(index)

    def _mark(self, status: SliceStatus) -> None:
        if self.controller is None:
            return
        index = self.current_slice()
        following = self.controller.mark(index, status, self.reviewer_edit.text().strip())
        labels = self.labels
        if labels is not None and (record := labels_record(labels)) is not None:
            # announces the marks (`layer.events.metadata`): the Fundus dock shows them, and this widget's own
            # handler of the event refreshes it
            set_record(labels, record)
        else:
            self.refresh()
        self.autosave()
        self.go_to(following)

    def mark_reviewed_and_next(self) -> None:
        self._mark(SliceStatus.REVIEWED)

    def skip_and_next(self) -> None:
        self._mark(SliceStatus.SKIPPED)

    def go_to_least_confident(self) -> None:
        if self.controller is None:
            return
        index, note = self.controller.least_confident(self.current_slice())
        if note:
            show_info(f"napari-reseg: {note}")
        self.go_to(index)

    def _set_reviewer(self) -> None:
        if self.controller is not None and self.reviewer_edit.text().strip():
            self.controller.session.review.reviewer = self.reviewer_edit.text().strip()

    def refresh(self) -> None:
        """Progress line and one list row per slice: status, who, when, and how much was edited."""
        if self.controller is None:
            return
        self.progress_label.setText(self.controller.progress_text())
        self.slice_list.clear()
        for row in self.controller.rows():
            item = QListWidgetItem(row.text)
            item.setForeground(STATUS_COLOURS[row.status])
            item.setToolTip(row.tooltip)
            self.slice_list.addItem(item)
        self.slice_list.setCurrentRow(self.current_slice())

    # --- edits and autosave ----------------------------------------------------------------------------

    def _on_paint(self, event: Any) -> None:
        """napari announces an edit as it records its history, before every pixel is written: note the
        slices now and measure them once the event loop is back (zero-delay timer)."""
        if self.controller is None:
            return
        labels = self.labels
        self.controller.note_edit(touched_slices(event.value, labels.ndim if labels else 3, self.controller.n_slices))
        QTimer.singleShot(0, self._measure_edits)

    def _measure_edits(self) -> None:
        if self.controller is not None and self.controller.measure_edits():
            self.refresh()
            self.autosave_timer.start()

    def autosave(self) -> None:
        """Save the session now (atomically); edits schedule this after a short pause, review marks at once."""
        self.autosave_timer.stop()
        if self.controller is None or self.controller.session_path is None:
            return
        try:
            self.save_label.setText(self.controller.save())
        except (ResegError, OSError, ValueError) as error:
            show_error(f"napari-reseg could not autosave the review to {self.controller.session_path}: {error}")

    def _on_layer_removed(self, event: Any) -> None:
        if self.identity is not None and self._layer() is None:
            self.autosave()
            self.controller, self.identity, self.save_when_gone.controller = None, None, None
            self.layer_connections.disconnect_all()
            self._set_enabled(False)
            self.progress_label.setText("the reviewed labels layer was removed; its session is saved")
        self._fill_labels()

    # --- restoring -------------------------------------------------------------------------------------

    def _on_layer_inserted(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer, Labels):
            self.connections.connect(layer.events.metadata, self._on_labels_metadata)
            self._fill_labels()
            return
        record = layer.metadata.get("reseg") if isinstance(layer, Image) else None
        if not isinstance(record, ScanRecord) or not record.from_file:
            return
        from reseg.review.session import find_session

        try:
            found = find_session(record.source, preferences().session_dir)
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        if found.stale is not None:
            show_info(f"napari-reseg: {found.message}")
        if found.path is not None and confirm(self, "Restore review session?", f"{found.message}. Restore it?"):
            self.restore(record, found.path)

    def restore(self, scan: ScanRecord, path: Path) -> None:
        """Add the saved corrections of a scan as its labels layer and resume reviewing them."""
        from reseg.review.session import load_session

        image = find_scan(self.viewer.layers, scan.key)
        if image is None:
            show_error(f"napari-reseg: {scan.source.name} is not open any more: its review session was not restored")
            return
        try:
            session = load_session(path)
        except ResegError as error:
            show_error(f"napari-reseg: {error}")
            return
        record = LabelsRecord(
            scan_key=scan.key,
            classes=tuple(session.classes),
            geometry=pixel_free(scan.geometry),
            modality=session.modality,
            prediction=session.prediction,
            slice_confidence=session.confidence,
            session=session,
        )
        kwargs = labels_layer_kwargs(session.classes, LayerTransform.of(image), f"{image.name} labels")
        kwargs["metadata"] = {"reseg": record}
        data = session.labels if image.ndim == 3 else session.labels[0]
        labels = self.viewer.add_labels(data, **kwargs)
        session.labels = labels.data if labels.data.ndim == 3 else labels.data[None]  # edits reach the session
        self.attach(labels)
        assert self.controller is not None  # attach made it
        self.controller.session_path = path
        show_info(f"napari-reseg: restored {session.review.progress_text()} from {path.name}")

    # --- topology --------------------------------------------------------------------------------------

    def check_topology(self) -> None:
        if self.controller is None:
            return
        text, fixable = self.controller.check_topology()
        self.topology_label.setText(text)
        self.fix_button.setEnabled(fixable)

    def fix_topology(self) -> None:
        """Re-order the broken A-scans as one undoable edit (napari's undo restores them)."""
        labels = self.labels
        if self.controller is None or labels is None:
            return
        indices, values = self.controller.topology_fix()
        labels.data_setitem(indices if labels.ndim == 3 else indices[1:], values)
        self.check_topology()

    # --- export ----------------------------------------------------------------------------------------

    def _choose_export_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export corrections to folder")
        if folder:
            self.export(Path(folder))

    def export(self, folder: Path, overwrite: bool = False) -> None:
        """Export in a worker; a clash with an earlier export asks once and tries again if the user agrees."""
        labels = self.labels
        if self.controller is None or labels is None or self.export_task.running:
            return
        nnunet = self.export_format.currentIndex() == 1
        name = ("".join(c for c in labels.name.title() if c.isalnum()) or "Reseg") if nnunet else None
        self.export_button.setEnabled(False)
        self.save_label.setText(f"exporting to {folder}...")

        def done(result: ExportResult) -> None:
            self.save_label.setText(
                f"exported {len(result.added)} new and {len(result.updated)} updated slices to "
                f"{result.folder} ({result.total} in the dataset)"
            )
            show_info(f"napari-reseg: {self.save_label.text()}")

        def failed(error: Exception) -> None:
            if isinstance(error, ExportClash) and not overwrite:
                if confirm(self, "Overwrite export?", f"{error}\n\nOverwrite?"):
                    QTimer.singleShot(0, lambda: self.export(folder, overwrite=True))
                    return
                self.save_label.setText("export cancelled: nothing was written")
                return
            self.save_label.setText(f"export failed: {error}")
            show_error(f"napari-reseg: export failed: {error}")

        self.export_task.start(
            _export,
            self.controller.session,
            folder,
            self._scan_volume(labels),
            name,
            self.include_unreviewed.isChecked(),
            overwrite,
            on_done=done,
            on_error=failed,
            on_finish=lambda: self.export_button.setEnabled(self.controller is not None),
        )

    def _scan_volume(self, labels: Labels) -> Volume | None:
        """The scan's pixels when its layer is open (else the export reads the file, checking its hash)."""
        import dataclasses

        record = labels_record(labels)
        assert record is not None, "only a labels layer of ours is reviewed"
        image = find_scan(self.viewer.layers, record.scan_key)
        if image is None:
            return None
        data = np.asarray(image.data)
        stack = data if data.ndim == 3 else data[None]
        if stack.shape != record.geometry.data.shape:
            return None
        return dataclasses.replace(record.geometry, data=stack)

    # --- keys and closing ------------------------------------------------------------------------------

    def _bind_keys(self) -> None:
        actions = {
            "reviewed": self.mark_reviewed_and_next,
            "skip": self.skip_and_next,
            "previous": lambda: self.go_to(self.current_slice() - 1),
            "next": lambda: self.go_to(self.current_slice() + 1),
            "doubtful": self.go_to_least_confident,
        }
        for name, action in actions.items():
            callback = (lambda act: lambda viewer: act())(action)
            self.viewer.bind_key(KEYS[name], callback, overwrite=True)
            self.key_bindings[KEYS[name]] = callback

    def _close(self) -> None:
        """The dock was closed: save, release the keys, stop listening to the viewer."""
        self.autosave()
        for key in self.key_bindings:
            self.viewer.bind_key(key, None)
        self.key_bindings.clear()
        self.connections.disconnect_all()
        self.layer_connections.disconnect_all()
