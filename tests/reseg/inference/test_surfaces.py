"""Layer surfaces from class probabilities: ordered by construction, exact where the network is sure, fluid
only inside the retina, and the vitreous a network mistakes for fluid stays vitreous."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.classes import OCT_FLUID
from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.inference.surfaces import MIN_FLUID_UM2, fit_surfaces, labels_from_surfaces, surface_labels
from reseg.topology import check_oct_topology


def _confident(labels: np.ndarray, sure: float = 0.9) -> np.ndarray:
    """(N, 10, H, W) probabilities that put `sure` on each pixel's class and spread the rest."""
    one_hot = np.eye(10, dtype=np.float32)[labels].transpose(0, 3, 1, 2)
    return sure * one_hot + (1 - sure) / 10


@pytest.fixture(scope="module")
def phantom():
    return make_oct_phantom(n_bscans=2, height=224, width=160, seed=3)  # cysts and a foveal pit


def test_confident_probabilities_give_back_the_true_labels_and_boundaries(phantom):
    labels, surfaces = surface_labels(_confident(phantom.labels))
    np.testing.assert_array_equal(labels, phantom.labels)
    np.testing.assert_array_equal(surfaces, boundary_rows(phantom.labels))  # vanished layers: equal rows


def test_every_a_scan_is_ordered_however_noisy_the_network(phantom):
    rng = np.random.default_rng(0)
    noise = rng.dirichlet(np.ones(10), size=phantom.labels.shape).transpose(0, 3, 1, 2).astype(np.float32)
    probabilities = 0.35 * _confident(phantom.labels) + 0.65 * noise
    assert not check_oct_topology(probabilities.argmax(1)).ok  # the argmax is pixel soup
    labels, surfaces = surface_labels(probabilities)
    assert check_oct_topology(labels).ok
    assert np.all(np.diff(surfaces.astype(int), axis=0) >= 0)
    assert (labels == phantom.labels).mean() > 0.97  # and still mostly right


def test_fluid_stays_where_the_network_saw_it_inside_the_retina_and_nowhere_else(phantom):
    probabilities = _confident(phantom.labels)
    column = probabilities[0, :, :, 80]
    column[:, :20] = 0.01  # a speck of "fluid" in the vitreous
    column[OCT_FLUID, :20] = 0.91
    labels, surfaces = surface_labels(probabilities)
    assert not np.any(labels[0, :20, 80] == OCT_FLUID)
    truth = phantom.labels == OCT_FLUID
    assert truth.any() and np.array_equal(labels == OCT_FLUID, truth)
    assert surfaces[0, 0, 80] == boundary_rows(phantom.labels)[0, 0, 80]  # the ILM did not move up to it


def test_with_the_pixel_size_known_a_few_pixels_of_fluid_are_no_cyst_and_the_cysts_stay(phantom):
    probabilities = _confident(phantom.labels)
    layers = np.flatnonzero(phantom.labels[1, :, 120] == 5)  # an ONL column of the second B-scan, no cyst
    assert layers.size > 8
    row = int(layers[layers.size // 2])
    probabilities[1, :, row : row + 2, 120:123] = 0.01  # 6 px of "fluid": 262 um2 at 3.87 x 11.3 um
    probabilities[1, OCT_FLUID, row : row + 2, 120:123] = 0.91
    spacing = phantom.spacing[1:]
    unmeasured, _ = surface_labels(probabilities)
    measured, _ = surface_labels(probabilities, pixel_spacing=spacing)
    assert np.all(unmeasured[1, row : row + 2, 120:123] == OCT_FLUID)  # without the pixel size, kept
    np.testing.assert_array_equal(measured[1], phantom.labels[1])  # the speck is ONL again, the cysts stay
    pixel_um2 = spacing[0] * spacing[1] * 1e6
    changed = measured[0] != phantom.labels[0]  # the price: a cyst the image edge cut to 41 px goes too
    assert np.all(phantom.labels[0][changed] == OCT_FLUID) and changed.sum() * pixel_um2 < MIN_FLUID_UM2
    assert (measured == OCT_FLUID).sum() > 0.97 * (phantom.labels == OCT_FLUID).sum()


def test_vitreous_read_as_fluid_far_above_the_retina_does_not_lift_the_ilm():
    # A column as a network saw an unfamiliar device's vitreous: "fluid" at the top, vitreous or "choroid"
    # noise below it, then the retina.
    height = 120
    labels = np.zeros((1, height, 1), np.uint8)
    labels[0, 60:100], labels[0, 100:] = 5, 8
    probabilities = _confident(labels, sure=0.8)
    probabilities[0, :, :30] = 0.02
    probabilities[0, OCT_FLUID, :30], probabilities[0, 5, :30] = 0.7, 0.14
    probabilities[0, :, 40:50] = 0.02
    probabilities[0, 8, 40:50] = 0.8  # "choroid" in the vitreous
    ordered, surfaces = surface_labels(probabilities)
    assert surfaces[0, 0, 0] == 60 and surfaces[-1, 0, 0] == 100
    assert check_oct_topology(ordered).ok and not np.any(ordered == OCT_FLUID)


def test_labels_fill_from_surfaces_and_shapes_are_checked():
    surfaces = np.array([10, 12, 12, 20, 25, 30, 32, 40])[:, None, None]  # GCL+IPL vanished
    column = labels_from_surfaces(surfaces, 50)[0, :, 0]
    assert column[:10].tolist() == [0] * 10 and column[10:12].tolist() == [1, 1] and column[12] == 3
    assert column[39] == 7 and column[40:].tolist() == [8] * 10
    with pytest.raises(ValueError, match=r"\(N, 10, H, W\)"):
        fit_surfaces(np.zeros((1, 9, 4, 4), np.float32))
