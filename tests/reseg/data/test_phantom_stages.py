"""Tests of the stages of the synthetic OCT phantom (reseg.data.phantom), each on a small volume.

test_phantom.py checks the finished volume; these pin down what each stage is responsible for, so that a
broken stage is named by the test that fails.
"""

from __future__ import annotations

import numpy as np
import pytest

from reseg.data import phantom as ph
from reseg.data.phantom import DEFAULT_SPACING


def _thicknesses(seed: int, n_bscans: int, height: int, width: int, spacing=DEFAULT_SPACING, fluid: bool = False):
    """Grid, fovea, generator and layer thicknesses as make_oct_phantom draws them."""
    rng = np.random.default_rng(seed)
    grid = ph._make_grid(n_bscans, height, width, spacing)
    fovea = ph._draw_fovea(rng, grid)
    return rng, grid, fovea, ph._layer_thicknesses(rng, grid, fovea, fluid)


def _flat_surfaces(n_bscans: int, width: int, ilm: float = 30.0, step: float = 10.0) -> np.ndarray:
    """Eight flat boundaries ``step`` px apart, from ``ilm`` down to BM."""
    levels = ilm + step * np.arange(8, dtype=np.float32)
    return np.broadcast_to(levels[:, None, None], (8, n_bscans, width)).astype(np.float32)


# ---------------------------------------------------------------------------------- grid, fovea, thicknesses


def test_grid_is_centred_in_millimetres() -> None:
    grid = ph._make_grid(3, 40, 11, (0.2, 0.004, 0.01))
    np.testing.assert_allclose(grid.x_mm, (np.arange(11) - 5) * 0.01, atol=1e-7)
    np.testing.assert_allclose(grid.z_mm, [-0.2, 0.0, 0.2], atol=1e-7)
    assert grid.xx.shape == grid.zz.shape == (3, 11) and grid.height == 40
    assert grid.um_px == pytest.approx(0.25)
    np.testing.assert_array_equal(grid.rows.ravel(), np.arange(40) + 0.5)


@pytest.mark.parametrize("seed", range(4))
def test_inner_layers_vanish_at_the_fovea_only(seed: int) -> None:
    # Dense across B-scans so that an A-scan lies within 0.01 mm of the pit centre.
    _, _, fovea, thick = _thicknesses(seed, 9, 64, 301, spacing=(0.01, 0.00387, 0.0113))
    inner = thick[0] + thick[1]  # RNFL + GCL+IPL, px
    k, c = np.unravel_index(np.argmin(fovea.r), fovea.r.shape)
    assert fovea.r[k, c] < 0.01
    assert inner[k, c] < 0.05, "RNFL and GCL+IPL must vanish at the foveal centre"
    assert inner[fovea.r > 1.0].min() > 10.0, "... and only there"
    assert min(t.min() for t in thick[2:]) >= 1.0, "INL..OS+RPE must never vanish"
    assert thick[4][k, c] > thick[4][fovea.r > 1.0].max(), "the ONL is thickest at the fovea"


@pytest.mark.parametrize("seed", range(4))
def test_rnfl_thickens_towards_the_nasal_side(seed: int) -> None:
    _, grid, fovea, thick = _thicknesses(seed, 1, 64, 501)
    lateral = np.abs(grid.xx - fovea.xf)
    ring = (lateral > 1.5) & (lateral < 2.0)
    nasal = fovea.xn > 0
    assert (ring & nasal).any() and (ring & ~nasal).any()
    assert thick[0][ring & nasal].mean() > 1.3 * thick[0][ring & ~nasal].mean()


# ---------------------------------------------------------------------------------------- intraretinal fluid


