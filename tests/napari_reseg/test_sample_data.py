"""File > Open Sample > napari-reseg: generated scans with their true labels, in physical units."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.classes import CT_CLASSES, OCT_CLASSES


@pytest.mark.parametrize(
    ("key", "image_name", "classes", "modality"),
    [("oct-phantom", "OCT phantom", OCT_CLASSES, "OCT"), ("ct-phantom", "CT phantom", CT_CLASSES, "CT")],
)
def test_sample_opens_as_image_and_true_labels(viewer, key, image_name, classes, modality):
    viewer.open_sample("napari-reseg", key)
    image, labels = viewer.layers[image_name], viewer.layers[f"{image_name} true labels"]
    assert image.ndim == 3 and labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    assert all(scale < 5 for scale in image.scale)  # millimetres, not pixels
    assert list(labels.features["class"]) == [c.name for c in classes]
    assert set(np.unique(labels.data)) == set(range(len(classes)))
    assert image.metadata["reseg"]["modality"] == modality
