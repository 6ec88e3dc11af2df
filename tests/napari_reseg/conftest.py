"""Fixtures for plugin tests: small scans as napari layers, and a docked Segment widget."""

from __future__ import annotations

import pytest

from napari_reseg._segment_widget import SegmentWidget
from reseg.data.phantom import make_oct_phantom


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def small_oct(viewer):
    """A 4-B-scan phantom small enough to segment on the CPU in a few seconds, with its spacing as scale."""
    phantom = make_oct_phantom(n_bscans=4, height=224, width=192, seed=11)
    layer = viewer.add_image(phantom.image, name="scan", scale=phantom.spacing,
                             metadata={"reseg": {"modality": "OCT", "spacing_known": (True, True, True)}})
    return layer, phantom


@pytest.fixture
def widget(viewer, qtbot):
    segment_widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(segment_widget, name="Segment")
    return segment_widget


@pytest.fixture
def wait_for_run(qtbot):
    """Block (processing Qt events) until the widget's worker has finished, cancelled or failed."""

    def wait(widget, timeout_ms: int = 120_000) -> None:
        qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout_ms)

    return wait
