"""Saving a labels layer through the plugin writes it in register with the scan it was computed for."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import tifffile


def test_labels_saved_as_nifti_overlay_an_lps_source_exactly(viewer, widget, wait_for_run, tmp_path):
    affine = np.array([[-0.9, 0, 0, 100.0], [0, -0.9, 0, 80.0], [0, 0, 3.0, -50.0], [0, 0, 0, 1]])
    hu = np.full((40, 36, 4), -1000, np.int16)
    hu[5:30, 4:20, :] = 60  # an asymmetric block of soft tissue
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "lps.nii.gz")
    [image] = viewer.open(str(tmp_path / "lps.nii.gz"), plugin="napari-reseg")
    widget.image_combo.setCurrentText(image.name)
    widget.model_combo.setCurrentText("l2gnet-ct")
    widget.start()
    wait_for_run(widget)
    labels = viewer.layers[f"{image.name} labels"]
    labels.data[:] = 0
    labels.data[image.data > 0] = 5  # "liver" exactly where the tissue is, in the viewer's orientation

    [written] = labels.save(str(tmp_path / "organs.nii.gz"), plugin="napari-reseg")
    saved = nib.load(written)
    np.testing.assert_allclose(saved.affine, affine)
    np.testing.assert_array_equal(np.asarray(saved.dataobj) == 5, hu > 0)


def test_labels_of_a_plain_layer_saved_as_tiff_keep_scale(viewer, tmp_path):
    labels = viewer.add_labels(np.arange(24, dtype=np.uint8).reshape(2, 3, 4), scale=(2.0, 0.5, 0.25))
    [written] = labels.save(str(tmp_path / "labels.tif"), plugin="napari-reseg")
    np.testing.assert_array_equal(tifffile.imread(written), labels.data)
    from reseg.io import read_volume

    assert read_volume(written).spacing == (2.0, 0.5, 0.25)
