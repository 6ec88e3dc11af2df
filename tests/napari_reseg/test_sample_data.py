"""File > Open Sample > napari-reseg: generated scans with their true labels, in physical units."""

from __future__ import annotations

import numpy as np
import pytest

from reseg.classes import CT_CLASSES, OCT_CLASSES


@pytest.mark.parametrize(
    ("key", "image_name", "classes", "modality"),
    [("oct-phantom", "OCT phantom", OCT_CLASSES, "OCT"), ("ct-phantom", "CT phantom", CT_CLASSES, "CT")],
)
@pytest.mark.slow
def test_sample_opens_as_image_and_true_labels(viewer, key, image_name, classes, modality):
    viewer.open_sample("napari-reseg", key)
    image, labels = viewer.layers[image_name], viewer.layers[f"{image_name} true labels"]
    assert image.ndim == 3 and labels.data.shape == image.data.shape
    np.testing.assert_allclose(labels.scale, image.scale)
    np.testing.assert_allclose(labels.translate, image.translate)
    assert all(abs(scale) < 5 for scale in image.scale)  # millimetres, not pixels
    assert list(labels.features["class"]) == [c.name for c in classes]
    assert set(np.unique(labels.data)) == set(range(len(classes)))
    assert image.metadata["reseg"].modality == modality
    assert labels.metadata["reseg"].reference  # the truth to compare with: a run never overwrites it


@pytest.mark.slow
def test_segmenting_the_sample_keeps_its_true_labels(viewer, segment, click, wait_for):
    viewer.open_sample("napari-reseg", "oct-phantom")
    truth = viewer.layers["OCT phantom true labels"].data.copy()
    segment.scope_combo.setCurrentText("current slice")
    click(segment.run_button)
    wait_for(segment)
    assert "OCT phantom labels" in viewer.layers
    np.testing.assert_array_equal(viewer.layers["OCT phantom true labels"].data, truth)