@pytest.mark.parametrize("seed", range(8))
def test_cysts_lie_strictly_inside_their_swollen_host_layer(seed: int) -> None:
    rng, grid, fovea, dry = _thicknesses(seed, 5, 1024, 160, fluid=True)
    thick, cyst_half = ph._intraretinal_fluid(rng, grid, fovea, dry)
    assert set(cyst_half) == {3, 4, 5}
    for i, (before, after) in enumerate(zip(dry, thick, strict=True)):
        if i + 1 in cyst_half:
            assert np.all(after >= before), "fluid only ever swells its host"
        else:
            np.testing.assert_array_equal(after, before)
    total = np.sum(thick, axis=0)
    assert total.max() < grid.height - 40
    surfaces = ph._stack_surfaces(np.full(total.shape, grid.height - 20, dtype=np.float32), thick)
    for host, half in cyst_half.items():
        inside = half > 0
        # The swelling alone holds the cyst and a margin, even where the dry layer is nearly gone (at the fovea).
        swelling = thick[host - 1] - dry[host - 1]
        assert np.all(swelling[inside] >= 2.0 * half[inside] + 2.0)
        mid = 0.5 * (surfaces[host - 1] + surfaces[host])
        # At least 1 px of tissue between the cyst and both boundaries of its host layer.
        assert np.all(mid[inside] - half[inside] - surfaces[host - 1][inside] >= 1.0)
        assert np.all(surfaces[host][inside] - (mid[inside] + half[inside]) >= 1.0)
    labels = ph._labels(grid, surfaces, cyst_half)
    z, y, x = np.nonzero(labels == 9)
    assert z.size > 0, "at least one cyst must cross a B-scan"
    assert np.all(y + 0.5 > surfaces[0][z, x]) and np.all(y + 0.5 < surfaces[5][z, x]), "fluid outside ILM..EZ"


# ------------------------------------------------------------------------------------ BM and the boundaries


@pytest.mark.parametrize(
    ("seed", "size", "spacing"),
    [
        (0, (3, 160, 96), DEFAULT_SPACING),
        (1, (2, 496, 200), DEFAULT_SPACING),
        (2, (4, 128, 64), (0.12, 0.0078, 0.0226)),
        (3, (1, 200, 128), (0.24, 0.0039, 0.0113)),
    ],
)
def test_surfaces_are_ordered_and_fit_the_height(seed: int, size: tuple[int, int, int], spacing) -> None:
    rng, grid, _, thick = _thicknesses(seed, *size, spacing=spacing)
    bm = ph._place_bm(rng, grid, ph._bm_shape(rng, grid), np.sum(thick, axis=0))
    surfaces = ph._stack_surfaces(bm, thick)
    assert surfaces.shape == (8, size[0], size[2]) and surfaces.dtype == np.float32
    assert np.all(np.diff(surfaces, axis=0) >= 0), "boundaries out of order"
    np.testing.assert_allclose(np.diff(surfaces, axis=0), thick, atol=1e-3)
    height = size[1]
    assert surfaces[0].min() >= max(0.07 * height, 4.0) - 1e-3, "ILM above the top margin"
    assert surfaces[7].max() <= 0.86 * height + 1e-3, "no room left for the choroid"


def test_a_steep_bm_is_flattened_to_fit_and_a_too_thick_retina_is_refused() -> None:
    grid = ph._make_grid(2, 200, 100, DEFAULT_SPACING)
    ramp = np.broadcast_to(np.linspace(0.0, 200.0, 100, dtype=np.float32), (2, 100))
    total = np.full((2, 100), 50.0, dtype=np.float32)
    bm = ph._place_bm(np.random.default_rng(0), grid, ramp, total)
    assert bm.min() - 50.0 >= 0.07 * 200 - 1e-3 and bm.max() <= 0.86 * 200 + 1e-3
    assert np.all(np.diff(bm, axis=1) > 0), "flattening must keep the shape, only smaller"
    with pytest.raises(ValueError, match="does not fit"):
        ph._place_bm(np.random.default_rng(0), grid, ramp, np.full((2, 100), 170.0, dtype=np.float32))


# --------------------------------------------------------------------------------------------------- labels


