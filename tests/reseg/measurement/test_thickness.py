"""Layer thickness in micrometres from boundary heights: the numbers a grader reads, checked against the
phantom's known anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.classes import OCT_BOUNDARIES
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.measurement.thickness import LAYERS, TOTAL_RETINA, layer_thickness


def test_each_layer_is_the_distance_between_its_boundaries_times_the_axial_spacing():
    heights = np.array([10, 12, 12, 20, 25, 30, 32, 40], float)[:, None, None]  # GCL+IPL vanished (fovea)
    thickness = layer_thickness(heights, axial_mm=0.004)
    assert list(thickness) == [*LAYERS, TOTAL_RETINA]
    assert thickness["RNFL"][0, 0] == pytest.approx(8.0) and thickness["GCL+IPL"][0, 0] == 0
    assert thickness["OS+RPE"][0, 0] == pytest.approx(32.0)
    assert thickness[TOTAL_RETINA][0, 0] == pytest.approx(120.0)
    assert sum(thickness[name][0, 0] for name in LAYERS) == pytest.approx(thickness[TOTAL_RETINA][0, 0])


def test_an_a_scan_without_a_boundary_has_no_thickness_and_bad_input_is_refused():
    heights = np.full((len(OCT_BOUNDARIES), 1, 2), 20.0)
    heights[:, 0, 1] = np.nan
    assert np.isnan(layer_thickness(heights, 0.004)[TOTAL_RETINA][0, 1])
    with pytest.raises(ValueError, match=r"\(8, Z, W\)"):
        layer_thickness(heights[:7], 0.004)
    with pytest.raises(ValueError, match="axial spacing"):
        layer_thickness(heights, 0.0)


def test_thickness_from_the_labels_is_the_phantoms_true_thickness():
    phantom = make_oct_phantom(n_bscans=3, height=320, width=256, seed=11)
    measured = layer_thickness(boundary_rows(phantom.labels), phantom.spacing[1])
    truth = layer_thickness(phantom.surfaces, phantom.spacing[1])
    axial_um = phantom.spacing[1] * 1000
    for name in (*LAYERS, TOTAL_RETINA):  # labels are whole rows: within one row of the true surfaces
        assert np.nanmean(np.abs(measured[name] - truth[name])) < axial_um, name
    assert 200 < np.nanmean(measured[TOTAL_RETINA]) < 450  # a macula, in um
