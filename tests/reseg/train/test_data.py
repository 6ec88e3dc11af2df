"""Training crops: real and synthetic slices are shown in random device looks, their labels untouched."""

from __future__ import annotations

import numpy as np

from reseg.data.phantom import make_oct_phantom
from reseg.preprocessing.normalization import normalize_slices
from reseg.train.data import AugmentedCrops, RandDeviceStyle
from reseg.train.loop import DEFAULT_NORMALIZATION

SPEC = DEFAULT_NORMALIZATION["OCT"]


def test_the_device_look_restyles_the_whole_slice_and_normalises_it_again():
    phantom = make_oct_phantom(1, height=248, width=256, seed=5)
    image = normalize_slices(phantom.image, SPEC)
    look = RandDeviceStyle(prob=1.0, normalization=SPEC)
    look.set_random_state(seed=1)
    shown = [look({"image": image, "label": phantom.labels})["image"] for _ in range(4)]
    for styled in shown:
        assert styled.shape == image.shape and not np.allclose(styled, image)
        low, high = np.percentile(styled, [1, 99])
        assert abs(low) < 1e-4 and abs(high - 1) < 1e-4  # as the model's input always is
    assert not np.allclose(shown[0], shown[1])  # a new look for every access


def test_crops_with_device_looks_keep_labels_aligned_with_the_anatomy():
    phantom = make_oct_phantom(1, height=248, width=256, seed=6, fluid=False)
    image = normalize_slices(phantom.image, SPEC)[0]
    crops = AugmentedCrops(
        [image], [phantom.labels[0]], (128, 128), flip=True, appearance=True, seed=0, normalization=SPEC
    )
    for _ in range(6):
        crop, labels = crops[0]
        assert crop.shape == (1, 128, 128) and labels.shape == (128, 128)
        values = crop[0].numpy()
        choroid, vitreous = labels.numpy() == 8, labels.numpy() == 0
        if choroid.any() and vitreous.any():  # whatever the look, tissue stays brighter than the vitreous
            assert values[choroid].mean() > values[vitreous].mean()