def test_labels_from_surfaces_are_ordered_down_every_a_scan() -> None:
    rng = np.random.default_rng(5)
    grid = ph._make_grid(2, 80, 50, DEFAULT_SPACING)
    steps = rng.uniform(0.0, 8.0, (8, 2, 50)) * (rng.random((8, 2, 50)) > 0.3)  # some layers absent
    steps[0] += 2.0
    surfaces = np.cumsum(steps, axis=0).astype(np.float32)
    labels = ph._labels(grid, surfaces, {})
    assert labels.dtype == np.uint8 and labels.shape == (2, 80, 50)
    assert np.all(np.diff(labels.astype(np.int16), axis=1) >= 0)
    assert np.all(labels[:, 0] == 0) and np.all(labels[:, -1] == 8)
    # A pixel is in the layer whose top boundary is the last one above its centre.
    np.testing.assert_array_equal(labels, (grid.rows[None] >= surfaces[:, :, None, :]).sum(axis=0))


def test_cysts_are_labelled_about_the_middle_of_their_host() -> None:
    grid = ph._make_grid(1, 120, 3, DEFAULT_SPACING)
    surfaces = _flat_surfaces(1, 3, ilm=20.0, step=12.0)  # ONL (class 5) spans rows 68..80
    half = np.array([[0.0, 3.0, 5.9]], dtype=np.float32)
    labels = ph._labels(grid, surfaces, {5: half, 3: np.zeros_like(half)})
    np.testing.assert_array_equal(np.nonzero(labels[0, :, 1] == 9)[0], np.arange(71, 77))
    np.testing.assert_array_equal(np.nonzero(labels[0, :, 2] == 9)[0], np.arange(68, 80))
    assert not (labels[0, :, 0] == 9).any()
    assert set(np.unique(labels[0, :, 2])) == set(range(9)) - {5} | {9}


# --------------------------------------------------------------------------------------------- reflectivity


def test_layer_reflectivity_has_bright_rnfl_and_rpe_and_dark_onl() -> None:
    grid = ph._make_grid(1, 140, 8, DEFAULT_SPACING)
    surfaces = _flat_surfaces(1, 8, ilm=20.0, step=14.0)
    thick = [np.full((1, 8), 14.0, dtype=np.float32)] * 7
    refl, lin = ph._layer_reflectivity(np.random.default_rng(0), grid, surfaces, thick)
    profile = refl[0, :, 4]
    assert np.all(profile[:19] == 0) and np.all(profile[120:] == 0), "nothing above ILM or below BM"
    onl = profile[77:82].mean()
    assert profile[21:32].mean() > 2 * onl and profile[111:118].max() > 5 * onl
    assert profile[111:118].max() == pytest.approx(lin["rpe"])
    assert lin["rpe"] == pytest.approx(ph._linear(ph._DISPLAY["rpe"]), rel=0.25)


def test_choroid_decays_with_depth_below_bm() -> None:
    grid = ph._make_grid(2, 200, 128, DEFAULT_SPACING)
    refl = np.full((2, 200, 128), 0.01, dtype=np.float32)
    bm = np.full((2, 128), 60.0, dtype=np.float32)
    out = ph._add_choroid(np.random.default_rng(0), grid, refl, bm, 0.05)
    np.testing.assert_array_equal(out[:, :61], refl[:, :61])  # rows whose centre is above BM
    means = out[:, 61:101].reshape(2, 4, 10, 128).mean(axis=(0, 2, 3))  # 10-px bins below BM
    assert np.all(np.diff(means) < 0), f"choroid must get darker with depth, got {means}"
    assert means[3] < 0.5 * means[0]
    assert np.all(out[:, 61:] >= 0)


