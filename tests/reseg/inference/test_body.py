"""CT: the body outline, and no organ outside it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from reseg.classes import CT_CLASSES
from reseg.cli import main
from reseg.data.ct_phantom import make_ct_phantom
from reseg.data.dataset import load_training_set, write_training_set
from reseg.evaluation.evaluate import misplaced_organs
from reseg.inference.body import MARGIN_PX, body_mask, confine_to_body
from reseg.io import read_volume


@pytest.fixture(scope="module")
def phantom():
    return make_ct_phantom(n_slices=6, size=96, seed=2)


def test_the_body_holds_every_organ_and_its_air_filled_holes_but_not_the_air_around_it(phantom):
    body = body_mask(phantom.image)
    assert body.shape == phantom.image.shape
    assert body[phantom.body].all()  # the phantom's true body is inside, and only the margin is added
    in_plane = np.zeros((3, 3, 3), dtype=bool)
    in_plane[1] = ndi.generate_binary_structure(2, 1)
    near = ndi.binary_dilation(phantom.body, in_plane, iterations=MARGIN_PX)
    assert not (body & ~near).any()
    assert not body[:, 0, 0].any() and not body[:, -1, -1].any()  # the corners are air
    inside_air = (phantom.image < -500) & body
    outside_air = (phantom.image < -500) & ~body
    assert outside_air.sum() > inside_air.sum()


def test_organs_outside_the_body_are_removed_and_those_inside_kept(phantom):
    labels = phantom.labels.copy()
    labels[:, :3, :3] = 5  # "liver" in the air of the corner
    confined = confine_to_body(labels, phantom.image)
    assert not confined[:, :3, :3].any()
    assert np.array_equal(confined[phantom.labels > 0], phantom.labels[phantom.labels > 0])


def test_the_check_counts_organs_outside_the_body_and_in_slices_that_hold_none(phantom, tmp_path):
    folder = write_training_set(tmp_path / "ct", [("p", phantom.image, phantom.labels, (3.0, 3.0, 3.0))], "CT", "t")
    scan = load_training_set([folder]).scans[0]
    names = [c.name for c in CT_CLASSES]
    predicted = phantom.labels.copy()
    predicted[0, :2, :2] = 1  # aorta outside the body: 4 px
    empty = int(np.flatnonzero(~np.any(phantom.labels == 2, axis=(1, 2)))[0])
    predicted[empty, 48, 48] = 2  # a gallbladder pixel in a slice without one
    report = misplaced_organs([scan], [predicted], names)
    assert report["aorta"]["pixels_outside_body"] == 4
    assert report["gallbladder"]["slices_predicted_without_it"] == 1
    assert report["liver"] == {
        "pixels_outside_body": 0,
        "slices_without_it": int((~np.any(phantom.labels == 5, axis=(1, 2))).sum()),
        "slices_predicted_without_it": 0,
    }


def test_on_real_ct_the_body_holds_all_labelled_organs_and_the_bundled_model_keeps_inside_it(shared_data, tmp_path):
    scan = shared_data("ct_totalseg", "example_ct_sm.nii.gz")
    volume = read_volume(scan)
    labels = read_volume(shared_data("ct_totalseg", "example_seg.nii.gz")).data
    body = body_mask(volume.data)
    assert body[labels > 0].mean() > 0.999  # TotalSegmentator's organs (all 41 classes) lie in the body
    assert 0.2 < body.mean() < 0.9
    output = tmp_path / "labels.nii.gz"
    assert main(["segment", str(scan), "-o", str(output), "--model", "l2gnet-ct"]) == 0
    predicted = read_volume(output).data
    assert predicted.any() and not predicted[~body].any()
