"""Device styles change how a B-scan looks, never where its anatomy is."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.data.device_styles import DEVICE_STYLES, DeviceStyle, random_style, render_style
from reseg.data.phantom import make_oct_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_oct_phantom(1, height=248, width=384, seed=11, fluid=False)


def _style(name: str) -> DeviceStyle:
    return next(style for style in DEVICE_STYLES if style.name == name)


def _layer_means(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([image[labels == k].mean() for k in range(1, 9)])


def test_the_reference_style_gives_the_image_back(phantom):
    image = phantom.image[0]
    shown = render_style(image, _style("spectralis"), np.random.default_rng(0))
    assert shown.shape == image.shape and np.array_equal(np.rint(shown).astype(np.uint8), image)


@pytest.mark.parametrize("name", ["log_display", "gamma_display", "pseudo_colour", "weak_signal"])
def test_display_styles_change_the_grey_levels_but_keep_which_layer_is_brighter(phantom, name):
    image, labels = phantom.image[0], phantom.labels[0]
    shown = render_style(image, _style(name), np.random.default_rng(0))
    assert shown.shape == image.shape and shown.min() >= 0 and shown.max() <= 255
    before, after = _layer_means(image.astype(float), labels), _layer_means(shown, labels)
    assert np.abs(after - before).mean() > 5  # a visibly different look
    brighter_before = before[:, None] > before[None, :] + 3  # pairs of layers clearly apart in brightness
    assert np.all((after[:, None] > after[None, :])[brighter_before])


def test_low_resolution_blurs_and_heavy_speckle_roughens_without_moving_anything(phantom):
    image, labels = phantom.image[0].astype(np.float32), phantom.labels[0]
    low = render_style(image, _style("low_resolution"), np.random.default_rng(0))
    speckled = render_style(image, _style("heavy_speckle"), np.random.default_rng(0))

    def lateral_roughness(x: np.ndarray) -> float:
        return float(np.abs(np.diff(x, axis=1))[labels[:, 1:] == 5].mean())  # inside the ONL

    assert lateral_roughness(low) < 0.7 * lateral_roughness(image)
    assert lateral_roughness(speckled) > 1.3 * lateral_roughness(image)
    # the retina stays where it was: the brightest band (OS+RPE) has the same rows in every column
    rows = np.arange(image.shape[0])[:, None]
    band = labels == 7
    for shown in (low, speckled):
        weighted = (shown * band * rows).sum(0) / (shown * band).sum(0)
        reference = (image * band * rows).sum(0) / (image * band).sum(0)
        assert np.nanmax(np.abs(weighted - reference)) < 3


def test_random_styles_are_reproducible_from_the_seed_and_differ_between_draws():
    first = [random_style(np.random.default_rng(seed)) for seed in range(20)]
    again = [random_style(np.random.default_rng(seed)) for seed in range(20)]
    assert first == again and len(set(first)) == 20
    assert {style.display for style in first} == {"power", "log"}


def test_impossible_styles_and_inputs_are_refused():
    with pytest.raises(ValueError, match="display"):
        DeviceStyle(display="sigmoid")
    with pytest.raises(ValueError, match="resolution"):
        DeviceStyle(resolution=(1.5, 1.0))
    with pytest.raises(ValueError, match="2-D"):
        render_style(np.zeros((2, 8, 8)), DeviceStyle(), np.random.default_rng(0))
