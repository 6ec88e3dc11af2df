"""Tests of the synthetic OCT phantom (reseg.data.phantom): determinism, label invariants, anatomy, realism."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.classes import OCT_CLASSES, OCT_FLUID
from reseg.data.phantom import DEFAULT_SPACING, OCTPhantom, make_oct_phantom
from reseg.data.spectralis import scan_field_mask


@pytest.fixture(scope="module")
def phantom() -> OCTPhantom:
    return make_oct_phantom(n_bscans=8, seed=0, fluid=True)


@pytest.fixture(scope="module")
def dry_phantom() -> OCTPhantom:
    return make_oct_phantom(n_bscans=8, seed=1, fluid=False)


# ------------------------------------------------------------------------------------------ basics


def test_shapes_dtypes_spacing(phantom: OCTPhantom) -> None:
    assert phantom.image.shape == phantom.labels.shape == (8, 496, 768)
    assert phantom.image.dtype == np.uint8 and phantom.labels.dtype == np.uint8
    assert phantom.spacing == DEFAULT_SPACING
    assert phantom.surfaces is not None and phantom.surfaces.shape == (8, 8, 768)
    small = make_oct_phantom(n_bscans=2, height=256, width=200, seed=3)
    assert small.image.shape == small.labels.shape == (2, 256, 200)


def test_seed_determinism_and_variation() -> None:
    a = make_oct_phantom(n_bscans=3, seed=11)
    b = make_oct_phantom(n_bscans=3, seed=11)
    c = make_oct_phantom(n_bscans=3, seed=12)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.fovea == b.fovea
    # A different seed gives different anatomy, not just different noise.
    assert (a.labels != c.labels).mean() > 0.01
    assert not np.array_equal(a.image, c.image)


def test_too_small_height_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        make_oct_phantom(n_bscans=1, height=90, width=64)


# ------------------------------------------------------------------------------------------ labels


def _check_ordering(labels: np.ndarray) -> None:
    """In every A-scan the non-fluid labels are 0, then 1..7 non-decreasing, then 8."""
    lab = labels.astype(np.int16)
    fluid = lab == OCT_FLUID
    # Replace fluid by the running maximum of the tissue above it; the result is non-decreasing down every
    # A-scan exactly when the non-fluid labels are.
    filled = np.maximum.accumulate(np.where(fluid, -1, lab), axis=1)
    assert np.all(np.diff(filled, axis=1) >= 0), "layer labels out of order in some A-scan"
    assert np.all(lab[:, 0, :] == 0), "top row must be vitreous"
    assert np.all(lab[:, -1, :] == 8), "bottom row must be choroid/sclera"
    assert lab.max() <= OCT_FLUID


def test_label_ordering_invariant(phantom: OCTPhantom, dry_phantom: OCTPhantom) -> None:
    for ph in (phantom, dry_phantom, make_oct_phantom(n_bscans=4, seed=7, height=320, width=384)):
        _check_ordering(ph.labels)


def test_only_inner_layers_vanish_and_only_at_the_fovea(phantom: OCTPhantom) -> None:
    lab = phantom.labels
    present = np.stack([(lab == c).any(axis=1) for c in range(10)])  # (class, Z, W)
    assert present[3:8].all(), "INL..OS+RPE must exist in every A-scan"
    missing_inner = ~present[1] | ~present[2]
    dz, _, dx = phantom.spacing
    zi, xi = np.nonzero(missing_inner)
    fz, fx = phantom.fovea
    dist_mm = np.hypot((zi - fz) * dz, (xi - fx) * dx)
    assert dist_mm.size == 0 or dist_mm.max() < 0.5, "RNFL/GCL+IPL may be absent only in the foveal pit"


def test_all_classes_present_with_fluid(phantom: OCTPhantom, dry_phantom: OCTPhantom) -> None:
    assert set(np.unique(phantom.labels)) == set(range(len(OCT_CLASSES)))
    assert set(np.unique(dry_phantom.labels)) == set(range(9))
    for seed in range(6):  # the fluid class must never be missing when asked for
        assert (make_oct_phantom(n_bscans=2, seed=seed, fluid=True).labels == OCT_FLUID).any()


def test_fluid_inside_retina(phantom: OCTPhantom) -> None:
    lab = phantom.labels
    rows = np.arange(lab.shape[1])[None, :, None]
    ilm = np.argmax(lab != 0, axis=1)[:, None, :]  # first non-vitreous row of each A-scan
    ez = np.argmax(lab == 6, axis=1)[:, None, :]  # first ellipsoid-zone row
    fluid = lab == OCT_FLUID
    assert fluid.any()
    assert not (fluid & ((rows <= ilm) | (rows >= ez))).any(), "fluid outside ILM..top of EZ"
    # Stronger, from the true surfaces: fluid pixel centres lie strictly between ILM and the EZ top.
    z, y, x = np.nonzero(fluid)
    assert np.all(y + 0.5 > phantom.surfaces[0][z, x]) and np.all(y + 0.5 < phantom.surfaces[5][z, x])


def test_labels_match_surfaces(dry_phantom: OCTPhantom) -> None:
    s = dry_phantom.surfaces
    rows = (np.arange(dry_phantom.labels.shape[1]) + 0.5)[None, None, :, None]
    expected = (rows >= s[:, :, None, :]).sum(axis=0)
    np.testing.assert_array_equal(dry_phantom.labels, expected)


# ------------------------------------------------------------------------------------------ anatomy


def _inner_thickness(labels: np.ndarray) -> np.ndarray:
    """RNFL + GCL+IPL thickness in pixels per A-scan, (Z, W)."""
    return ((labels == 1) | (labels == 2)).sum(axis=1)


def test_foveal_pit(dry_phantom: OCTPhantom) -> None:
    fz, fx = dry_phantom.fovea
    k, c = round(fz), round(fx)
    assert 0 <= k < dry_phantom.labels.shape[0] and 0 <= c < dry_phantom.labels.shape[2]
    inner = _inner_thickness(dry_phantom.labels)
    step = round(1.5 / dry_phantom.spacing[2])  # 1.5 mm either side
    centre = inner[k, c - 2 : c + 3].mean()
    away = min(inner[k, max(c - step, 0)], inner[k, min(c + step, inner.shape[1] - 1)])
    assert centre <= 3 and away >= 15 and away > 6 * max(centre, 1)
    # The ONL is thickest at the fovea.
    onl = (dry_phantom.labels == 5).sum(axis=1)
    assert onl[k, c] > onl[k, max(c - step, 0)] and onl[k, c] > onl[k, min(c + step, onl.shape[1] - 1)]


def test_pit_only_near_the_fovea() -> None:
    ph = make_oct_phantom(n_bscans=31, height=496, width=384, seed=4, fluid=False)
    inner = _inner_thickness(ph.labels)
    dist = np.abs(np.arange(31) - ph.fovea[0]) * ph.spacing[0]
    far = dist > 1.2
    assert far.any()
    assert inner[far].min() >= 10, "B-scans far from the fovea must have no pit"
    assert inner[np.argmin(dist)].min() <= 3


def test_mean_intensity_ordering() -> None:
    for seed in (0, 1, 2):
        ph = make_oct_phantom(n_bscans=4, seed=seed)
        mean = {c: ph.image[ph.labels == c].mean() for c in range(10)}
        assert mean[7] > mean[5] + 40, "OS+RPE must be much brighter than ONL"
        assert mean[1] > mean[3] + 30, "RNFL must be much brighter than INL"
        assert mean[6] > mean[5] and mean[4] > mean[5] and mean[2] > mean[3]
        assert all(mean[0] < mean[c] for c in range(1, 9)), "vitreous must be darker than all tissue"
        assert mean[OCT_FLUID] < mean[5], "fluid must be darker than the ONL around it"


# ------------------------------------------------------------------------------------------ realism


def test_histogram_close_to_duke(shared_data) -> None:
    from skimage.io import imread

    q = (5, 25, 50, 75, 95)
    files = sorted(shared_data("duke_dme", "images").glob("*.png"))
    assert files
    per_image = np.array([np.percentile(img[scan_field_mask(img)], q) for img in map(imread, files)])
    # Tolerance: the phantom must look like a typical Duke scan, i.e. each of its percentiles must fall in
    # the range spanned by the middle 90 % of the real images (which already differ by 2x in brightness),
    # widened by 4 grey levels for the phantom's own volume-to-volume variation.
    lo = np.percentile(per_image, 5, axis=0) - 4
    hi = np.percentile(per_image, 95, axis=0) + 4
    pooled = np.concatenate([make_oct_phantom(n_bscans=4, seed=s).image.ravel() for s in range(3)])
    ours = np.percentile(pooled, q)
    assert np.all((ours >= lo) & (ours <= hi)), f"phantom percentiles {ours} outside Duke range {lo}..{hi}"
    # And the pooled medians agree closely (Duke pooled median is 26).
    real_median = np.median(per_image[:, 2])
    assert abs(ours[2] - real_median) <= 8


# ------------------------------------------------------------------------------- outer retinal pathology


def test_unknown_pathology_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pathology cnv; known: srf, drusen, ped"):
        make_oct_phantom(n_bscans=1, seed=1, pathology=("srf", "cnv"))


def test_subretinal_fluid_is_dark_fluid_between_the_ellipsoid_zone_and_bm() -> None:
    ph = make_oct_phantom(n_bscans=3, seed=7, fluid=False, pathology=("srf",))
    _check_ordering(ph.labels)
    z, y, x = np.nonzero(ph.labels == OCT_FLUID)
    assert z.size > 1000  # a dome hundreds of pixels wide and tens of rows tall
    centres = y + 0.5
    assert np.all(centres > ph.surfaces[6][z, x]) and np.all(centres < ph.surfaces[7][z, x])
    band = ph.labels == 7
    assert ph.image[z, y, x].mean() < 0.6 * ph.image[band].mean()  # fluid is dark against OS+RPE


def test_drusen_and_ped_lift_the_rpe_and_leave_bm_beneath_them() -> None:
    plain = make_oct_phantom(n_bscans=3, seed=8, fluid=False)
    for kind in ("drusen", "ped"):
        ph = make_oct_phantom(n_bscans=3, seed=8, fluid=False, pathology=(kind,))
        _check_ordering(ph.labels)
        assert not (ph.labels == OCT_FLUID).any()  # labelled OS+RPE: BM is the bottom of the lesion
        thickening = (ph.surfaces[7] - ph.surfaces[6]) - (plain.surfaces[7] - plain.surfaces[6])
        assert thickening.max() > (5 if kind == "drusen" else 25)
        assert np.allclose(thickening[thickening < 1e-3], 0.0, atol=1e-3)  # elsewhere the band is as it was
    z, x = np.unravel_index(np.argmax(thickening), thickening.shape)  # the PED's crest
    top, bm = int(np.ceil(ph.surfaces[6][z, x])), int(ph.surfaces[7][z, x])
    column = ph.image[z, top:bm, x].astype(float)
    assert column[: len(column) // 4].mean() > 1.5 * column[len(column) // 2 :].mean()  # bright RPE over dark fluid
