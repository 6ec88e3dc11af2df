"""The Boundaries widget as a grader uses it: the B-scan's boundaries drawn as named lines over the labels, edited
with the mouse on napari's canvas (drag, redraw, snap), the labels following at once, never crossing, one undo
step per stroke, and the Review widget counting the edit like a paint stroke."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QMouseEvent

from reseg.classes import OCT_BOUNDARIES
from reseg.review.boundary_editing import bscan_boundaries

ILM, RNFL_GCL, BM = 0, 1, 7


@pytest.fixture
def boundaries(dock):
    return dock("Boundaries")


class Mouse:
    """The grader's mouse on napari's canvas: Qt mouse events at the canvas pixels of data points."""

    def __init__(self, viewer, qtbot) -> None:
        self.viewer, self.qtbot = viewer, qtbot
        self.canvas = viewer.__wrapped__.window._qt_viewer.canvas.native  # where napari receives the mouse

    def pixel(self, layer, row: float, column: float) -> QPointF:
        """The canvas pixel showing data point (row, column) of the B-scan on screen, through vispy's own
        scene transform (napari's canvas has no public inverse of its pixel-to-world mapping)."""
        z = self.viewer.dims.current_step[0]
        world_y, world_x = np.asarray(layer.data_to_world((z, row, column)))[-2:]
        transform = self.viewer.__wrapped__.window._qt_viewer.canvas.view.scene.transform
        x, y = transform.map([world_x, world_y])[:2]
        return QPointF(float(x), float(y))

    def _send(self, kind, point: QPointF, buttons) -> None:
        button = Qt.MouseButton.LeftButton if kind != QEvent.Type.MouseMove else Qt.MouseButton.NoButton
        event = QMouseEvent(
            kind, point, self.canvas.mapToGlobal(point), button, buttons, Qt.KeyboardModifier.NoModifier
        )
        self.qtbot.wait(5)
        self.canvas.event(event)

    def drag(self, layer, points: list[tuple[float, float]]) -> None:
        """Press at the first (row, column), move through the others, release at the last."""
        pixels = [self.pixel(layer, r, c) for r, c in points]
        self._send(QEvent.Type.MouseButtonPress, pixels[0], Qt.MouseButton.LeftButton)
        for pixel in pixels[1:]:
            self._send(QEvent.Type.MouseMove, pixel, Qt.MouseButton.LeftButton)
        self._send(QEvent.Type.MouseButtonRelease, pixels[-1], Qt.MouseButton.NoButton)

    def click(self, layer, row: float, column: float) -> None:
        self.drag(layer, [(row, column)])


@pytest.fixture
def mouse(viewer, qtbot):
    return Mouse(viewer, qtbot)


def _bscan(labels, z):
    return np.asarray(labels.data[z])


def _edit_ready(viewer, boundaries, segmented, z=1):
    _image, labels = segmented
    viewer.dims.set_current_step(0, z)
    lines = viewer.layers[f"{labels.name} boundaries"]
    viewer.layers.selection.active = lines
    return labels, lines


@pytest.mark.slow
def test_the_bscans_boundaries_are_drawn_as_named_lines_in_their_colours(viewer, segmented, boundaries):
    labels, lines = _edit_ready(viewer, boundaries, segmented)
    assert list(lines.features["boundary"]) == list(OCT_BOUNDARIES)
    assert len(lines.data) == len(OCT_BOUNDARIES) and set(lines.shape_type) == {"path"}
    assert np.array_equal(boundaries.drawn_boundaries, bscan_boundaries(_bscan(labels, 1)))
    assert len({tuple(np.round(c, 3)) for c in lines.edge_color}) == len(OCT_BOUNDARIES)
    viewer.dims.set_current_step(0, 2)
    assert np.array_equal(boundaries.drawn_boundaries, bscan_boundaries(_bscan(labels, 2))), "follows the slider"


@pytest.mark.slow
def test_dragging_a_boundary_moves_it_pushes_its_neighbours_and_undoes_in_one_step(
    viewer, segmented, boundaries, mouse, click
):
    labels, lines = _edit_ready(viewer, boundaries, segmented)
    before, neighbour = _bscan(labels, 1).copy(), _bscan(labels, 0).copy()
    heights = bscan_boundaries(before)
    column = 96
    ilm = heights[ILM, column]
    target = heights[BM, column] - 2  # past every inner boundary: they must give way, not cross
    mouse.drag(lines, [(ilm, column), ((ilm + target) / 2, column), (target, column)])
    after = bscan_boundaries(_bscan(labels, 1))
    assert after[ILM, column] == pytest.approx(target, abs=1)
    assert np.all(np.diff(after, axis=0) >= 0), "no two boundaries cross"
    assert np.all(after[1:7, column] >= after[ILM, column])
    reach = boundaries.reach_spin.value()
    far = [c for c in range(before.shape[1]) if abs(c - column) > reach]
    assert np.array_equal(_bscan(labels, 1)[:, far], before[:, far]), "only the reach around the point changes"
    assert np.array_equal(_bscan(labels, 0), neighbour), "other B-scans untouched"
    assert np.array_equal(boundaries.drawn_boundaries, after), "the lines show the labels"
    click(boundaries.undo_button)
    assert np.array_equal(_bscan(labels, 1), before), "the whole stroke is one undo step"
    assert np.array_equal(boundaries.drawn_boundaries, heights)


@pytest.mark.slow
def test_a_redrawn_stretch_replaces_the_boundary_and_review_counts_it(
    viewer,
    segmented,
    boundaries,
    dock,
    mouse,
    qtbot,
):
    review = dock("Review")
    labels, lines = _edit_ready(viewer, boundaries, segmented)
    boundaries.tool_buttons.button(1).setChecked(True)  # Redraw
    heights = bscan_boundaries(_bscan(labels, 1))
    columns = list(range(60, 131, 10))
    drawn = [(heights[BM, c] - 4.0, float(c)) for c in columns]
    mouse.drag(lines, drawn)
    after = bscan_boundaries(_bscan(labels, 1))
    traced = np.interp(np.arange(60, 131), columns, [row for row, _ in drawn])  # the line the grader drew
    assert np.abs(after[BM, 60:131] - traced).max() <= 1
    assert np.array_equal(after[BM, :50], heights[BM, :50])
    qtbot.waitUntil(lambda: 1 in review.controller.edit_stats, timeout=5_000)
    assert review.controller.edit_stats[1]["pixels_changed"] > 0
    assert set(review.controller.edit_stats) == {1}


@pytest.mark.slow
def test_snap_reroutes_a_long_stretch_through_the_models_path_with_one_click(
    viewer,
    segmented,
    boundaries,
    mouse,
    qtbot,
):
    labels, lines = _edit_ready(viewer, boundaries, segmented)
    model_heights = bscan_boundaries(_bscan(labels, 1))
    # a grader's botched stretch: the ILM pulled 8 rows down over 80 A-scans
    boundaries.tool_buttons.button(0).setChecked(True)
    boundaries.reach_spin.setValue(40)
    mouse.drag(lines, [(model_heights[ILM, 96], 96), (model_heights[ILM, 96] + 8, 96)])
    assert np.abs(bscan_boundaries(_bscan(labels, 1))[ILM, 80:112] - model_heights[ILM, 80:112]).max() >= 4
    boundaries.tool_buttons.button(2).setChecked(True)  # Snap
    mouse.click(lines, model_heights[ILM, 96], 96)
    qtbot.waitUntil(lambda: "snapped" in boundaries.status_label.text(), timeout=120_000)
    snapped = bscan_boundaries(_bscan(labels, 1))[ILM]
    assert np.abs(snapped[60:133] - model_heights[ILM, 60:133]).mean() <= 1.0, "back on the model's ILM"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Willis_B_716_0.vol", "Willis_B_716_2.vol"])
def test_on_a_real_vol_the_devices_boundaries_are_shown_read_only_and_can_be_started_from(
    viewer, shared_data, segment, boundaries, click, wait_for, name
):
    from reseg.evaluation.evaluate import device_boundaries
    from reseg.io import read_volume

    path = shared_data("spectralis_vol", name)
    [scan] = viewer.open(str(path), plugin="napari-reseg")
    click(segment.run_button)
    wait_for(segment)
    labels = viewer.layers[f"{scan.name} labels"]
    device = viewer.layers[f"{scan.name} device boundaries"]
    assert not device.editable
    truth = device_boundaries(read_volume(path))
    assert list(device.features["boundary"]) == [n for n in OCT_BOUNDARIES if n in truth]
    model = bscan_boundaries(np.asarray(labels.data[0]))
    click(boundaries.device_button)
    started = bscan_boundaries(np.asarray(labels.data[0]))
    for name_, heights in truth.items():
        k = OCT_BOUNDARIES.index(name_)
        known = np.isfinite(heights[0])
        assert np.abs(started[k, known] - np.rint(heights[0, known])).max() <= 1, name_
    assert np.all(np.diff(started, axis=0) >= 0)
    click(boundaries.undo_button)
    assert np.array_equal(bscan_boundaries(np.asarray(labels.data[0])), model)


@pytest.mark.slow
def test_carrying_the_boundaries_to_the_next_bscan_gives_it_a_starting_guess(viewer, segmented, boundaries, click):
    labels, _lines = _edit_ready(viewer, boundaries, segmented, z=1)
    here, before = bscan_boundaries(_bscan(labels, 1)), _bscan(labels, 2).copy()
    click(boundaries.carry_button)
    assert viewer.dims.current_step[0] == 2
    assert np.array_equal(bscan_boundaries(_bscan(labels, 2)), here)
    assert np.array_equal(boundaries.drawn_boundaries, here)
    click(boundaries.undo_button)
    assert np.array_equal(_bscan(labels, 2), before)


@pytest.mark.slow
def test_a_bscan_the_device_left_unsegmented_draws_no_device_line_and_breaks_nothing(
    viewer, segment, boundaries, click, wait_for, write_oct_scan
):
    from napari.layers import Layer

    from napari_reseg._reader import layer_data
    from reseg.io import read_volume

    path, phantom = write_oct_scan(n_bscans=3)
    volume = read_volume(path)
    ilm = bscan_boundaries(phantom.labels[0])[ILM]
    device = np.stack([ilm, np.full_like(ilm, np.nan), ilm])  # B-scan 1: the device found no ILM
    device[2, 1:] = np.nan  # B-scan 2: one A-scan only
    volume.metadata["boundaries"] = {"ILM": device}
    scan = viewer.add_layer(Layer.create(*layer_data(volume)))
    click(segment.run_button)
    wait_for(segment)
    lines = viewer.layers[f"{scan.name} device boundaries"]
    for z, expected in ((0, ["ILM"]), (1, []), (2, []), (0, ["ILM"])):
        viewer.dims.set_current_step(0, z)
        assert list(lines.features["boundary"]) == expected and len(lines.data) == len(expected)


@pytest.mark.slow
def test_a_closed_dock_lets_go_of_the_mouse_and_the_viewer(viewer, segmented, boundaries, click):
    labels, lines = _edit_ready(viewer, boundaries, segmented, z=1)
    assert boundaries._on_mouse in lines.mouse_drag_callbacks and not lines.mouse_pan
    viewer.window.remove_dock_widget(boundaries)  # what the dock's close button does
    assert boundaries._on_mouse not in lines.mouse_drag_callbacks and lines.mouse_pan
    drawn = boundaries.drawn_boundaries.copy()
    labels.data_setitem((np.array([1]), np.array([5]), np.array([5])), 3)
    viewer.dims.set_current_step(0, 2)
    assert np.array_equal(boundaries.drawn_boundaries, drawn), "no longer follows the slider or the edits"
    assert not boundaries.engine_process.alive
