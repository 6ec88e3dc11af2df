"""The Thickness dock widget: retinal layer thickness of the OCT labels a grader works on, live while they edit.

For a volume: an en-face thickness map of the chosen layer beside the B-scan (in mm on the fundus, B-scan
positions as the device recorded them), the ETDRS grid over it centred on the fovea (found as the thinnest
central point; the grader drags its centre point or types it), the current B-scan marked on the map, and the
nine sector means. For a peripapillary circle scan: the TSNIT profile and its quadrant and sector means.
The figures are the engine's (`reseg.measurement`, as `reseg measure` writes them); after an edit only the
changed B-scans are measured again (`ThicknessCache`), so the view follows within the issue's 200 ms.

It follows the OCT labels layer of the selected scan: the labels layer selected, or the labels of the scan
image selected (the scan's own labels, else its reference labels, e.g. a phantom's truth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels, Layer
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from reseg.classes import OCT_CLASSES
from reseg.measurement.cache import ThicknessCache
from reseg.measurement.etdrs import DIAMETERS_MM, EnFace, en_face, find_fovea, sector_map, sector_means, sector_names
from reseg.measurement.thickness import LAYERS, TOTAL_RETINA
from reseg.measurement.tsnit import tsnit_profile

from ._layer_state import (
    METADATA_KEY,
    DerivedImageRecord,
    ScanRecord,
    find_derived,
    find_run_target,
    find_scan,
    labels_record,
)
from ._lifecycle import Connections, when_closed
from ._paint_events import touched_slices
from ._panel import Panel
from ._tsnit_plot import TsnitPlot

if TYPE_CHECKING:
    import napari

    from reseg.io import Volume

MAP, GRID, CENTRE = "thickness map", "ETDRS grid", "ETDRS centre"
MAP_COLORMAP = "turbo"
GRID_COLOUR, BSCAN_COLOUR, CENTRE_COLOUR = "white", "yellow", "magenta"
GAP = 0.05  # the map lies this fraction of the B-scan's width to the right of it
_OCT_NAMES = [c.name for c in OCT_CLASSES]
_DIAGONALS_DEG = (45.0, 135.0, 225.0, 315.0)

Target = tuple[str, bool]  # (scan key, whether the labels are a reference copy)


def _oct_record(layer: object) -> Any:
    record = labels_record(layer) if isinstance(layer, Labels) else None
    return record if record is not None and [c.name for c in record.classes] == _OCT_NAMES else None


def _find_oct_labels(layers: Any, target: Target) -> Labels | None:
    """The followed labels layer, looked up afresh: the scan's run target, or its reference labels."""
    scan_key, reference = target
    if not reference:
        return find_run_target(layers, scan_key, OCT_CLASSES)
    return next(
        (
            layer
            for layer in layers
            if (record := _oct_record(layer)) is not None and record.reference and record.scan_key == scan_key
        ),
        None,
    )


def _overlay(layers: Any, scan_key: str, kind: str) -> Any:
    """A layer this widget added for the scan (map, grid, centre), by the record it carries."""
    return find_derived(layers, scan_key, kind, Layer)


def _stack(data: Any) -> np.ndarray:
    array = np.asarray(data)
    return array if array.ndim == 3 else array[None]


def _contrast(values: np.ndarray) -> tuple[float, float]:
    """Colour range (um) of a map: the 1st to 99th percentile of its thickness, to the 10 um."""
    known = values[np.isfinite(values)]
    if not known.size:
        return (0.0, 1.0)
    low, high = np.percentile(known, [1, 99])
    low, high = float(np.floor(low / 10) * 10), float(np.ceil(high / 10) * 10)
    return (low, high if high > low else low + 10)


