"""File > Open through the plugin: layers with physical scale, declines, and corrupt files named."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_reseg._reader import get_reader


def _open(viewer, path):
    return viewer.open(str(path), plugin="napari-reseg")


def test_tiff_stack_opens_with_its_spacing_as_scale(viewer, tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, resolution=(1 / 0.0113, 1 / 0.0039),
                     metadata={"spacing": 0.12, "unit": "mm", "axes": "ZYX"})
    [layer] = _open(viewer, tmp_path / "stack.tif")
    np.testing.assert_array_equal(layer.data, stack)
    np.testing.assert_allclose(layer.scale, (0.12, 0.0039, 0.0113), rtol=1e-3)
    assert layer.metadata["reseg"]["source"].endswith("stack.tif")


def test_nifti_opens_with_mm_scale(viewer, tmp_path):
    data = np.random.default_rng(1).integers(-1000, 400, (30, 20, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1])), tmp_path / "ct.nii.gz")
    [layer] = _open(viewer, tmp_path / "ct.nii.gz")
    assert layer.data.shape == (5, 20, 30)
    np.testing.assert_allclose(layer.scale, (2.5, 0.8, 0.8))
    assert layer.metadata["reseg"]["modality"] == "CT"


def test_png_bscan_and_folder_of_pngs(viewer, tmp_path):
    folder = tmp_path / "bscans"
    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((30, 40), index * 10, np.uint8)).save(folder / f"b{index}.png")
    [single] = _open(viewer, folder / "b1.png")
    assert single.data.shape == (30, 40)
    [stack] = _open(viewer, folder)
    assert stack.data.shape == (3, 30, 40) and stack.data[2, 0, 0] == 20


def test_unsupported_files_are_declined(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None


def test_corrupt_file_gives_a_notification_naming_it(viewer, tmp_path, monkeypatch):
    import napari_reseg._reader as module

    errors = []
    monkeypatch.setattr(module, "show_error", errors.append)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 definitely not a tiff")
    assert get_reader(str(tmp_path / "broken.tif")) is not None
    assert module.read_scan(str(tmp_path / "broken.tif")) == [(None,)]
    assert len(errors) == 1 and "broken.tif" in errors[0]
    assert _open(viewer, tmp_path / "broken.tif") == []
    assert len(viewer.layers) == 0


@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "example_ct_dicom"])
def test_real_ct_opens(viewer, shared_data, name):
    [layer] = _open(viewer, shared_data("ct_totalseg", name))
    assert layer.ndim == 3 and layer.metadata["reseg"]["modality"] == "CT"
    assert all(s > 0.5 for s in layer.scale)


@pytest.mark.parametrize("name", ["Willis_B_716_0.vol", "Willis_B_716_2.vol"])
def test_real_spectralis_vol_opens_with_oct_aspect(viewer, shared_data, name):
    [layer] = _open(viewer, shared_data("spectralis_vol", name))
    assert layer.data.shape[-2:] == (496, 768) and layer.metadata["reseg"]["modality"] == "OCT"
    axial, lateral = layer.scale[-2:]
    assert 0.003 < axial < 0.005 and 0.005 < lateral < 0.02


def test_real_duke_bscan_and_folder_open(viewer, shared_data):
    [bscan] = _open(viewer, shared_data("duke_dme", "images", "subject01_bscan05.png"))
    assert bscan.data.shape == (496, 768) and bscan.data.dtype == np.uint8
    [stack] = _open(viewer, shared_data("duke_dme", "images"))
    assert stack.data.shape == (88, 496, 768)
