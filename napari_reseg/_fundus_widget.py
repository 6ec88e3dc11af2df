"""The Fundus dock widget: the scan's fundus (SLO) image beside its B-scans, with every B-scan's position on
it (a circle for a circle scan), the current B-scan highlighted and the reviewed / skipped ones marked; a
click on a B-scan's line goes to that B-scan.

It follows the scan the user works on: the scan layer selected, or the scan of the labels layer selected, or
a scan just opened. The geometry (mm on the fundus to its pixels, which B-scan a click means) is the engine's
(`reseg.measurement.fundus`); the review marks are the labels layer's session, re-read whenever the Review
widget announces new marks through the layer's metadata.

Not a `Panel`: it stays beside the tabbed Segment / Review dock instead of becoming one of its tabs, so that
the fundus is in view while the grader reviews.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from napari.layers import Image, Labels
from qtpy.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from reseg.errors import InputError
from reseg.measurement.fundus import FundusView, fundus_view
from reseg.review.state import SliceStatus

from ._fundus_canvas import CURRENT_COLOUR, PATH_COLOURS, START_COLOUR, FundusCanvas
from ._layer_state import METADATA_KEY, ScanRecord, find_scan, labels_record, reviewable_labels
from ._lifecycle import Connections, when_closed

if TYPE_CHECKING:
    import napari

NO_SCAN = "open an OCT scan (.vol, .e2e, .fda) to see its fundus image and where its B-scans lie"
MINIMUM_HEIGHT = 360
EYES = {"OD": "right eye (OD)", "OS": "left eye (OS)"}


def _scan_key(layer: object, layers: Any) -> str | None:
    """The scan a layer belongs to, if it is one of ours and that scan is open: the scan itself or its labels."""
    record = layer.metadata.get(METADATA_KEY) if isinstance(layer, Image | Labels) else None
    if isinstance(layer, Image) and isinstance(record, ScanRecord):
        return record.key
    labels = labels_record(layer) if isinstance(layer, Labels) else None
    return labels.scan_key if labels is not None and find_scan(layers, labels.scan_key) is not None else None


def _legend() -> str:
    entries = [(CURRENT_COLOUR, "current")] + [
        (PATH_COLOURS[status], text)
        for status, text in (
            (SliceStatus.REVIEWED, "reviewed"),
            (SliceStatus.SKIPPED, "skipped"),
            (SliceStatus.UNREVIEWED, "not&nbsp;reviewed"),
        )
    ]
    return (
        "&nbsp;&nbsp; ".join(
            f'<span style="color:{colour.name()}; font-weight:bold">&#9473;&#9473;</span>&nbsp;{text}'
            for colour, text in entries
        )
        + f'&nbsp;&nbsp; <span style="color:{START_COLOUR.name()}">&#9679;</span>&nbsp;first&nbsp;A-scan'
    )


class FundusWidget(QWidget):
    """The fundus of the scan the user works on, with its B-scans' positions; a click picks a B-scan."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.scan_key: str | None = None
        self.view: FundusView | None = None
        self.n_bscans = 0
        self.scan_is_3d = False
        self.connections = Connections(self)

        self.title = QLabel("")
        self.title.setWordWrap(True)
        self.canvas = FundusCanvas()
        self.position_label = QLabel("")
        self.position_label.setWordWrap(True)
        self.legend = QLabel(_legend())
        self.legend.setWordWrap(True)
        self.note = QLabel(NO_SCAN)
        self.note.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        for widget in (self.title, self.note):
            layout.addWidget(widget)
        layout.addWidget(self.canvas, 1)
        for widget in (self.position_label, self.legend):
            layout.addWidget(widget)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
        # Wrapped labels report a one-line minimum, so the layout's own minimum is too short for two-line
        # ones: the dock is given room for them and a fundus a grader can read.
        self.setMinimumHeight(MINIMUM_HEIGHT)

        self.canvas.bscan_clicked.connect(self.go_to)
        self.connections.connect(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self.connections.connect(self.viewer.layers.events.removed, self._on_layer_removed)
        self.connections.connect(self.viewer.layers.selection.events.active, lambda _: self._follow_selection())
        self.connections.connect(self.viewer.dims.events.current_step, lambda _: self._show_current())
        for layer in self.viewer.layers:
            if isinstance(layer, Labels):
                self.connections.connect(layer.events.metadata, self._on_labels_metadata)
        when_closed(self, self.connections.disconnect_all)
        self._follow_selection()
        if self.scan_key is None:
            self.show_scan(self._top_scan())

    # --- which scan ------------------------------------------------------------------------------------

    def _follow_selection(self) -> None:
        key = _scan_key(self.viewer.layers.selection.active, self.viewer.layers)
        if key is not None and key != self.scan_key:
            self.show_scan(key)

    def _top_scan(self) -> str | None:
        """The scan shown when the user has chosen none: the top-most one (the last opened)."""
        layers = list(self.viewer.layers)
        return next(
            (key for layer in reversed(layers) if isinstance(layer, Image) and (key := _scan_key(layer, layers))), None
        )

    def _on_layer_inserted(self, event: Any) -> None:
        layer = event.value
        if isinstance(layer, Labels):
            self.connections.connect(layer.events.metadata, self._on_labels_metadata)
            self._show_marks()
            return
        key = _scan_key(layer, self.viewer.layers)
        if key is not None:
            self.show_scan(key)  # a scan just opened is the one to look at

    def _on_layer_removed(self, event: Any) -> None:
        if self.scan_key is not None and find_scan(self.viewer.layers, self.scan_key) is None:
            self.show_scan(self._top_scan())
        else:
            self._show_marks()

    def _on_labels_metadata(self, event: Any) -> None:
        record = labels_record(event.source)
        if record is not None and record.scan_key == self.scan_key:
            self._show_marks()

    def show_scan(self, key: str | None) -> None:
        """Show the scan's fundus and B-scan positions, or say why there is nothing to show."""
        layer = find_scan(self.viewer.layers, key) if key is not None else None
        record = layer.metadata[METADATA_KEY] if layer is not None else None
        self.scan_key = key if record is not None else None
        self.view = None
        note: str | None = NO_SCAN
        if isinstance(record, ScanRecord):
            self.n_bscans = int(record.geometry.data.shape[0])
            self.scan_is_3d = layer is not None and layer.ndim == 3
            try:
                self.view = fundus_view(record.geometry.metadata, self.n_bscans, record.source)
                note = self.view.note if self.view is not None else "this file holds no fundus image"
            except InputError as error:
                note = f"the fundus cannot be shown: {error}"
            self.title.setText(self._title(record, layer.name if layer is not None else record.source.name))
        else:
            self.title.setText("")
        self.note.setText(note or "")
        self.note.setVisible(bool(note))
        for widget in (self.canvas, self.position_label, self.legend):
            widget.setVisible(self.view is not None)
        self.canvas.show_view(self.view)
        self._show_marks()

    def _title(self, record: ScanRecord, name: str) -> str:
        metadata = record.geometry.metadata
        pattern = metadata.get("scan_pattern")
        eye = EYES.get(str(metadata.get("laterality", "")).upper())
        count = f"{self.n_bscans} B-scan{'s' if self.n_bscans != 1 else ''}"
        details = ", ".join(part for part in (f"{pattern} scan" if pattern else None, count, eye) if part)
        return f"<b>{name}</b>: {details}"

    # --- current B-scan and review marks ----------------------------------------------------------------

    def current_bscan(self) -> int:
        if not self.scan_is_3d:
            return 0
        return int(self.viewer.dims.current_step[self.viewer.dims.ndim - 3])

    def go_to(self, index: int) -> None:
        """Show B-scan `index` in the viewer (what a click on its line asks for)."""
        if self.scan_is_3d and 0 <= index < self.n_bscans:
            self.viewer.dims.set_current_step(self.viewer.dims.ndim - 3, index)

    def _statuses(self) -> tuple[SliceStatus, ...]:
        """The marks of the scan's review session: of the labels layer selected, else of its first one."""
        records = [
            record
            for layer in self.viewer.layers
            if (record := reviewable_labels(layer)) is not None
            and record.scan_key == self.scan_key
            and record.session is not None
            and len(record.session.review) == self.n_bscans
        ]
        active = reviewable_labels(self.viewer.layers.selection.active)
        chosen = next((r for r in records if active is not None and r.session is active.session), None)
        chosen = chosen or (records[0] if records else None)
        if chosen is None or chosen.session is None:
            return ()
        return tuple(entry.status for entry in chosen.session.review.slices)

    def _show_marks(self) -> None:
        if self.view is not None:
            self.canvas.set_statuses(self._statuses())
        self._show_current()

    def _show_current(self) -> None:
        if self.view is None:
            return
        index = min(self.current_bscan(), self.n_bscans - 1)
        self.canvas.set_current(index)
        status = self.canvas.statuses[index].value if index < len(self.canvas.statuses) else "not under review"
        if self.n_bscans == 1:
            self.position_label.setText(f"its one B-scan: {status}")
        else:
            self.position_label.setText(
                f"B-scan {index} (of 0-{self.n_bscans - 1}): {status}. Click a line to go to its B-scan."
            )