class ThicknessWidget(Panel):
    """Live layer thickness of the followed OCT labels: map and ETDRS sectors, or a circle scan's TSNIT."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.target: Target | None = None
        self.cache: ThicknessCache | None = None
        self.grid: EnFace | None = None
        self.centre: tuple[float, float] | None = None  # (y, x) fundus mm
        self.centre_moved = False  # by the grader: a new run does not move it back
        self.pending: set[int] | None = set()  # B-scans edited since the last update; None: look at all
        self.connections = Connections(self)
        self.layer_connections = Connections(self)  # to the followed labels and our overlays
        self._placing = False  # the widget itself is moving the centre point (not the grader)
        self.update_timer = QTimer(self)
        self.update_timer.setSingleShot(True)
        self.update_timer.setInterval(0)  # coalesce a burst of edit events into one update
        self.update_timer.timeout.connect(self.apply_edits)

        self.labels_label = QLabel("no OCT labels layer yet: segment a scan or open its labels")
        self.labels_label.setWordWrap(True)
        self.layer_combo = QComboBox()
        self.layer_combo.addItems([*LAYERS, TOTAL_RETINA])
        self.layer_combo.setCurrentText(TOTAL_RETINA)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.centre_y, self.centre_x = QDoubleSpinBox(), QDoubleSpinBox()
        for box in (self.centre_y, self.centre_x):
            box.setDecimals(2)
            box.setSingleStep(0.05)
            box.setRange(-100.0, 100.0)
        self.fovea_button = QPushButton("Find fovea")
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["sector", "mean (um)"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(200)
        self.plot = TsnitPlot()

        form = QFormLayout()
        form.addRow("layer", self.layer_combo)
        self.centre_row = QWidget()
        centre = QFormLayout(self.centre_row)
        centre.setContentsMargins(0, 0, 0, 0)
        centre.addRow("grid centre y (mm)", self.centre_y)
        centre.addRow("grid centre x (mm)", self.centre_x)
        centre.addRow("", self.fovea_button)
        self.body.addWidget(self.labels_label)
        self.body.addLayout(form)
        self.body.addWidget(self.centre_row)
        self.body.addWidget(self.status)
        self.body.addWidget(self.plot)
        self.body.addWidget(self.table, 1)

        self.layer_combo.currentTextChanged.connect(lambda _: self.show_figures(new_layer=True))
        self.centre_y.valueChanged.connect(lambda _: self._centre_typed())
        self.centre_x.valueChanged.connect(lambda _: self._centre_typed())
        self.fovea_button.clicked.connect(self.find_fovea)
        self.connections.connect(self.viewer.layers.selection.events.active, lambda _: self._follow_selection())
        self.connections.connect(self.viewer.layers.events.removed, self._on_layer_removed)
        self.connections.connect(self.viewer.dims.events.current_step, lambda _: self._draw_grid())
        when_closed(self, self._close)
        self._set_controls()
        self._follow_selection()
        if self.target is None:
            first = next((layer for layer in self.viewer.layers if _oct_record(layer) is not None), None)
            if first is not None:
                self._follow(first)

    # --- which layer ----------------------------------------------------------------------------------

    @property
    def labels(self) -> Labels | None:
        return _find_oct_labels(self.viewer.layers, self.target) if self.target else None

    def _follow_selection(self) -> None:
        active = self.viewer.layers.selection.active
        record = active.metadata.get(METADATA_KEY) if isinstance(active, Image) else None
        if isinstance(record, ScanRecord):
            active = _find_oct_labels(self.viewer.layers, (record.key, False)) or _find_oct_labels(
                self.viewer.layers, (record.key, True)
            )
        if active is not None and _oct_record(active) is not None:
            self._follow(active)

    def _follow(self, labels: Labels) -> None:
        record = _oct_record(labels)
        target = (record.scan_key, record.reference)
        if target != self.target:
            self.attach(labels)

    def attach(self, labels: Labels) -> None:
        """Measure `labels` afresh and follow its edits."""
        record = _oct_record(labels)
        assert record is not None, "only OCT labels of ours are measured"
        self.layer_connections.disconnect_all()
        self.target = (record.scan_key, record.reference)
        self.cache, self.grid, self.centre, self.centre_moved = None, None, None, False
        self.labels_label.setText(f"labels: {labels.name}")
        geometry = self._geometry()
        if geometry.pixel_spacing is None:
            self._clear(f"thickness needs the scan's pixel spacing: {geometry.source.name} does not record it")
            return
        self.cache = ThicknessCache(_stack(labels.data), geometry.spacing[1])
        for emitter, callback in (
            (labels.events.paint, self._on_paint),
            (labels.events.data, self._on_any_change),
            # napari's undo and redo only redraw the layer (`refresh`, which announces `set_data`)
            (labels.events.set_data, self._on_any_change),
            (labels.events.refresh, self._on_any_change),
            (labels.events.metadata, self._on_run_recorded),
        ):
            self.layer_connections.connect(emitter, callback)
        self.layer_combo.blockSignals(True)
        self.layer_combo.setCurrentText(LAYERS[0] if self._is_circle() else TOTAL_RETINA)
        self.layer_combo.blockSignals(False)
        self.grid = self._en_face(geometry)
        if self.grid is not None:
            self._place_overlays(labels)
            self._set_centre(self._found_fovea())
        self._set_controls()
        self.show_figures()

    def _is_circle(self) -> bool:
        return self._geometry().metadata.get("scan_pattern") == "circle" and self._geometry().data.shape[0] == 1

    def _geometry(self) -> Volume:
        """The scan's geometry (spacing, B-scan positions, eye): from the scan's own layer where it is open,
        as a label map saved on its own may lack what the scan's file recorded."""
        labels = self.labels
        record = _oct_record(labels) if labels is not None else None
        assert record is not None, "asked only while a labels layer is followed"
        scan = find_scan(self.viewer.layers, record.scan_key)
        return scan.metadata[METADATA_KEY].geometry if scan is not None else record.geometry

    def _en_face(self, geometry: Volume) -> EnFace | None:
        """Where the A-scans lie on the fundus, for a raster volume whose B-scans are placed (as `measure`)."""
        positions = geometry.metadata.get("bscan_positions")
        placed = positions is not None or bool(geometry.metadata.get("spacing_known", (False,))[0])
        n_bscans, _, width = geometry.data.shape
        if n_bscans < 2 or not placed or geometry.metadata.get("scan_pattern") in ("line", "circle"):
            return None
        laterality = geometry.metadata.get("laterality") or None
        return en_face((n_bscans, width), (geometry.spacing[0], geometry.spacing[2]), positions, laterality)

    # --- edits ----------------------------------------------------------------------------------------

    def _on_paint(self, event: Any) -> None:
        labels = self.labels
        if self.pending is not None and self.cache is not None and labels is not None:
            self.pending |= touched_slices(event.value, labels.ndim, self.cache.shape[0])
        self.update_timer.start()

    def _on_any_change(self, _event: Any = None) -> None:
        self.pending = None
        self.update_timer.start()

    def _on_run_recorded(self, _event: Any) -> None:
        """A run finished on the labels: measure them all, and find the fovea again unless the grader moved it."""
        self._on_any_change()
        self.apply_edits()
        if self.grid is not None and not self.centre_moved:
            self._set_centre(self._found_fovea())

    def apply_edits(self) -> None:
        """Measure again the B-scans edited since the last update and show the new figures."""
        labels = self.labels
        slices, self.pending = self.pending, set()
        if labels is None or self.cache is None:
            return
        stack = _stack(labels.data)
        if stack.shape != self.cache.shape:  # new labels of another size were put in the layer
            self.attach(labels)
        elif self.cache.update(stack, slices):
            self.show_figures()

    # --- the ETDRS centre -----------------------------------------------------------------------------

    def _found_fovea(self) -> tuple[float, float]:
        """The fovea as `reseg measure` finds it; the scan's centre while there is no retina to find it in."""
        assert self.grid is not None and self.cache is not None
        try:
            return find_fovea(self.cache.thickness[TOTAL_RETINA], self.grid)
        except ValueError:
            y_mm, x_mm = self.grid.y_mm, self.grid.x_mm
            return (float(y_mm.min() + y_mm.max()) / 2, float(x_mm.min() + x_mm.max()) / 2)

    def find_fovea(self) -> None:
        if self.grid is not None:
            self.centre_moved = False
            self._set_centre(self._found_fovea())

    def move_centre(self, y_mm: float, x_mm: float) -> None:
        """The grader moved the grid (dragged its centre or typed it): the sectors follow."""
        self.centre_moved = True
        self._set_centre((y_mm, x_mm))

    def _set_centre(self, centre: tuple[float, float]) -> None:
        self.centre = (float(centre[0]), float(centre[1]))
        self._placing = True
        try:
            for box, value in zip((self.centre_y, self.centre_x), self.centre, strict=True):
                box.setValue(value)
            point = _overlay(self.viewer.layers, self.target[0], CENTRE) if self.target else None
            if point is not None and not np.allclose(np.asarray(point.data).ravel(), self.centre):
                point.data = np.array([self.centre])
        finally:
            self._placing = False
        self._draw_grid()
        self.show_figures()

    def _centre_typed(self) -> None:
        if not self._placing and self.grid is not None:
            self.move_centre(self.centre_y.value(), self.centre_x.value())

    def _centre_dragged(self, _event: Any) -> None:
        point = _overlay(self.viewer.layers, self.target[0], CENTRE) if self.target else None
        if self._placing or point is None or len(point.data) != 1:
            return
        y_mm, x_mm = (float(v) for v in np.asarray(point.data)[0])
        if self.centre is None or not np.allclose((y_mm, x_mm), self.centre):
            self.move_centre(y_mm, x_mm)

    # --- layers on the canvas -------------------------------------------------------------------------

    def _place_overlays(self, labels: Labels) -> None:
        """The map, the grid and its centre point beside the B-scan (made once per scan, kept if present)."""
        assert self.grid is not None and self.target is not None
        scan_key = self.target[0]
        width = _stack(labels.data).shape[-1]
        scale, translate = np.asarray(labels.scale)[-2:], np.asarray(labels.translate)[-2:]
        offset = (
            translate[0] - self.grid.y_mm.min(),
            translate[1] + width * scale[1] * (1 + GAP) - self.grid.x_mm.min(),
        )  # world = fundus mm + offset
        y, x = self.grid.y_mm, self.grid.x_mm
        affine = np.array(
            [
                [y[1, 0] - y[0, 0], y[0, 1] - y[0, 0], y[0, 0] + offset[0]],
                [x[1, 0] - x[0, 0], x[0, 1] - x[0, 0], x[0, 0] + offset[1]],
                [0.0, 0.0, 1.0],
            ]
        )
        scan = find_scan(self.viewer.layers, scan_key)
        name = scan.name if scan is not None else labels.name
        added: list[Layer] = []
        if _overlay(self.viewer.layers, scan_key, MAP) is None:
            added.append(
                self.viewer.add_image(
                    np.zeros(y.shape, np.float32),
                    name=f"{name} thickness map (um)",
                    affine=affine,
                    units=("mm", "mm"),
                    colormap=MAP_COLORMAP,
                    metadata={METADATA_KEY: DerivedImageRecord(scan_key, MAP)},
                )
            )
        if _overlay(self.viewer.layers, scan_key, GRID) is None:
            added.append(
                self.viewer.add_shapes(
                    self._grid_shapes((float(y.mean()), float(x.mean())), 0),
                    shape_type=["ellipse"] * len(DIAMETERS_MM) + ["line"] * (len(_DIAGONALS_DEG) + 1),
                    edge_color=[GRID_COLOUR] * (len(DIAMETERS_MM) + len(_DIAGONALS_DEG)) + [BSCAN_COLOUR],
                    face_color="transparent",
                    edge_width=0.03,
                    name=f"{name} ETDRS grid (current B-scan in yellow)",
                    translate=offset,
                    units=("mm", "mm"),
                    metadata={METADATA_KEY: DerivedImageRecord(scan_key, GRID)},
                )
            )
        if _overlay(self.viewer.layers, scan_key, CENTRE) is None:
            added.append(
                self.viewer.add_points(
                    np.array([[y.mean(), x.mean()]]),
                    name=f"{name} ETDRS centre (drag to move the grid)",
                    translate=offset,
                    units=("mm", "mm"),
                    size=0.3,
                    symbol="cross",
                    face_color=CENTRE_COLOUR,
                    border_width=0,
                    metadata={METADATA_KEY: DerivedImageRecord(scan_key, CENTRE)},
                )
            )
        thickness_map = _overlay(self.viewer.layers, scan_key, MAP)
        if any(layer.name == thickness_map.name for layer in added):
            thickness_map.colorbar.visible = True  # the colours' um on the canvas
        point = _overlay(self.viewer.layers, scan_key, CENTRE)
        self.layer_connections.connect(point.events.data, self._centre_dragged)
        if added:
            point.mode = "select"
            self.viewer.layers.selection.active = labels  # the grader goes on editing the labels
            self.viewer.reset_view()  # the map beside the B-scan in view

    def _grid_shapes(self, centre: tuple[float, float], bscan: int) -> list[np.ndarray]:
        """Circles, the diagonals between the 1 and 6 mm circles, and the line of B-scan `bscan`, fundus mm."""
        assert self.grid is not None
        cy, cx = centre
        shapes = [np.array([[cy, cx], [d / 2, d / 2]]) for d in DIAMETERS_MM]
        inner, outer = DIAMETERS_MM[0] / 2, DIAMETERS_MM[-1] / 2
        for angle in np.radians(_DIAGONALS_DEG):
            direction = np.array([-np.sin(angle), np.cos(angle)])
            shapes.append(np.array([centre + inner * direction, centre + outer * direction]))
        y, x = self.grid.y_mm[bscan], self.grid.x_mm[bscan]
        shapes.append(np.array([[y[0], x[0]], [y[-1], x[-1]]]))
        return shapes

    def current_bscan(self) -> int:
        labels = self.labels
        if labels is None or labels.ndim == 2 or self.cache is None:
            return 0
        z = float(labels.world_to_data(self.viewer.dims.point)[0])
        return int(np.clip(round(z), 0, self.cache.shape[0] - 1))

    def _draw_grid(self) -> None:
        grid_layer = _overlay(self.viewer.layers, self.target[0], GRID) if self.target else None
        if grid_layer is None or self.grid is None or self.centre is None:
            return
        grid_layer.data = self._grid_shapes(self.centre, self.current_bscan())

    # --- figures --------------------------------------------------------------------------------------

    def show_figures(self, new_layer: bool = False) -> None:
        """Map, table and plot of the chosen layer from the cache's thickness."""
        if self.cache is None or self.target is None:
            return
        layer = self.layer_combo.currentText()
        thickness = self.cache.thickness[layer]
        geometry = self._geometry()
        if self._is_circle():
            self._show_tsnit(thickness[0], geometry, layer)
            return
        if self.grid is None:
            known = thickness[np.isfinite(thickness)]
            mean = f"{known.mean():.1f} um" if known.size else "none (no retina found)"
            single = thickness.shape[0] == 1
            why = (
                "a single B-scan has no en-face map or ETDRS grid"
                if single
                else f"the ETDRS grid needs the distance between B-scans, which {geometry.source.name} does not record"
            )
            self.status.setText(f"mean {layer} thickness {mean}; {why}")
            self._fill_table([(f"{layer} (mean)", float(known.mean()) if known.size else None)])
            return
        map_layer = _overlay(self.viewer.layers, self.target[0], MAP)
        if map_layer is not None:
            shown = np.asarray(map_layer.data)
            if shown.shape == thickness.shape and shown.dtype == np.float32 and shown.flags.writeable:
                shown[...] = thickness  # in place and redrawn: assigning `data` makes napari redo its dims
                map_layer.refresh()
            else:
                map_layer.data = thickness.astype(np.float32)
            if new_layer or map_layer.contrast_limits == [0.0, 1.0] or not np.any(map_layer.contrast_limits):
                map_layer.contrast_limits = _contrast(thickness)
            scan = find_scan(self.viewer.layers, self.target[0])
            name = f"{scan.name if scan is not None else 'scan'} {layer} thickness map (um)"
            if map_layer.name != name:
                map_layer.name = name
            low, high = map_layer.contrast_limits
            colours = f"; map colours {low:.0f} (blue) to {high:.0f} um (red)"
        else:
            colours = ""
        if self.centre is None:
            return
        names = sector_names(self.grid.laterality)
        means = sector_means(thickness, sector_map(self.grid, self.centre), names)
        self._fill_table(list(means.items()))
        how = "moved by you" if self.centre_moved else "found as the thinnest central point"
        self.status.setText(
            f"{layer}: ETDRS sector means around the centre at y {self.centre[0]:.2f}, x {self.centre[1]:.2f} mm "
            f"({how}){colours}"
        )

    def _show_tsnit(self, thickness: np.ndarray, geometry: Volume, layer: str) -> None:
        positions = geometry.metadata.get("bscan_positions")
        try:
            if positions is None:
                raise ValueError(f"{geometry.source.name} does not record where the circle lies on the fundus")
            profile = tsnit_profile(thickness, positions[0], geometry.metadata.get("laterality"))
        except ValueError as error:
            self.plot.show_profile(None)
            self._fill_table([])
            self.status.setText(f"no TSNIT profile: {error}")
            return
        self.plot.show_profile(profile, f"{layer} thickness along the circle ({profile.laterality})")
        self._fill_table(list(profile.figures().items()))
        self.status.setText(f"{layer} thickness along the peripapillary circle, temporal-superior-nasal-inferior")

    def _fill_table(self, rows: list[tuple[str, float | None]]) -> None:
        self.table.setRowCount(len(rows))
        for row, (name, mean) in enumerate(rows):
            self.table.setItem(row, 0, QTableWidgetItem(name))
            self.table.setItem(row, 1, QTableWidgetItem("-" if mean is None else f"{mean:.1f}"))

    def sector_table(self) -> dict[str, float | None]:
        """The table as shown: sector name -> mean um (None where the scan does not reach the sector)."""
        table: dict[str, float | None] = {}
        for row in range(self.table.rowCount()):
            name, value = self.table.item(row, 0).text(), self.table.item(row, 1).text()
            table[name] = None if value == "-" else float(value)
        return table

    # --- state ----------------------------------------------------------------------------------------

    def _set_controls(self) -> None:
        self.centre_row.setVisible(self.grid is not None)
        self.plot.setVisible(self.cache is not None and self.target is not None and self._is_circle())

    def _clear(self, text: str) -> None:
        self.status.setText(text)
        self._fill_table([])
        self.plot.show_profile(None)
        self._set_controls()

    def _on_layer_removed(self, _event: Any) -> None:
        if self.target is not None and self.labels is None:
            self.layer_connections.disconnect_all()
            self.target, self.cache, self.grid, self.centre = None, None, None, None
            self.labels_label.setText("the measured labels layer was removed")
            self._clear("")
            self._follow_selection()

    def _close(self) -> None:
        self.update_timer.stop()
        self.connections.disconnect_all()
        self.layer_connections.disconnect_all()
