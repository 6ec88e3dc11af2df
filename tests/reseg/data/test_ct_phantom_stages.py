"""Tests of the stages of the synthetic CT phantom (reseg.data.ct_phantom), one stage or two at a time.

test_ct_phantom.py checks the finished stack; these check what each stage is responsible for, on small stacks,
so that a broken stage is named by the test that fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from reseg.data import ct_phantom as ct

ORGAN_STAGES = (ct._paint_liver, ct._paint_spleen, ct._paint_stomach, ct._paint_gallbladder, ct._paint_pancreas)


def _start(
    seed: int, n_slices: int = 12, size: int = 64, spacing_mm: float = 6.0
) -> tuple[np.random.Generator, dict[str, float], ct._Body, ct._Canvas]:
    """The first stages of a phantom: generator, tissue HU, body and an empty canvas (air)."""
    rng = np.random.default_rng(seed)
    hu = ct._tissue_hu(rng, True)
    body = ct._make_body(rng, n_slices, size, spacing_mm)
    return rng, hu, body, ct._Canvas(body.shape, hu["air"])


def _full(body: ct._Body, array: np.ndarray) -> np.ndarray:
    """A broadcastable coordinate or mask at the full stack shape, to index with a label mask."""
    return np.broadcast_to(array, body.shape)


# ------------------------------------------------------------------------------------------ canvas


def test_later_paint_wins_image_and_label() -> None:
    canvas = ct._Canvas((1, 4, 4), -1000.0)
    first = np.zeros((1, 4, 4), dtype=bool)
    first[0, :3, :3] = True
    second = np.zeros_like(first)
    second[0, 2:, 2:] = True
    canvas.paint(first, 50.0, ct.LIVER)
    canvas.paint(second, -60.0)  # tissue without a class takes the label away (renal sinus fat)
    assert canvas.image[0, 2, 2] == -60.0 and canvas.labels[0, 2, 2] == 0
    assert canvas.image[0, 0, 0] == 50.0 and canvas.labels[0, 0, 0] == ct.LIVER
    assert canvas.image[0, 3, 0] == -1000.0 and canvas.labels[0, 3, 0] == 0
    # A value map is sampled where the mask is, not broadcast as one value.
    canvas.paint(first, np.arange(4, dtype=np.float32)[None, None, :], ct.SPLEEN)
    np.testing.assert_array_equal(canvas.image[0, 1, :3], [0.0, 1.0, 2.0])
    assert canvas.labels[0, 1, 3] == 0


@pytest.mark.parametrize("seed", [0, 3])
def test_gallbladder_displaces_the_liver(seed: int) -> None:
    # The gallbladder lies in the liver's inferior surface: painted after it, it takes those voxels, label and HU.
    rng, hu, body, canvas = _start(seed, n_slices=16)
    ct._paint_liver(canvas, rng, body, hu)
    liver = canvas.labels == ct.LIVER
    ct._paint_gallbladder(canvas, rng, body, hu)
    gallbladder = canvas.labels == ct.GALLBLADDER
    taken = liver & gallbladder
    assert taken.sum() > 20
    assert np.all(canvas.image[gallbladder] == np.float32(hu["gallbladder"]))
    assert np.all(canvas.labels[liver & ~gallbladder] == ct.LIVER)


# ------------------------------------------------------------------------------------------ body


def test_body_fits_the_field_of_view_and_a_small_one_scales_the_patient() -> None:
    big = ct._make_body(np.random.default_rng(2), 4, 128, 4.0)  # 512 mm: an adult fits as is
    small = ct._make_body(np.random.default_rng(2), 4, 64, 1.0)  # 64 mm: it must be scaled down
    assert big.a == small.a and big.g == small.g  # same anatomy, organ sizes relative to it unchanged
    assert np.isclose(float(big.u[0, 0, 1] - big.u[0, 0, 0]), 4.0)  # no scaling: pixels are physical mm
    assert float(small.u[0, 0, 1] - small.u[0, 0, 0]) > 4.0  # one physical mm holds several anatomical mm
    for body, spacing in ((big, 4.0), (small, 1.0)):
        mask = body.mask
        assert not (mask[:, 0].any() or mask[:, -1].any() or mask[:, :, 0].any() or mask[:, :, -1].any())
        width_mm = np.ptp(np.nonzero(mask)[2]) * spacing
        assert width_mm <= 0.9 * body.shape[2] * spacing + 2 * spacing
    assert np.ptp(np.nonzero(small.mask)[2]) > 0.8 * 64  # scaled to fill the field, not shrunk to a dot
    big_width_mm = (np.ptp(np.nonzero(big.mask[0, big.mask.shape[1] // 2])[0]) + 1) * 4.0
    assert abs(big_width_mm - 2 * big.a * float(big.widen[0, 0, 0])) < 2 * 4.0


def test_wall_layers_nest_inside_the_body() -> None:
    _, _, body, _ = _start(5)
    assert body.organ_room.any()
    assert not np.any(body.organ_room & ~body.cavity) and not np.any(body.cavity & ~body.mask)
    assert (body.mask & ~body.cavity).sum() > 0.1 * body.mask.sum()  # fat and muscle make a real wall


# ------------------------------------------------------------------------------------------ organs


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_organs_stay_in_the_peritoneal_cavity(seed: int) -> None:
    rng, hu, body, canvas = _start(seed)
    spine = ct._place_spine(rng, body)
    for stage in ORGAN_STAGES:
        stage(canvas, rng, body, hu)
    ct._paint_kidneys(canvas, rng, body, spine, hu)
    ct._paint_vessels(canvas, rng, body, spine, hu)
    labels = canvas.labels
    assert set(np.unique(labels)) == set(range(9))
    organs = (labels > 0) & (labels != ct.AORTA)
    assert not np.any(organs & ~body.organ_room)
    assert not np.any((labels == ct.AORTA) & ~body.cavity)


def test_kidneys_either_side_of_the_spine_right_one_lower() -> None:
    for seed in (0, 4):
        rng, hu, body, canvas = _start(seed, n_slices=40)  # 40 x 6 mm: both kidneys whole
        spine = ct._place_spine(rng, body)
        ct._paint_kidneys(canvas, rng, body, spine, hu)
        z, u = _full(body, body.z), _full(body, body.u)
        right, left = canvas.labels == ct.RIGHT_KIDNEY, canvas.labels == ct.LEFT_KIDNEY
        assert not right[[0, -1]].any() and not left[[0, -1]].any()
        assert u[right].min() > spine.u > u[left].max()  # the patient's right is towards higher u
        assert z[right].min() < z[left].min() and z[right].mean() < z[left].mean() - 5.0
        # The renal sinus is fat inside the kidney's outline that carries no kidney label.
        sinus = canvas.image == np.float32(hu["sinus"])
        assert sinus.any() and not np.any(canvas.labels[sinus])


def test_aorta_lies_anterior_and_left_of_the_vertebral_body() -> None:
    for seed in (1, 2):
        rng, hu, body, canvas = _start(seed)
        spine = ct._place_spine(rng, body)
        ct._paint_vessels(canvas, rng, body, spine, hu)
        aorta = canvas.labels == ct.AORTA
        assert aorta.any(axis=(1, 2)).all()  # it runs through every slice
        front_of_spine = _full(body, spine.v + spine.b)
        assert np.all(_full(body, body.v)[aorta] > front_of_spine[aorta])
        assert _full(body, body.u)[aorta].mean() < spine.u


# ------------------------------------------------------------------------------------------ acquisition


def test_noise_leaves_labels_and_has_ct_standard_deviation() -> None:
    stds = []
    for seed in range(4):
        canvas = ct._Canvas((3, 96, 96), 40.0)
        canvas.labels[:, 20:60, 20:60] = ct.LIVER
        labels = canvas.labels.copy()
        image = ct._acquire(canvas, np.random.default_rng(seed), noise=True)
        np.testing.assert_array_equal(canvas.labels, labels)
        values = image[:, 8:-8, 8:-8].astype(np.float64)
        assert abs(values.mean() - 40.0) < 1.0  # correlated noise: ~3000 independent samples
        stds.append(values.std())
    assert all(9.6 < s < 15.4 for s in stds), stds  # 10-15 HU, as measured in real abdominal CT
    assert np.ptp(stds) > 0.3  # drawn per scan, not one fixed level
    clean = ct._acquire(ct._Canvas((3, 32, 32), 40.0), np.random.default_rng(0), noise=False)
    assert np.all(clean == 40)


def test_partial_volume_blurs_in_plane_only() -> None:
    canvas = ct._Canvas((3, 32, 32), 0.0)
    canvas.image[1, :, 16:] = 1000.0
    image = ct._acquire(canvas, np.random.default_rng(0), noise=False)
    assert np.all(image[[0, 2]] == 0)  # each slice is reconstructed on its own
    assert 0 < image[1, 10, 15] < 500 < image[1, 10, 16] < 1000  # a sub-pixel edge, not a step
    assert image[1, 10, 12] == 0 and image[1, 10, 20] == 1000


def test_quantisation_rounds_and_clips_to_the_scanner_range() -> None:
    canvas = ct._Canvas((2, 32, 48), 12.4)
    canvas.image[:, :, :16] = -3000.0
    canvas.image[:, :, 32:] = 5000.0
    image = ct._acquire(canvas, np.random.default_rng(0), noise=False)
    assert image.dtype == np.int16
    assert image.min() == -1024 and image.max() == 3071
    assert np.all(image[:, :, :12] == -1024) and np.all(image[:, :, 36:] == 3071)
    assert np.all(image[:, :, 22:26] == 12)
