"""Tests of the synthetic abdominal CT phantom (reseg.data.ct_phantom): determinism, labels, anatomy, HU.

Where the real TotalSegmentator example is available (../shared/data/ct_totalseg) the phantom is compared with
it read the way the project reads NIfTI for the CT model: RAS+ canonical, transposed to (Z, Y, X).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from reseg.classes import CT_CLASSES
from reseg.data.ct_phantom import CTPhantom, make_ct_phantom

# Phantom class index -> TotalSegmentator id in the real example's labels.
TOTALSEG_IDS = {1: 52, 2: 4, 3: 3, 4: 2, 5: 5, 6: 7, 7: 1, 8: 6}
AORTA, GALLBLADDER, LEFT_KIDNEY, RIGHT_KIDNEY, LIVER, PANCREAS, SPLEEN, STOMACH = range(1, 9)


@pytest.fixture(scope="module")
def phantom() -> CTPhantom:
    return make_ct_phantom(seed=0)


@pytest.fixture(scope="module")
def plain_phantoms() -> list[CTPhantom]:
    return [make_ct_phantom(seed=seed, contrast=False) for seed in (0, 1, 2)]


def _eroded_values(image: np.ndarray, labels: np.ndarray, index: int) -> np.ndarray:
    """HU inside a label after a one-pixel in-plane erosion: away from partial volume with the neighbours."""
    inner = ndi.binary_erosion(labels == index, structure=np.ones((1, 3, 3), dtype=bool))
    return image[inner].astype(np.float64)


def _body_mask(image: np.ndarray) -> np.ndarray:
    """Per slice, the largest connected region above -400 HU with its holes (bowel gas, lungs) filled."""
    out = np.zeros(image.shape, dtype=bool)
    for k, axial in enumerate(image):
        mask = ndi.binary_fill_holes(ndi.binary_opening(axial > -400, iterations=2))
        regions, n = ndi.label(mask)
        if n:
            out[k] = regions == 1 + int(np.argmax(ndi.sum(mask, regions, range(1, n + 1))))
    return out


def _body_relative_centroid(image: np.ndarray, labels: np.ndarray, index: int) -> tuple[float, float]:
    """Centroid (row, column) of a label relative to the body's bounding box: -1 .. 1 from edge to edge.

    The real scan's field of view is 122 x 101 and its body fills it differently from the phantom's square
    field, so positions are compared in body coordinates, not image fractions.
    """
    _, rows, cols = np.nonzero(_body_mask(image))
    _, y, x = np.nonzero(labels == index)
    cy, hy = (rows.max() + rows.min()) / 2, (rows.max() - rows.min()) / 2
    cx, hx = (cols.max() + cols.min()) / 2, (cols.max() - cols.min()) / 2
    return float((y.mean() - cy) / hy), float((x.mean() - cx) / hx)


def _real_example(shared_data) -> tuple[np.ndarray, np.ndarray]:
    nib = pytest.importorskip("nibabel")
    folder = shared_data("ct_totalseg")
    image = nib.as_closest_canonical(nib.load(folder / "example_ct_sm.nii.gz"))
    seg = nib.as_closest_canonical(nib.load(folder / "example_seg.nii.gz"))
    return image.get_fdata().transpose(2, 1, 0), np.asarray(seg.dataobj).transpose(2, 1, 0)


# ------------------------------------------------------------------------------------------ basics


def test_shapes_dtypes_spacing(phantom: CTPhantom) -> None:
    assert phantom.image.shape == phantom.labels.shape == (24, 128, 128)
    assert phantom.image.dtype == np.int16 and phantom.labels.dtype == np.uint8
    assert phantom.spacing == (3.0, 3.0, 3.0)
    assert phantom.body is not None and phantom.body.shape == phantom.image.shape
    assert int(phantom.labels.max()) < len(CT_CLASSES)
    assert phantom.image.min() >= -1024 and phantom.image.max() <= 3071
    small = make_ct_phantom(n_slices=3, size=48, spacing_mm=5.0, seed=4)
    assert small.image.shape == small.labels.shape == (3, 48, 48) and small.spacing == (5.0, 5.0, 5.0)


def test_small_field_of_view_gets_a_small_patient() -> None:
    # 64 x 1 mm cannot hold an adult abdomen: the body is scaled to fit, organs with it, labels stay inside.
    tiny = make_ct_phantom(n_slices=8, size=64, spacing_mm=1.0, seed=2)
    assert not tiny.body[:, 0, :].any() and not tiny.body[:, :, -1].any()
    assert tiny.labels[~tiny.body].max() == 0
    assert len(np.unique(tiny.labels)) >= 4


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        make_ct_phantom(n_slices=0)
    with pytest.raises(ValueError, match="positive"):
        make_ct_phantom(spacing_mm=0.0)


def test_seed_determinism_and_variation() -> None:
    a = make_ct_phantom(n_slices=8, seed=11)
    b = make_ct_phantom(n_slices=8, seed=11)
    c = make_ct_phantom(n_slices=8, seed=12)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    # A different seed gives different anatomy (sizes, positions), not just different noise.
    assert (a.labels != c.labels).mean() > 0.01
    assert not np.array_equal(a.image, c.image)


def test_noise_free_option_differs_only_by_noise() -> None:
    clean = make_ct_phantom(n_slices=6, seed=3, noise=False)
    noisy = make_ct_phantom(n_slices=6, seed=3)
    np.testing.assert_array_equal(clean.labels, noisy.labels)
    residual = (noisy.image.astype(np.float64) - clean.image)[clean.body]
    assert 8.0 < residual.std() < 17.0  # CT noise of 10-15 HU


# ------------------------------------------------------------------------------------------ labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_every_class_present_and_inside_the_body(seed: int) -> None:
    ph = make_ct_phantom(seed=seed)
    assert set(np.unique(ph.labels)) == set(range(len(CT_CLASSES)))
    assert ph.labels[~ph.body].max() == 0
    # Independently of the generator's body mask: labels lie inside the body seen in the image.
    assert not np.any((ph.labels > 0) & ~_body_mask(ph.image))
    # Outside the body is air (-1000 HU plus noise).
    assert abs(float(np.median(ph.image[~ph.body])) + 1000.0) < 10.0


def test_organs_appear_and_disappear_along_z(phantom: CTPhantom) -> None:
    area = np.stack([(phantom.labels == c).sum(axis=(1, 2)) for c in range(9)])  # (class, slice)
    # The liver grows going up (real example: 320 px at the bottom, 2080 at the top); the kidneys and the
    # gallbladder belong to the lower slices; the aorta runs through every slice.
    assert area[LIVER, -1] > 2 * area[LIVER, :3].mean()
    for lower in (RIGHT_KIDNEY, GALLBLADDER):
        assert area[lower, :6].sum() > 0 and area[lower, -2:].sum() == 0
    assert np.all(area[AORTA] > 0)
    # No organ jumps: its area changes smoothly from slice to slice.
    for c in (LIVER, SPLEEN, LEFT_KIDNEY, RIGHT_KIDNEY):
        steps = np.abs(np.diff(area[c].astype(np.float64)))
        assert steps.max() <= 0.35 * area[c].max() + 15


def test_organ_sides_follow_the_data_convention(phantom: CTPhantom) -> None:
    # The project's reading of the real example puts the liver at ~0.66 of the width and the spleen at ~0.18:
    # the patient's right is at high columns. The phantom must agree, or the bundled model sees a mirror.
    def column(index: int) -> float:
        return float(np.nonzero(phantom.labels == index)[2].mean()) / phantom.labels.shape[2]

    assert column(LIVER) > 0.55 > 0.35 > column(SPLEEN)
    assert column(RIGHT_KIDNEY) > 0.5 > column(LEFT_KIDNEY)
    assert column(GALLBLADDER) > 0.5 > column(STOMACH)
    assert column(AORTA) < 0.5  # just left of the midline

    # Rows grow from posterior to anterior: kidneys and spleen are posterior, gallbladder and stomach anterior.
    def row(index: int) -> float:
        return float(np.nonzero(phantom.labels == index)[1].mean())

    assert max(row(LEFT_KIDNEY), row(RIGHT_KIDNEY), row(SPLEEN)) < row(AORTA) < row(PANCREAS) < row(STOMACH)


@pytest.mark.slow
def test_organ_positions_match_the_real_example(shared_data) -> None:
    image, seg = _real_example(shared_data)
    for seed in (0, 1, 2):
        ph = make_ct_phantom(seed=seed)
        for index, real_id in TOTALSEG_IDS.items():
            real = _body_relative_centroid(image, seg, real_id)
            ours = _body_relative_centroid(ph.image, ph.labels, index)
            # Same side and within 0.2 body half-widths: per-seed variation is +-0.05-0.1 of that.
            assert np.sign(ours[1]) == np.sign(real[1]), (CT_CLASSES[index].name, ours, real)
            assert abs(ours[0] - real[0]) < 0.2 and abs(ours[1] - real[1]) < 0.2, (CT_CLASSES[index].name, ours, real)


# ------------------------------------------------------------------------------------------ HU values


def test_enhanced_hu_ranges(phantom: CTPhantom) -> None:
    def mean(index: int) -> float:
        return float(_eroded_values(phantom.image, phantom.labels, index).mean())

    assert 150 < mean(AORTA) < 215  # arterial contrast
    assert 45 < mean(LIVER) < 75 and 35 < mean(SPLEEN) < 65
    assert -10 < mean(GALLBLADDER) < 25  # bile
    assert 25 < mean(PANCREAS) < 60
    for kidney in (LEFT_KIDNEY, RIGHT_KIDNEY):  # enhancing cortex around a darker medulla
        values = _eroded_values(phantom.image, phantom.labels, kidney)
        assert np.percentile(values, 90) - np.percentile(values, 10) > 50


def test_background_tissues(phantom: CTPhantom) -> None:
    body = phantom.image[phantom.body].astype(np.float64)
    assert ((body > -150) & (body < -50)).mean() > 0.05  # subcutaneous and visceral fat
    assert ((body > 0) & (body < 100)).mean() > 0.4  # muscle and organs
    # The spine: cortical bone behind the aorta, in the posterior midline.
    posterior_bone = phantom.image[:, :64, 54:74] > 400  # posterior half, middle sixth of the columns
    assert posterior_bone.any(axis=(1, 2)).mean() > 0.5
    stomach = phantom.image[phantom.labels == STOMACH]
    assert (stomach < -500).any() and (stomach > -100).mean() > 0.5  # gas cap over fluid and wall


def test_plain_hu_match_the_real_example(shared_data, plain_phantoms: list[CTPhantom]) -> None:
    image, seg = _real_example(shared_data)
    # Tolerances around the real (non-enhanced) organ means, eroded on both sides. 15 HU for parenchyma, vessel
    # blood and bile: the normal spread between patients and scanners (the phantom's own per-seed jitter is
    # +-3 HU per tissue). Kidneys 25: the real labels take in renal sinus fat at 3 mm (their SD is 14-24 HU
    # against 12-13 in liver or spleen, their means 13-20 HU against ~30 for renal parenchyma).
    tolerance = {AORTA: 15, GALLBLADDER: 15, LIVER: 15, SPLEEN: 15, LEFT_KIDNEY: 25, RIGHT_KIDNEY: 25}
    for index, tol in tolerance.items():
        real = _eroded_values(image, seg, TOTALSEG_IDS[index])
        for ph in plain_phantoms:
            ours = _eroded_values(ph.image, ph.labels, index)
            assert abs(ours.mean() - real.mean()) < tol, (CT_CLASSES[index].name, ours.mean(), real.mean())
    # The real pancreas is fatty (~5 HU over only ~100 eroded voxels); the phantom's is ordinary parenchyma:
    # not below the real one, and below the liver as in any non-enhanced scan.
    real_pancreas = _eroded_values(image, seg, TOTALSEG_IDS[PANCREAS]).mean()
    for ph in plain_phantoms:
        pancreas = _eroded_values(ph.image, ph.labels, PANCREAS).mean()
        assert real_pancreas - 5 < pancreas < _eroded_values(ph.image, ph.labels, LIVER).mean()
    # Noise: the standard deviation inside the eroded liver (real: 13 HU).
    real_sd = _eroded_values(image, seg, TOTALSEG_IDS[LIVER]).std()
    for ph in plain_phantoms:
        assert abs(_eroded_values(ph.image, ph.labels, LIVER).std() - real_sd) < 6
