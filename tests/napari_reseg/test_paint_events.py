"""The paint-event adapter reads both history formats and real strokes made in a viewer."""

from __future__ import annotations

import numpy as np

from napari_reseg._paint_events import touched_slices


def test_napari_07_style_index_tuples():
    atom = ((np.array([2, 2, 3]), np.array([5, 6, 7]), np.array([1, 1, 1])), np.array([0, 0, 0]), 4)
    assert touched_slices([atom], layer_ndim=3, n_slices=5) == {2, 3}


def test_mask_atoms_with_a_bounding_box(viewer):
    labels = viewer.add_labels(np.zeros((5, 40, 40), np.uint8))
    events = []
    labels.events.paint.connect(lambda event: events.append(event.value))
    viewer.dims.set_current_step(0, 3)
    labels.brush_size = 4
    labels.paint((3, 20, 20), 7)  # a real brush stroke on slice 3
    labels.fill((3, 2, 2), 2)
    assert len(events) == 2
    assert all(touched_slices(atoms, 3, 5) == {3} for atoms in events)
    labels.data_setitem((np.array([1, 4]), np.array([0, 0]), np.array([0, 0])), 9)
    assert touched_slices(events[-1], 3, 5) == {1, 4}


def test_two_dimensional_layer(viewer):
    labels = viewer.add_labels(np.zeros((30, 30), np.uint8))
    events = []
    labels.events.paint.connect(lambda event: events.append(event.value))
    labels.paint((10, 10), 3)
    assert touched_slices(events[0], 2, 1) == {0}
