"""File > Open through the plugin: layers with physical scale, declines, and corrupt files named."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_reseg._reader import get_reader
from reseg.classes import OCT_CLASSES


def _open(viewer, path):
    return viewer.open(str(path), plugin="napari-reseg")


def test_tiff_stack_opens_with_its_spacing_as_scale(viewer, tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "stack.tif",
        stack,
        imagej=True,
        resolution=(1 / 0.0113, 1 / 0.0039),
        metadata={"spacing": 0.12, "unit": "mm", "axes": "ZYX"},
    )
    [layer] = _open(viewer, tmp_path / "stack.tif")
    np.testing.assert_array_equal(layer.data, stack)
    np.testing.assert_allclose(layer.scale, (0.12, 3 * 0.0039, 0.0113), rtol=1e-3)  # OCT-like: depth stretched
    assert [str(u) for u in layer.units] == ["millimeter"] * 3
    assert layer.metadata["reseg"].source.name == "stack.tif"


def test_nifti_opens_with_mm_scale(viewer, tmp_path):
    data = np.random.default_rng(1).integers(-1000, 400, (30, 20, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.diag([0.8, 0.8, 2.5, 1])), tmp_path / "ct.nii.gz")
    [layer] = _open(viewer, tmp_path / "ct.nii.gz")
    assert layer.data.shape == (5, 20, 30)
    np.testing.assert_allclose(np.abs(layer.scale), (2.5, 0.8, 0.8))
    assert layer.metadata["reseg"].modality == "CT"


@pytest.mark.smoke
def test_ct_is_shown_in_the_radiological_convention(viewer, tmp_path):
    """Seen from the feet: the patient's right on the screen's left, anterior at the top; the world
    coordinates are the patient's LPS millimetres (as DICOM viewers show them)."""
    hu = np.full((40, 30, 3), -1000, np.int16)  # RAS on disk: x to the patient's left.. right, y posterior.. anterior
    hu[30:, :, :] = 50  # tissue on the patient's right (large x)
    hu[:, 25:, :] += 100  # and at the front (large y)
    affine = np.diag([1.0, 1.0, 3.0, 1.0])
    affine[:3, 3] = (-20.0, -15.0, 7.0)
    nib.save(nib.Nifti1Image(hu, affine), tmp_path / "ras.nii.gz")
    [layer] = _open(viewer, tmp_path / "ras.nii.gz")
    viewer.reset_view()
    right = layer.data_to_world((0, 0, 35))  # a voxel on the patient's right
    left = layer.data_to_world((0, 0, 5))
    front, back = layer.data_to_world((0, 28, 0)), layer.data_to_world((0, 2, 0))
    assert right[2] < left[2]  # the screen's x grows to the right: the patient's right is on the left
    assert front[1] < back[1]  # the screen's y grows downwards: anterior is at the top
    x_ras, y_ras = -20.0 + 35, -15.0 + 28
    assert right[2] == pytest.approx(-x_ras) and front[1] == pytest.approx(-y_ras)  # LPS: L = -R, P = -A
    assert layer.data_to_world((2, 0, 0))[0] == pytest.approx(7.0 + 6.0)  # S


def test_oct_bscans_are_stretched_in_depth_as_the_preferences_say(viewer, tmp_path, reseg_settings):
    oct_stack = np.random.default_rng(2).integers(0, 255, (2, 49, 76), dtype=np.uint8)
    tifffile.imwrite(
        tmp_path / "oct.tif",
        oct_stack,
        imagej=True,
        resolution=(1 / 0.0113, 1 / 0.0039),
        metadata={"spacing": 0.12, "unit": "mm", "axes": "ZYX"},
    )
    from reseg.io import read_volume, write_labels

    write_labels(
        tmp_path / "oct-labels.tif",
        np.zeros((2, 49, 76), np.uint8),
        like=read_volume(tmp_path / "oct.tif", modality="OCT"),
        classes=OCT_CLASSES,
    )  # labels of an OCT scan: OCT display rules
    for aspect, stretch, axial in (
        ("stretched", 3.0, 3 * 0.0039),
        ("stretched", 5.0, 5 * 0.0039),
        ("physical", 5.0, 0.0039),
    ):
        reseg_settings.display.bscan_aspect, reseg_settings.display.axial_stretch = aspect, stretch
        [layer] = _open(viewer, tmp_path / "oct-labels.tif")
        assert layer.scale[1] == pytest.approx(axial, rel=1e-3) and layer.scale[2] == pytest.approx(0.0113, rel=1e-3)
        assert layer.metadata["reseg"].geometry.spacing[1] == pytest.approx(0.0039, rel=1e-3)  # the engine's truth


def test_png_without_spacing_is_in_pixels_not_millimetres(viewer, tmp_path):
    Image.fromarray(np.full((30, 40), 7, np.uint8)).save(tmp_path / "b.png")
    [layer] = _open(viewer, tmp_path / "b.png")
    assert tuple(layer.scale) == (1.0, 1.0) and [str(u) for u in layer.units] == ["pixel", "pixel"]


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


def test_other_tools_xml_and_analyze_img_are_left_to_other_readers(tmp_path):
    import nibabel as nib

    (tmp_path / "layout.xml").write_text('<?xml version="1.0"?><LinearLayout/>', encoding="utf-8")
    nib.save(nib.AnalyzeImage(np.zeros((8, 8, 4), np.int16), np.eye(4)), tmp_path / "brain.img")
    assert get_reader(str(tmp_path / "layout.xml")) is None
    assert get_reader(str(tmp_path / "brain.img")) is None


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
    assert layer.ndim == 3 and layer.metadata["reseg"].modality == "CT"
    assert all(abs(s) > 0.5 for s in layer.scale)
    assert layer.scale[1] < 0 and layer.scale[2] < 0  # radiological display (see the test above)


@pytest.mark.parametrize("name", ["Willis_B_716_0.vol", "Willis_B_716_2.vol"])
def test_real_spectralis_vol_opens_with_oct_aspect(viewer, shared_data, name):
    [layer] = _open(viewer, shared_data("spectralis_vol", name))
    assert layer.data.shape[-2:] == (496, 768) and layer.metadata["reseg"].modality == "OCT"
    axial, lateral = layer.metadata["reseg"].geometry.spacing[-2:]
    assert 0.003 < axial < 0.005 and 0.005 < lateral < 0.02
    assert layer.scale[-2] == pytest.approx(3 * axial)  # shown stretched in depth by default


@pytest.mark.parametrize(("name", "shape"), [("e2e_minimized.E2E", (496, 512)), ("fda_minimized.fda", (650, 512))])
def test_real_vendor_oct_files_open_as_an_oct_image(viewer, shared_data, name, shape):
    [layer] = _open(viewer, shared_data("vendor_oct", name))
    assert layer.data.shape[-2:] == shape and layer.data.dtype == np.uint8
    assert layer.metadata["reseg"].modality == "OCT"
    assert layer.metadata["reseg"].source.name == name


def test_real_duke_bscan_and_folder_open(viewer, shared_data):
    [bscan] = _open(viewer, shared_data("duke_dme", "images", "subject01_bscan05.png"))
    assert bscan.data.shape == (496, 768) and bscan.data.dtype == np.uint8
    [stack] = _open(viewer, shared_data("duke_dme", "images"))
    assert stack.data.shape == (88, 496, 768)
