"""The ETDRS grid: sectors where the standard puts them, named for the eye, around the fovea of the volume."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.data.phantom import make_oct_phantom
from reseg.evaluation.evaluate import boundary_rows
from reseg.measurement.etdrs import en_face, find_fovea, sector_map, sector_means, sector_names
from reseg.measurement.thickness import TOTAL_RETINA, layer_thickness


def test_sectors_lie_in_the_1_3_6_mm_circles_and_the_quadrants_between_the_diagonals():
    grid = en_face((61, 61), (0.1, 0.1))  # 6 x 6 mm, y down, x right
    sectors = sector_map(grid, centre=(3.0, 3.0))
    at = lambda y, x: sectors[round(y / 0.1), round(x / 0.1)]  # noqa: E731
    assert at(3.0, 3.0) == 0 and at(3.0, 3.4) == 0  # within 0.5 mm: central
    assert at(2.0, 3.0) == 1 and at(3.0, 4.0) == 2 and at(4.0, 3.0) == 3 and at(3.0, 2.0) == 4  # inner ring
    assert at(1.0, 3.0) == 5 and at(3.0, 5.2) == 6 and at(5.0, 3.0) == 7 and at(3.0, 0.8) == 8  # outer ring
    assert at(0.0, 0.0) == -1  # the corner is beyond the 6 mm circle
    assert at(2.0, 3.9) == 1 and at(2.1, 4.0) == 2  # either side of the diagonal
    assert set(np.unique(sectors)) == set(range(-1, 9))


def test_nasal_is_towards_the_disc_of_the_eye_and_unknown_eyes_are_named_by_the_image():
    assert sector_names("OD")[2] == "inner nasal" and sector_names("OD")[4] == "inner temporal"
    assert sector_names("OS")[2] == "inner temporal" and sector_names("OS")[8] == "outer nasal"
    assert sector_names(None)[2] == "inner right" and len(sector_names(None)) == 9
    assert en_face((2, 3), (0.1, 0.1), laterality="od").laterality == "OD"
    assert en_face((2, 3), (0.1, 0.1), laterality="").laterality is None


def test_recorded_b_scan_positions_place_each_a_scan_on_the_fundus():
    positions = np.array([[4.0, 1.0, 1.0, 1.0], [4.0, 1.5, 1.0, 1.5]])  # drawn right to left, 0.5 mm apart
    grid = en_face((2, 4), (0.5, 1.0), bscan_positions=positions)
    np.testing.assert_allclose(grid.x_mm[0], [4.0, 3.0, 2.0, 1.0])
    np.testing.assert_allclose(grid.y_mm[:, 0], [1.0, 1.5])
    with pytest.raises(ValueError, match=r"\(2, 4\) B-scan positions"):
        en_face((2, 4), (0.5, 1.0), bscan_positions=positions[:1])


@pytest.fixture(scope="module")
def macula():
    """A 6.25 x 6.4 mm macular volume with cysts around its fovea, at 25 x 256 A-scans."""
    return make_oct_phantom(n_bscans=25, height=320, width=256, seed=11, spacing=(0.25, 0.00387, 0.025))


def test_the_fovea_is_found_where_the_phantom_put_its_pit(macula):
    total = layer_thickness(boundary_rows(macula.labels), macula.spacing[1])[TOTAL_RETINA]
    grid = en_face(total.shape, (macula.spacing[0], macula.spacing[2]))
    y, x = find_fovea(total, grid)
    true_y, true_x = macula.fovea[0] * macula.spacing[0], macula.fovea[1] * macula.spacing[2]
    assert abs(y - true_y) <= macula.spacing[0] and abs(x - true_x) < 0.1


def test_sector_means_from_the_labels_are_the_true_ones(macula):
    grid = en_face(macula.labels.shape[::2], (macula.spacing[0], macula.spacing[2]))
    measured = layer_thickness(boundary_rows(macula.labels), macula.spacing[1])
    truth = layer_thickness(macula.surfaces, macula.spacing[1])
    sectors = sector_map(grid, find_fovea(truth[TOTAL_RETINA], grid))
    names = sector_names(None)
    for layer in (TOTAL_RETINA, "RNFL", "ONL+IS myoid"):
        ours, true = sector_means(measured[layer], sectors, names), sector_means(truth[layer], sectors, names)
        assert all(abs(ours[name] - true[name]) < 2.0 for name in names), layer  # um, half a pixel row
    total = sector_means(truth[TOTAL_RETINA], sectors, names)
    assert total["central"] < min(total[f"inner {q}"] for q in ("superior", "right", "inferior", "left"))


def test_a_sector_the_scan_does_not_reach_has_no_mean():
    grid = en_face((3, 40), (0.1, 0.1))  # a narrow strip
    sectors = sector_map(grid, centre=(0.1, 2.0))
    means = sector_means(np.full((3, 40), 250.0), sectors, sector_names(None))
    assert means["central"] == 250.0 and means["outer inferior"] is None