def test_fluid_value_and_hyperreflective_foci() -> None:
    surfaces = _flat_surfaces(3, 64, ilm=20.0, step=12.0)
    grid = ph._make_grid(3, 140, 64, DEFAULT_SPACING)
    labels = ph._labels(grid, surfaces, {5: np.full((3, 64), 3.0, dtype=np.float32)})
    refl = np.zeros((3, 140, 64), dtype=np.float32)
    ph._add_fluid_and_foci(np.random.default_rng(1), refl, labels, surfaces, 0.123)
    assert np.all(refl[labels == 9] == np.float32(0.123))
    foci = (refl > 0) & (labels != 9)
    assert foci.sum() > 10
    assert set(np.unique(labels[foci])) <= {2, 3, 4, 5}, "foci lie between GCL and the ONL"
    assert refl[foci].min() >= ph._linear(170) * 0.999 and refl[foci].max() <= ph._linear(230) * 1.001


# ------------------------------------------------------------------------------------------ retinal vessels


def test_vessel_shadows_attenuate_the_rows_beneath() -> None:
    rng = np.random.default_rng(3)
    grid = ph._make_grid(3, 160, 96, DEFAULT_SPACING)
    fovea = ph._draw_fovea(rng, grid)
    surfaces = _flat_surfaces(3, 96)  # ILM at row 30
    labels = ph._labels(grid, surfaces, {})
    refl = np.zeros((3, 160, 96), dtype=np.float32)
    att = ph._retinal_vessels(rng, grid, fovea, refl, labels, surfaces, 0.3)
    assert att.shape == refl.shape and att.min() > 0 and att.max() <= 1
    assert att.min() < 0.7, "a vessel must cast a real shadow"
    assert np.all(att[:, :32] == 1), "nothing above the vessels is shadowed"
    assert np.all(np.diff(att, axis=1) <= 0), "a shadow darkens everything beneath it"
    # A shadow removes at most the vessel's own profile (strength <= 1), so a column losing >= 10 % of its light
    # holds a vessel at >= 10 % of full brightness.
    shadowed = att[:, -1] < 0.9
    assert shadowed.any() and np.all(refl.max(axis=1)[shadowed] > 0.1 * 0.3), "a shadow without a vessel"
    assert np.all(refl[(labels < 1) | (labels > 3)] == 0), "vessels are painted in the inner retina only"
    # The optics stage applies the shadow to the blurred signal.
    plain, shaded = np.full_like(refl, 0.2), np.full_like(refl, 0.2)
    ph._optics_and_gain(np.random.default_rng(9), grid, plain, None)
    ph._optics_and_gain(np.random.default_rng(9), grid, shaded, att)
    np.testing.assert_allclose(shaded, plain * att, rtol=1e-5)


# ----------------------------------------------------------------------------------- optics, noise, display


def test_speckle_is_mean_preserving_log_normal() -> None:
    refl = np.ones((2, 64, 128), dtype=np.float32)
    ph._add_speckle(np.random.default_rng(0), refl)
    assert refl.min() > 0
    assert refl.mean() == pytest.approx(1.0, abs=0.03)
    assert 0.25 < np.log(refl).std() < 0.42


def test_noise_floor_clips_some_vitreous_to_black_and_dims_with_depth() -> None:
    grid = ph._make_grid(2, 128, 128, DEFAULT_SPACING)
    refl = np.zeros((2, 128, 128), dtype=np.float32)
    ph._add_noise_floor(np.random.default_rng(0), grid, refl)
    assert 0.08 < (refl <= 0).mean() < 0.25, "about 16 % of the noise floor is black"
    assert np.median(refl[:, :32]) > 1.5 * np.median(refl[:, -32:])


def test_display_mapping_is_fourth_root() -> None:
    levels = np.arange(256)
    np.testing.assert_array_equal(ph._to_display(np.asarray(ph._linear(levels), dtype=np.float32)), levels)
    x = np.random.default_rng(0).random(10000).astype(np.float32)
    image = ph._to_display(x.copy())
    assert image.dtype == np.uint8
    assert np.abs(image - 255 * x.astype(np.float64) ** 0.25).max() <= 0.5 + 1e-3
    np.testing.assert_array_equal(ph._to_display(np.array([-0.5, 0.0, 1.0, 7.0], dtype=np.float32)), [0, 0, 255, 255])
