"""The Boundaries dock widget: correct OCT layers by moving the lines between them, as graders do.

The boundaries of the B-scan on screen are drawn over it as a Shapes layer, one line per boundary in the
colour of the layer below it and named in the dock. With that layer selected, the mouse edits them:

- Drag: press on a boundary and pull; the point moves and its neighbours follow over the chosen reach.
- Redraw: draw the boundary where it belongs; the stretch drawn replaces it.
- Snap: click where the boundary must pass; the stretch around it (to the previous anchor on either side,
  or the reach) is re-routed through the model's most probable path, so one click fixes a long stretch.

Every edit moves the other boundaries out of the way where they would cross, keeps fluid inside the retina,
and writes only the pixels that change through `Labels.data_setitem`: one undoable step per stroke (napari's
undo, also the dock's Undo and Ctrl-Z on the lines), announced as a paint event, so the Review widget tracks,
counts and autosaves it like a paint edit. The engine half (`reseg.review.boundary_editing`) has the logic;
the model's probabilities for snapping come from an engine process of this widget's own, started on the
first snap, one B-scan at a time in a worker.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Labels, Shapes
from napari.utils.notifications import show_error
from qtpy.QtGui import QColor, QPixmap
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QWidget,
)

from reseg.classes import OCT_BOUNDARIES, OCT_CLASSES
from reseg.errors import ResegError
from reseg.evaluation.evaluate import device_boundaries
from reseg.review.boundary_editing import (
    N_BOUNDARIES,
    boundary_cost,
    bscan_boundaries,
    drag_profile,
    edited_pixels,
    move_boundary,
    nearest_boundary,
    snap_path,
    stroke_columns,
)

from ._engine_process import EngineProcess, EngineStopped
from ._layer_state import (
    DerivedImageRecord,
    LabelsRecord,
    find_derived,
    find_labels,
    find_scan,
    labels_identity,
    reviewable_labels,
    set_record,
)
from ._lifecycle import BackgroundTask, Connections, when_closed
from ._panel import Panel
from ._settings import preferences

if TYPE_CHECKING:
    import napari

TOOLS = ("Drag", "Redraw", "Snap")
LINES_KIND = "boundaries"
DEVICE_KIND = "device boundaries"
PICK_ROWS = 12  # a press this many rows from every boundary picks none (Drag, Snap): it was not meant for one
DEFAULT_REACH = 24  # columns a dragged point bends on either side; a snap re-routes up to 8 times this
SNAP_REACH_FACTOR = 8
CACHED_BSCANS = 6  # B-scans whose model probabilities are kept (7.6 MB each for 496 x 768)


def boundary_colours() -> list[tuple[float, float, float, float]]:
    """Boundary k in the colour of the class below it (BM in the choroid's), opaque."""
    colours = []
    for k in range(len(OCT_BOUNDARIES)):
        red, green, blue = OCT_CLASSES[k + 1].color
        colours.append((red / 255, green / 255, blue / 255, 1.0))
    return colours


def is_oct_layers(record: LabelsRecord | None) -> bool:
    """Labels whose classes are the OCT layers the boundaries separate."""
    return record is not None and [c.name for c in record.classes[: len(OCT_CLASSES)]] == [c.name for c in OCT_CLASSES]


def _probabilities_in_engine(
    engine: EngineProcess, model_ref: str, weights_sha256: str | None, image: np.ndarray, spacing: Any
) -> np.ndarray:
    """Worker body: one B-scan's class probabilities (C, H, W) from the engine process."""
    messages = engine.run(
        "probabilities",
        model_ref=model_ref,
        weights_sha256=weights_sha256,
        device=preferences().device,
        image=image,
        pixel_spacing=spacing,
    )
    return np.asarray(next(messages), dtype=np.float32)


def _path(line: np.ndarray, z: int, ndim: int) -> np.ndarray:
    """A boundary's heights as a napari path on B-scan `z`, breaking nowhere: A-scans the device left out (NaN)
    are bridged. A boundary lies between rows, above its first row (pixel centres are at whole numbers)."""
    columns = np.arange(len(line), dtype=np.float64)
    known = np.isfinite(line)
    yx = np.column_stack([line[known] - 0.5, columns[known]])
    return np.column_stack([np.full(len(yx), z), yx]) if ndim == 3 else yx


class BoundaryWidget(Panel):
    """Dock widget: the boundaries of the B-scan on screen as editable lines over an OCT labels layer."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.identity: str | None = None
        self.heights: np.ndarray | None = None  # (8, W) of the B-scan shown
        self.device: dict[int, np.ndarray] = {}  # boundary index -> (Z, W) heights the scan's device drew
        self.shown_slice: int | None = None
        self.anchors: dict[tuple[int, int], list[tuple[int, float]]] = {}  # (B-scan, boundary) -> snap anchors
        self.probabilities: OrderedDict[int, np.ndarray] = OrderedDict()
        self.pending_snap: tuple[int, int, int, float] | None = None  # (B-scan, boundary, column, row)
        self.engine_process = EngineProcess()
        self.destroyed.connect(lambda *_: self.engine_process.close())
        self.task = BackgroundTask(self)
        self.layer_connections = Connections(self)
        self.stroking = False  # a Drag or Redraw stroke is in progress: its lines are drawn as it goes

        self.labels_combo = QComboBox()
        self.labels_combo.setToolTip("The OCT labels layer whose boundaries are edited")
        self.tool_buttons = QButtonGroup(self)
        tools = QWidget()
        tools_layout = QGridLayout(tools)
        tools_layout.setContentsMargins(0, 0, 0, 0)
        tips = {
            "Drag": "Press on a boundary and pull: the point moves, its neighbours follow over the reach",
            "Redraw": "Draw the boundary where it belongs: the stretch drawn replaces it",
            "Snap": "Click where the boundary must pass: the model's most probable path is taken from there "
            "to the previous anchor on either side (or eight times the reach)",
        }
        for index, name in enumerate(TOOLS):
            button = QRadioButton(name)
            button.setToolTip(tips[name])
            self.tool_buttons.addButton(button, index)
            tools_layout.addWidget(button, 0, index)
        self.tool_buttons.button(0).setChecked(True)
        self.boundary_combo = QComboBox()
        self.boundary_combo.addItem("nearest to the mouse", None)
        for index, name in enumerate(OCT_BOUNDARIES):
            self.boundary_combo.addItem(name, index)
        self.reach_spin = QSpinBox()
        self.reach_spin.setRange(0, 400)
        self.reach_spin.setValue(DEFAULT_REACH)
        self.reach_spin.setSuffix(" A-scans")
        self.reach_spin.setToolTip("How far a dragged point bends the boundary on either side")
        self.undo_button = QPushButton("Undo (Ctrl-Z)")
        self.undo_button.clicked.connect(self.undo)
        self.device_button = QPushButton("Start from the device's boundaries")
        self.device_button.setToolTip(
            "Move the boundaries the scan file's device drew (e.g. ILM, RNFL-GCL, BM of a Spectralis .vol) into "
            "this B-scan's labels; the other boundaries give way. One undo step."
        )
        self.device_button.clicked.connect(self.start_from_device)
        self.device_button.setEnabled(False)
        self.carry_button = QPushButton("Carry to the next B-scan")
        self.carry_button.setToolTip(
            "Give the next B-scan this one's boundaries as a starting guess (neighbouring B-scans of a volume are "
            "alike), then go there to correct it. One undo step."
        )
        self.carry_button.clicked.connect(self.carry_to_next)
        self.fill_box = QCheckBox("Show the layers filled")
        self.fill_box.setChecked(True)
        self.fill_box.setToolTip("Hide the labels' colours to see the B-scan under the lines while editing")
        self.fill_box.toggled.connect(self._show_fill)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Labels", self.labels_combo)
        form.addRow("Tool", tools)
        form.addRow("Boundary", self.boundary_combo)
        form.addRow("Reach", self.reach_spin)
        self.body.addLayout(form)
        self.body.addWidget(self._legend())
        self.body.addWidget(self.fill_box)
        self.body.addWidget(self.undo_button)
        self.body.addWidget(self.device_button)
        self.body.addWidget(self.carry_button)
        self.body.addWidget(self.status_label)
        self.body.addStretch(1)

        self.labels_combo.activated.connect(lambda _: self.attach(self.labels_combo.currentData()))
        self.connections = Connections(self)  # to the viewer: undone when the dock closes
        self.connections.connect(self.viewer.layers.events.inserted, self._on_layers_changed)
        self.connections.connect(self.viewer.layers.events.removed, self._on_layers_changed)
        self.connections.connect(self.viewer.layers.selection.events.active, self._follow_selection)
        self.connections.connect(self.viewer.dims.events.current_step, self._on_step)
        for layer in self.viewer.layers:
            self._watch_metadata(layer)
        when_closed(self, self._close)
        self._on_layers_changed()

    def _close(self) -> None:
        """The dock closed: stop following napari, let go of the lines layer's mouse, end the engine."""
        self.task.cancel()
        lines = self.lines
        if lines is not None and self._on_mouse in lines.mouse_drag_callbacks:
            lines.mouse_drag_callbacks.remove(self._on_mouse)
            lines.mouse_pan = True
        self.layer_connections.disconnect_all()
        self.connections.disconnect_all()
        self.engine_process.close()

    # --- which labels layer ----------------------------------------------------------------------------

    def _legend(self) -> QWidget:
        """Each boundary's name beside a swatch of its line colour, two to a row."""
        legend = QWidget()
        grid = QGridLayout(legend)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setHorizontalSpacing(4)
        for index, (name, colour) in enumerate(zip(OCT_BOUNDARIES, boundary_colours(), strict=True)):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor.fromRgbF(*colour))
            entry = QLabel(name)
            icon = QLabel()
            icon.setPixmap(swatch)
            grid.addWidget(icon, index // 2, 2 * (index % 2))
            grid.addWidget(entry, index // 2, 2 * (index % 2) + 1)
        grid.setColumnStretch(1, 1)
        grid.setColumnStretch(3, 1)
        return legend

    def _show_fill(self, shown: bool) -> None:
        labels = self.labels
        if labels is not None:
            labels.visible = shown

    @property
    def labels(self) -> Labels | None:
        return find_labels(self.viewer.layers, self.identity) if self.identity else None

    @property
    def lines(self) -> Shapes | None:
        return self._overlay(LINES_KIND)

    def _on_layers_changed(self, event: Any = None) -> None:
        self.labels_combo.clear()
        for layer in self.viewer.layers:
            record = reviewable_labels(layer)
            if is_oct_layers(record):
                assert record is not None  # is_oct_layers checked it
                self.labels_combo.addItem(layer.name, labels_identity(record))
        if self.identity is not None and self.labels is None:
            self.identity = None
        if self.identity is None and self.labels_combo.count():
            self.attach(self.labels_combo.itemData(0))
        self.labels_combo.setCurrentIndex(max(self.labels_combo.findData(self.identity), 0))
        if self.identity is None:
            self.status_label.setText("Segment an OCT scan (or open a review session) to edit its boundaries.")
        if event is not None and getattr(event, "type", "") == "inserted":
            self._watch_metadata(event.value)

    def _watch_metadata(self, layer: Any) -> None:
        if isinstance(layer, Labels):
            self.connections.connect(layer.events.metadata, self._on_metadata)

    def _on_metadata(self, event: Any) -> None:
        self._on_layers_changed()

    def _on_step(self, event: Any) -> None:
        self.show_current()

    def _follow_selection(self, event: Any = None) -> None:
        record = reviewable_labels(self.viewer.layers.selection.active)
        if is_oct_layers(record):
            assert record is not None
            if labels_identity(record) != self.identity:
                self.attach(labels_identity(record))

    def attach(self, identity: str | None) -> None:
        """Edit this labels layer's boundaries: make its lines layer (once) and draw the B-scan on screen."""
        self.layer_connections.disconnect_all()
        self.identity, self.shown_slice, self.heights = identity, None, None
        self.anchors.clear()
        self.probabilities.clear()
        labels = self.labels
        if labels is None:
            return
        self.layer_connections.connect(labels.events.paint, lambda _: self.show_current(force=True))
        self.layer_connections.connect(labels.events.set_data, lambda _: self.show_current(force=True))
        record = reviewable_labels(labels)
        assert record is not None  # found as such
        self.device = {
            OCT_BOUNDARIES.index(name): heights for name, heights in device_boundaries(record.geometry).items()
        }
        self.device_button.setEnabled(bool(self.device))
        if self.device and self.device_lines is None:  # read-only, thin and white: to compare or start from
            scan = find_scan(self.viewer.layers, record.scan_key)
            name = f"{scan.name if scan is not None else labels.name} device boundaries"
            device = self._add_overlay(labels, record.scan_key, DEVICE_KIND, name, edge_width=1.0, opacity=0.8)
            device.editable = False
        lines = self.lines or self._add_overlay(labels, record.scan_key, LINES_KIND, f"{labels.name} boundaries")
        self._bind(lines)
        self.status_label.setText(
            f"Select '{lines.name}' to edit with the mouse; with it selected, the mouse edits instead of panning "
            "(zoom with the wheel; select another layer to pan)."
        )
        self.show_current(force=True)

    def _add_overlay(self, labels: Labels, scan_key: str, kind: str, name: str, **style: Any) -> Shapes:
        """A Shapes layer of lines over the labels, in their place and units, known by the scan and `kind`."""
        overlay = self.viewer.add_shapes(
            name=name,
            ndim=labels.ndim,
            scale=labels.scale,
            translate=labels.translate,
            units=labels.units,
            blending="translucent_no_depth",
            **style,
        )
        set_record(overlay, DerivedImageRecord(scan_key, kind))
        return self._overlay(kind) or overlay  # looked up: the viewer's own proxy of the new layer

    def _overlay(self, kind: str) -> Shapes | None:
        record = reviewable_labels(self.labels)
        return find_derived(self.viewer.layers, record.scan_key, kind, Shapes) if record else None

    @property
    def device_lines(self) -> Shapes | None:
        return self._overlay(DEVICE_KIND)

    def _bind(self, lines: Shapes) -> None:
        if self._on_mouse not in lines.mouse_drag_callbacks:
            lines.mouse_drag_callbacks.append(self._on_mouse)
        lines.mouse_pan = False
        lines.bind_key("Control-Z", lambda _layer: self.undo(), overwrite=True)

    # --- drawing ---------------------------------------------------------------------------------------

    def _showing_bscans(self) -> bool:
        """The canvas shows B-scans flat: 2-D view, the labels' last two axes displayed."""
        dims = self.viewer.dims
        return dims.ndisplay == 2 and tuple(dims.displayed)[-2:] == (dims.ndim - 2, dims.ndim - 1)

    def current_slice(self) -> int:
        labels = self.labels
        if labels is None or labels.ndim == 2:
            return 0
        return int(self.viewer.dims.current_step[self.viewer.dims.ndim - 3])

    def show_current(self, force: bool = False) -> None:
        """Draw the boundaries of the B-scan on screen (again after an edit, or when the slider moved)."""
        labels, lines = self.labels, self.lines
        if labels is None or lines is None or self.stroking:
            return
        z = self.current_slice()
        if z == self.shown_slice and not force:
            return
        new_slice, self.shown_slice = z != self.shown_slice, z
        self.heights = bscan_boundaries(np.asarray(labels.data[z] if labels.ndim == 3 else labels.data))
        self._draw_lines(lines, z)
        device_lines = self.device_lines
        if device_lines is not None and new_slice:  # they change with the B-scan only, never with an edit
            device_lines.editable = True  # napari adds shapes only to an editable layer
            device_lines.data = []
            drawn = {k: _path(heights[z], z, device_lines.ndim) for k, heights in self.device.items()}
            drawn = {k: path for k, path in drawn.items() if len(path) >= 2}  # the device drew it on this B-scan
            if drawn:
                device_lines.add_paths(list(drawn.values()), edge_color="white", edge_width=1.0)
            device_lines.features = {"boundary": [OCT_BOUNDARIES[k] for k in drawn]}
            device_lines.editable = False

    def _draw_lines(self, lines: Shapes, z: int) -> None:
        assert self.heights is not None
        lines.data = []
        lines.add_paths(
            [_path(line, z, lines.ndim) for line in self.heights], edge_color=boundary_colours(), edge_width=1.5
        )
        lines.features = {"boundary": list(OCT_BOUNDARIES)}

    @property
    def drawn_boundaries(self) -> np.ndarray:
        """(8, W) rows of the lines on screen, read back from the Shapes layer (what the grader sees)."""
        lines = self.lines
        assert lines is not None
        return np.stack([path[:, -2] + 0.5 for path in lines.data])

    # --- editing ---------------------------------------------------------------------------------------

    def _on_mouse(self, layer: Shapes, event: Any) -> Iterator[None] | None:
        labels = self.labels
        if labels is None or self.heights is None or event.button != 1 or str(layer.mode) != "pan_zoom":
            return None
        if not self._showing_bscans():
            self.status_label.setText("Boundaries are edited on a B-scan: switch to the 2-D view of the B-scans.")
            return None
        position = labels.world_to_data(event.position)
        row, column = float(position[-2]) + 0.5, round(float(position[-1]))
        width = self.heights.shape[1]
        if not 0 <= column < width:
            return None
        tool = TOOLS[self.tool_buttons.checkedId()]
        boundary = self._pick(column, row, strict=tool != "Redraw")
        if boundary is None:
            return None
        if tool == "Snap":
            self.snap(self.current_slice(), boundary, column, row)
            return None
        return self._stroke(labels, event, tool, boundary, column, row)

    def _pick(self, column: int, row: float, strict: bool) -> int | None:
        assert self.heights is not None
        chosen = self.boundary_combo.currentData()
        if chosen is not None:
            return int(chosen)
        boundary = nearest_boundary(self.heights, column, row)
        if strict and abs(self.heights[boundary, column] - row) > PICK_ROWS:
            return None
        return boundary

    def _stroke(self, labels: Labels, event: Any, tool: str, boundary: int, column: int, row: float) -> Iterator[None]:
        """A Drag or Redraw stroke: the labels follow the mouse, and the whole stroke is one undo step."""
        assert self.heights is not None
        z, start = self.current_slice(), self.heights.copy()
        points = [(row, float(column))]
        history = labels.block_history()  # one undo step for the stroke, announced (paint event) at its end
        history.__enter__()
        self.stroking = True
        try:
            yield
            while event.type == "mouse_move":
                position = labels.world_to_data(event.position)
                points.append((float(position[-2]) + 0.5, float(position[-1])))
                if tool == "Drag":
                    columns, weights = drag_profile(column, self.reach_spin.value(), start.shape[1])
                    rows = start[boundary, columns] + (points[-1][0] - row) * weights
                else:
                    columns, rows = stroke_columns(points, start.shape[1])
                self.heights = move_boundary(start, boundary, columns, rows, labels.data.shape[-2])
                lines = self.lines
                if lines is not None:  # drawn as the mouse moves; the labels' events wait for the stroke's end
                    self._draw_lines(lines, z)
                self._write(labels, z, self.heights, columns)
                yield
        finally:
            self.stroking = False
            history.__exit__(None, None, None)  # announces the stroke (a paint event): the lines follow it

    def _write(self, labels: Labels, z: int, heights: np.ndarray, columns: np.ndarray) -> None:
        """Give `columns` of B-scan `z` the labels of `heights`, as an undoable edit of changed pixels only."""
        bscan = np.asarray(labels.data[z] if labels.ndim == 3 else labels.data)
        rows, cols, values = edited_pixels(bscan, heights, columns)
        if len(rows):
            index = (np.full(len(rows), z), rows, cols) if labels.ndim == 3 else (rows, cols)
            labels.data_setitem(index, values)

    def snap(self, z: int, boundary: int, column: int, row: float) -> None:
        """Anchor `boundary` at (column, row) of B-scan `z` and re-route the stretch around it through the
        model's most probable path (once the model's probabilities of that B-scan are here)."""
        probabilities = self.probabilities.get(z)
        if probabilities is None:
            self.pending_snap = (z, boundary, column, row)
            self._fetch_probabilities(z)
            return
        labels = self.labels
        if labels is None or self.heights is None or z != self.current_slice():
            return
        width = self.heights.shape[1]
        reach = max(self.reach_spin.value(), 1) * SNAP_REACH_FACTOR
        anchors = self.anchors.setdefault((z, boundary), [])
        # anchors an undo or a later stroke moved the boundary away from no longer hold it
        still = [(c, r) for c, r in anchors if c != column and abs(self.heights[boundary, c] - round(r)) < 0.5]
        anchors[:] = [*still, (column, row)]
        left = [a for a in anchors if column - reach <= a[0] < column]
        right = [a for a in anchors if column < a[0] <= column + reach]
        start = max(left)[0] if left else max(column - reach, 0)
        end = min(right)[0] if right else min(column + reach, width - 1)
        route = [(start, self.heights[boundary, start]), (column, row), (end, self.heights[boundary, end])]
        route = [(c, dict(anchors).get(c, r)) for c, r in route]
        columns, rows = snap_path(boundary_cost(probabilities, boundary), route)
        self._write(labels, z, move_boundary(self.heights, boundary, columns, rows, labels.data.shape[-2]), columns)
        self.status_label.setText(
            f"{OCT_BOUNDARIES[boundary]} snapped over A-scans {columns[0]}-{columns[-1]} of B-scan {z} "
            f"({len(anchors)} anchor{'s' if len(anchors) != 1 else ''} on it)."
        )

    def _fetch_probabilities(self, z: int) -> None:
        labels = self.labels
        record = reviewable_labels(labels)
        if labels is None or record is None or self.task.running:
            return
        model = record.card.name if record.card else record.session.model_name if record.session else None
        if model is None:
            self.status_label.setText("Snap needs the model that drew these labels; none is recorded for them.")
            return
        scan = find_scan(self.viewer.layers, record.scan_key)
        if scan is None:
            self.status_label.setText("Snap needs the scan these labels belong to; open it again.")
            return
        image = np.asarray(scan.data[z] if scan.ndim == 3 else scan.data)
        weights = (
            record.card.weights_sha256 if record.card else record.session.weights_sha256 if record.session else None
        )
        self.status_label.setText(f"Computing {model}'s probabilities for B-scan {z} ...")
        self.task.start(
            _probabilities_in_engine,
            self.engine_process,
            model,
            weights,
            image,
            record.geometry.pixel_spacing,
            on_done=lambda probabilities: self._probabilities_arrived(z, probabilities),
            on_error=self._snap_failed,
            on_finish=self._fetch_pending,
        )

    def _probabilities_arrived(self, z: int, probabilities: np.ndarray) -> None:
        self.probabilities[z] = probabilities
        while len(self.probabilities) > CACHED_BSCANS:
            self.probabilities.popitem(last=False)
        pending, self.pending_snap = self.pending_snap, None
        if pending is not None and pending[0] == z:
            self.snap(*pending)

    def _fetch_pending(self) -> None:
        """A snap clicked on another B-scan while this one's probabilities were computed: fetch its own now."""
        if self.pending_snap is not None and self.pending_snap[0] not in self.probabilities:
            self._fetch_probabilities(self.pending_snap[0])

    def _snap_failed(self, error: Exception) -> None:
        self.pending_snap = None
        if isinstance(error, (ResegError, EngineStopped, OSError)):
            self.status_label.setText(f"Snap could not get the model's probabilities: {error}")
            show_error(f"napari-reseg could not snap: {error}")
        else:
            raise error

    def start_from_device(self) -> None:
        """Put the device's boundaries into the B-scan on screen where the device has them (the others give
        way), as one undo step."""
        labels = self.labels
        if labels is None or self.heights is None or not self.device:
            return
        z, heights = self.current_slice(), self.heights
        columns = np.arange(heights.shape[1])
        height = labels.data.shape[-2]
        for boundary in sorted(self.device, key=lambda k: (k not in (0, N_BOUNDARIES - 1), k)):  # ILM, BM first
            line = np.asarray(self.device[boundary][z], dtype=np.float64)
            known = np.isfinite(line)
            heights = move_boundary(heights, boundary, columns[known], line[known], height)
        with labels.block_history():
            self._write(labels, z, heights, columns)
        names = ", ".join(OCT_BOUNDARIES[k] for k in sorted(self.device))
        self.status_label.setText(f"B-scan {z} now has the device's {names}.")

    def carry_to_next(self) -> None:
        """Write this B-scan's boundaries into the next one (fluid there stays where it is inside the retina)
        and show it: a starting guess the grader then corrects."""
        labels = self.labels
        z = self.current_slice()
        if labels is None or self.heights is None or labels.ndim != 3 or z + 1 >= labels.data.shape[0]:
            self.status_label.setText("There is no next B-scan to carry the boundaries to.")
            return
        with labels.block_history():
            self._write(labels, z + 1, self.heights, np.arange(self.heights.shape[1]))
        self.viewer.dims.set_current_step(self.viewer.dims.ndim - 3, z + 1)
        self.status_label.setText(f"B-scan {z + 1} starts from the boundaries of B-scan {z}.")

    def undo(self) -> None:
        """Undo the last edit of the labels (a stroke, a snap, or a paint stroke), as napari's undo does."""
        labels = self.labels
        if labels is not None:
            labels.undo()  # napari redraws the labels (set_data): the lines follow
