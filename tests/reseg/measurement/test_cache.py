"""The live thickness cache: after an edit it measures again only the B-scans that changed, and its figures
equal a fresh measurement of the edited labels."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.measurement.cache import ThicknessCache
from reseg.measurement.thickness import LAYERS, TOTAL_RETINA, layer_thickness


@pytest.fixture(scope="module")
def phantom():
    return make_oct_phantom(n_bscans=6, height=224, width=96, seed=3, noise=False)


def test_it_starts_with_the_thickness_of_the_labels_near_the_truth(phantom):
    """The labels are the phantom's sub-pixel surfaces rasterised: within a row of them on average."""
    axial_um = phantom.spacing[1] * 1000
    cache = ThicknessCache(phantom.labels, phantom.spacing[1])
    measured = layer_thickness(boundary_rows(phantom.labels), phantom.spacing[1])
    truth = layer_thickness(phantom.surfaces, phantom.spacing[1])
    for layer in (*LAYERS, TOTAL_RETINA):
        np.testing.assert_array_equal(cache.thickness[layer], measured[layer])
        assert np.mean(np.abs(cache.thickness[layer] - truth[layer])) < axial_um


def test_an_edit_of_one_b_scan_is_found_and_measured_again(phantom):
    labels = phantom.labels.copy()
    cache = ThicknessCache(labels, phantom.spacing[1])
    before = {layer: values.copy() for layer, values in cache.thickness.items()}
    column = labels[2, :, 40]
    column[(column == 2)] = 1  # the whole GCL+IPL of A-scan 40 painted as RNFL
    assert cache.update(labels) == [2]  # nothing said where: each B-scan compared
    after = cache.thickness
    assert after["RNFL"][2, 40] > before["RNFL"][2, 40] and after["GCL+IPL"][2, 40] == 0
    unchanged = np.ones(after["RNFL"].shape, bool)
    unchanged[2, 40] = False
    np.testing.assert_array_equal(after["RNFL"][unchanged], before["RNFL"][unchanged])
    np.testing.assert_array_equal(cache.heights, boundary_rows(labels))
    assert cache.update(labels, [2, 3]) == []  # measured already


def test_a_hint_limits_the_search_and_a_new_shape_is_refused(phantom):
    labels = phantom.labels.copy()
    cache = ThicknessCache(labels, phantom.spacing[1])
    labels[1, 100:110, :] = 3
    labels[4, 100:110, :] = 3
    assert cache.update(labels, [4]) == [4]
    assert cache.update(labels) == [1]
    with pytest.raises(ValueError, match="shape"):
        cache.update(labels[:3])
