"""The boundary editor's engine: boundaries from labels and back, pushing neighbours, strokes, snapping."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from reseg.classes import OCT_CLASSES, OCT_FLUID
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.review.boundary_editing import (
    boundary_cost,
    bscan_boundaries,
    drag_profile,
    edited_pixels,
    move_boundary,
    nearest_boundary,
    relabel_columns,
    snap_path,
    stroke_columns,
)

ILM, RNFL_GCL, BM = 0, 1, 7


@pytest.fixture(scope="module")
def bscan():
    phantom = make_oct_phantom(n_bscans=3, height=248, width=192, seed=3)
    return phantom.labels[1].copy()


def test_boundaries_of_labels_rebuild_the_same_labels(bscan):
    heights = bscan_boundaries(bscan)
    assert heights.shape == (8, bscan.shape[1])
    assert np.all(np.diff(heights, axis=0) >= 0), "boundaries are in anatomical order in every A-scan"
    every_column = np.arange(bscan.shape[1])
    assert np.array_equal(relabel_columns(bscan, heights, every_column), bscan)


def test_moving_a_boundary_pushes_its_neighbours_and_never_crosses(bscan):
    heights = bscan_boundaries(bscan)
    columns = np.arange(60, 80)
    moved = move_boundary(heights, RNFL_GCL, columns, heights[BM, columns] + 5, bscan.shape[0])
    assert np.all(np.diff(moved, axis=0) >= 0)
    # dragged below BM: every deeper boundary is pushed down to it (their layers 0 thick), the ILM stays
    assert np.array_equal(moved[2:, columns], np.broadcast_to(moved[RNFL_GCL, columns], (6, len(columns))))
    assert np.array_equal(moved[ILM], heights[ILM])
    untouched = np.setdiff1d(np.arange(bscan.shape[1]), columns)
    assert np.array_equal(moved[:, untouched], heights[:, untouched])
    # and clipped to the B-scan
    off = move_boundary(heights, ILM, columns, np.full(len(columns), -40.0), bscan.shape[0])
    assert off[ILM, columns].min() == 0


def test_an_edit_writes_only_the_changed_pixels_and_keeps_fluid_inside_the_retina():
    phantom = make_oct_phantom(n_bscans=8, height=248, width=192, seed=1, fluid=True)
    z = int(np.argmax((phantom.labels == OCT_FLUID).sum(axis=(1, 2))))
    labels = phantom.labels[z].copy()
    assert (labels == OCT_FLUID).any()
    heights = bscan_boundaries(labels)
    fluid_columns = np.flatnonzero((labels == OCT_FLUID).any(axis=0))
    # BM pulled up to the ILM over the cyst: no retina is left there, so no fluid may stay
    moved = move_boundary(heights, BM, fluid_columns, heights[ILM, fluid_columns], labels.shape[0])
    rows, columns, values = edited_pixels(labels, moved, fluid_columns)
    edited = labels.copy()
    edited[rows, columns] = values
    assert not (edited == OCT_FLUID).any()
    assert np.all(labels[rows, columns] != values), "only pixels that change are written"
    assert set(np.unique(columns)) <= set(fluid_columns)
    # a small move of the ILM keeps the cyst below it
    nudged = move_boundary(heights, ILM, fluid_columns, heights[ILM, fluid_columns] - 3, labels.shape[0])
    rows, columns, values = edited_pixels(labels, nudged, fluid_columns)
    edited = labels.copy()
    edited[rows, columns] = values
    assert (edited == OCT_FLUID).sum() == (labels == OCT_FLUID).sum()
    assert np.array_equal(bscan_boundaries(edited)[ILM, fluid_columns], heights[ILM, fluid_columns] - 3)


def test_a_stroke_fills_every_column_it_passes_and_the_later_pass_wins():
    columns, rows = stroke_columns([(10.0, 5.0), (20.0, 15.0), (40.0, 10.0)], width=100)
    assert list(columns) == list(range(5, 16))
    assert rows[list(columns).index(5)] == 10.0
    assert rows[list(columns).index(10)] == pytest.approx(40.0), "drawn back over: the second pass counts"
    columns, _ = stroke_columns([(10.0, 95.0), (10.0, 130.0)], width=100)
    assert columns.max() == 99, "a stroke leaving the B-scan stops at its edge"


def test_a_dragged_point_bends_its_neighbours_smoothly():
    columns, weights = drag_profile(50, 10, 100)
    assert columns[0] == 40 and columns[-1] == 60
    assert weights[columns == 50][0] == 1.0
    assert np.all(np.diff(weights[columns <= 50]) >= 0) and np.all(weights > 0)
    edge_columns, _ = drag_profile(2, 10, 100)
    assert edge_columns[0] == 0


def test_the_nearest_boundary_takes_the_side_of_a_vanished_layer():
    heights = np.array([[10.0], [30.0], [30.0], [50.0], [60.0], [70.0], [80.0], [90.0]])
    assert nearest_boundary(heights, 0, 12) == ILM
    assert nearest_boundary(heights, 0, 28) == 1, "above two coinciding boundaries: the upper one"
    assert nearest_boundary(heights, 0, 31) == 2, "below them: the lower one"


def _soft_probabilities(labels: np.ndarray, seed: int) -> np.ndarray:
    """A model's probabilities as a stand-in: the true classes blurred over a few rows, each pixel's
    probabilities scaled by noise of +-60 % (a model unsure near boundaries, and noisy everywhere)."""
    rng = np.random.default_rng(seed)
    one_hot = np.stack([(labels == k).astype(np.float64) for k in range(len(OCT_CLASSES))])
    soft = ndi.gaussian_filter(one_hot, sigma=(0, 3.0, 1.0)) * rng.uniform(0.4, 1.6, one_hot.shape) + 1e-4
    return soft / soft.sum(axis=0, keepdims=True)


@pytest.mark.parametrize("boundary", [ILM, RNFL_GCL, BM])
def test_snap_follows_the_models_boundary_between_two_distant_anchors(boundary):
    phantom = make_oct_phantom(n_bscans=3, height=248, width=256, seed=5, fluid=False)
    labels = phantom.labels[1]
    truth = boundary_rows(labels[None])[boundary, 0]
    probabilities = _soft_probabilities(labels, seed=boundary)
    start, end = 20, 230
    columns, rows = snap_path(boundary_cost(probabilities, boundary), [(start, truth[start]), (end, truth[end])])
    assert list(columns) == list(range(start, end + 1))
    straight = np.interp(columns, [start, end], [truth[start], truth[end]])
    snapped_error = np.abs(rows - truth[columns]).mean()
    assert snapped_error < 1.0, f"mean {snapped_error:.2f} rows off the true boundary"
    assert snapped_error < np.abs(straight - truth[columns]).mean() / 3, "better than a straight line by far"


def test_snap_passes_through_every_anchor_and_refuses_a_single_one():
    cost = np.zeros((50, 40))
    columns, rows = snap_path(cost, [(0, 10), (20, 30), (39, 12)])
    assert rows[list(columns).index(20)] == 30 and rows[0] == 10 and rows[-1] == 12
    with pytest.raises(ValueError, match="two anchor points"):
        snap_path(cost, [(5, 10), (5, 12)])
