"""The result is editable with napari's own tools, the plugin is in napari's menus, and what a user sees
is not blank."""

from __future__ import annotations

import numpy as np
import pytest


def _segment(viewer, segment, click, wait_for):
    click(segment.run_button)
    wait_for(segment)
    return viewer.layers["scan.tif labels"]


@pytest.mark.slow
def test_paint_fill_erase_and_undo_on_the_result(viewer, segment, small_oct, click, wait_for):
    labels = _segment(viewer, segment, click, wait_for)
    before = labels.data.copy()
    viewer.dims.set_current_step(0, 1)
    labels.brush_size = 5
    labels.paint((1, 100, 100), 9)  # brush: intraretinal fluid
    assert labels.data[1, 100, 100] == 9
    labels.fill((1, 5, 5), 3)  # bucket fill of the vitreous region
    assert labels.data[1, 5, 5] == 3
    labels.paint((1, 150, 150), 0)  # eraser paints background
    assert labels.data[1, 150, 150] == 0
    for _ in range(3):
        labels.undo()
    np.testing.assert_array_equal(labels.data, before)
    labels.redo()
    assert labels.data[1, 100, 100] == 9


def test_segment_widget_is_in_the_plugins_and_layers_segment_menus(viewer):
    from napari._app_model import get_app_model
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-reseg")
    assert "napari-reseg.segment" in [w.command for w in manifest.contributions.widgets]
    items = get_app_model().menus.get_menu("napari/layers/segment")
    ids = [item.command.id for item in items if hasattr(item, "command")]
    # napari 0.8 and later list the manifest's command; 0.7 a "plugin:widget" action of its own
    assert "napari-reseg.segment" in ids or "napari-reseg:Segment" in ids, ids


@pytest.mark.slow
def test_screenshot_of_the_docked_widget_beside_a_segmented_sample(viewer, segment, small_oct, click, wait_for):
    labels = _segment(viewer, segment, click, wait_for)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 300 and shot.shape[1] > 500
    rgb = shot[..., :3].astype(int)
    assert rgb.std() > 20, "the window is blank"
    # The class colours of the result are on screen: some pixels are strongly red/green/blue tinted.
    saturated = (rgb.max(axis=-1) - rgb.min(axis=-1)) > 80
    assert saturated.mean() > 0.01
    canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
    assert ((canvas.max(axis=-1) - canvas.min(axis=-1)) > 80).mean() > 0.02
    assert labels.visible
