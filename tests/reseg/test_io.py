"""File IO: geometry survives a round trip, bad input is an InputError naming the file, writes are atomic."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from reseg.errors import InputError
from reseg.io import Volume, is_supported, read_volume, write_image, write_labels



@pytest.fixture
def ct_small(shared_data) -> Path:
    return shared_data("ct_totalseg", "example_ct_sm.nii.gz")


@pytest.fixture
def duke_bscan(shared_data) -> Path:
    return shared_data("duke_dme", "images", "subject01_bscan01.png")

RNG = np.random.default_rng(0)


def _grey(shape: tuple[int, ...], dtype=np.uint8) -> np.ndarray:
    return RNG.integers(0, 200, size=shape).astype(dtype)


def _labels_like(volume: Volume) -> np.ndarray:
    return RNG.integers(0, 10, size=volume.data.shape).astype(np.uint8)


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".tmp." in p.name]


def _assert_input_error(path: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as caught:
        read_volume(path)
    assert path.name in str(caught.value)


# --- round trips -----------------------------------------------------------------------------------------


def test_png_reads_as_one_slice_and_labels_are_written_back_2d(tmp_path: Path) -> None:
    image = _grey((40, 56))
    volume = read_volume(_png(tmp_path / "bscan.png", image))
    assert volume.data.shape == (1, 40, 56) and volume.data.dtype == np.uint8
    assert volume.ndim_on_disk == 2 and volume.modality == "unknown" and volume.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(volume.data[0], image)

    labels = _labels_like(volume)
    out = write_labels(tmp_path / "bscan_labels.tif", labels, volume)
    written = tifffile.imread(out)
    assert written.shape == (40, 56) and written.dtype == np.uint8
    np.testing.assert_array_equal(written, labels[0])
    assert read_volume(out).data.shape == (1, 40, 56)


def test_16bit_png_keeps_dtype(tmp_path: Path) -> None:
    image = _grey((8, 9), np.uint16) * 300
    volume = read_volume(_png(tmp_path / "deep.png", image))
    assert volume.data.dtype == np.uint16
    np.testing.assert_array_equal(volume.data[0], image)


def test_tiff_stack_spacing_survives_labels_round_trip(tmp_path: Path) -> None:
    stack = _grey((5, 20, 30), np.uint16)
    source = tmp_path / "oct.tif"
    tifffile.imwrite(source, stack, imagej=True, resolution=(1 / 0.0113, 1 / 0.00387),
                     metadata={"axes": "ZYX", "spacing": 0.12, "unit": "micron"})
    volume = read_volume(source, modality="oct")
    assert volume.modality == "OCT" and volume.ndim_on_disk == 3 and volume.data.dtype == np.uint16
    np.testing.assert_array_equal(volume.data, stack)
    assert volume.spacing == pytest.approx((0.12e-3, 0.00387e-3, 0.0113e-3))
    assert volume.metadata["spacing_known"] == (True, True, True)

    labels = _labels_like(volume)
    back = read_volume(write_labels(tmp_path / "oct_labels.tif", labels, volume))
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == pytest.approx(volume.spacing, rel=1e-6)


def test_resolution_tags_in_centimetres_give_spacing(tmp_path: Path) -> None:
    source = tmp_path / "tags.tif"
    tifffile.imwrite(source, _grey((6, 7)), resolution=(100.0, 50.0), resolutionunit="CENTIMETER")
    volume = read_volume(source)
    assert volume.spacing == pytest.approx((1.0, 0.2, 0.1))
    assert volume.metadata["spacing_known"] == (False, True, True)


def test_screen_dpi_is_not_taken_as_a_pixel_size(tmp_path: Path) -> None:
    source = tmp_path / "screenshot.tif"
    tifffile.imwrite(source, _grey((6, 7)), resolution=(72.0, 72.0), resolutionunit="INCH")
    assert read_volume(source).spacing == (1.0, 1.0, 1.0)


def test_write_image_keeps_dtype_and_spacing_for_types_imagej_cannot_hold(tmp_path: Path) -> None:
    volume = Volume(RNG.normal(size=(3, 5, 6)), spacing=(2.0, 0.5, 0.25), source=tmp_path / "x")
    back = read_volume(write_image(tmp_path / "float64.tiff", volume))
    assert back.data.dtype == np.float64
    np.testing.assert_array_equal(back.data, volume.data)
    assert back.spacing == pytest.approx((2.0, 0.5, 0.25))


def _nifti(path: Path, xyz: np.ndarray, affine: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(xyz, affine), path)
    return path


def test_nifti_orientation_and_affine_survive_write_labels(tmp_path: Path) -> None:
    affine = np.array([[-0.8, 0.0, 0.1, 12.5], [0.0, 0.7, 0.0, -30.25], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1]])
    xyz = RNG.integers(-1024, 1500, size=(12, 10, 4)).astype(np.int16)
    source = _nifti(tmp_path / "ct.nii.gz", xyz, affine)
    on_disk = nib.load(source)
    volume = read_volume(source)
    assert volume.data.shape == (4, 10, 12) and volume.data.dtype == np.int16 and volume.modality == "CT"
    np.testing.assert_array_equal(volume.data, xyz.transpose(2, 1, 0))
    np.testing.assert_array_equal(volume.affine, on_disk.affine)
    assert volume.spacing == pytest.approx(tuple(on_disk.header.get_zooms()[::-1]))

    labels = np.zeros(volume.data.shape, np.uint8)
    labels[1, 2, 3] = 7  # slice z=1, row y=2, column x=3
    out = write_labels(tmp_path / "ct_labels.nii.gz", labels, volume)
    written = nib.load(out)
    assert written.shape == xyz.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, on_disk.affine)
    assert np.asanyarray(written.dataobj)[3, 2, 1] == 7 and np.asanyarray(written.dataobj).sum() == 7
    assert written.header.get_zooms() == on_disk.header.get_zooms()


def test_nifti_without_affine_is_written_from_spacing(tmp_path: Path) -> None:
    volume = Volume(_grey((3, 4, 5)), spacing=(3.0, 0.5, 0.25), source=tmp_path / "stack.tif")
    out = write_labels(tmp_path / "labels.nii", np.ones((3, 4, 5), np.uint8), volume)
    written = nib.load(out)
    assert written.shape == (5, 4, 3)
    np.testing.assert_allclose(written.header.get_zooms(), (0.25, 0.5, 3.0))
    assert read_volume(out).spacing == pytest.approx((3.0, 0.5, 0.25))


def test_folder_of_pngs_is_sorted_naturally(tmp_path: Path) -> None:
    slices = {index: np.full((6, 8), index, np.uint8) for index in (1, 2, 10)}
    for index, image in slices.items():
        _png(tmp_path / f"slice{index}.png", image)
    (tmp_path / "notes.txt").write_text("not an image")
    volume = read_volume(tmp_path)
    assert volume.data.shape == (3, 6, 8) and volume.ndim_on_disk == 3 and volume.source == tmp_path
    assert [int(volume.data[z, 0, 0]) for z in range(3)] == [1, 2, 10]
    assert volume.metadata["slice_files"] == ["slice1.png", "slice2.png", "slice10.png"]


def test_grey_stored_as_rgb_or_rgba_is_accepted(tmp_path: Path) -> None:
    grey = _grey((10, 12))
    rgb = _png(tmp_path / "grey_rgb.png", np.stack([grey] * 3, axis=-1))
    rgba = _png(tmp_path / "grey_rgba.png", np.dstack([grey, grey, grey, np.full_like(grey, 255)]))
    for path in (rgb, rgba):
        volume = read_volume(path)
        assert volume.data.shape == (1, 10, 12)
        np.testing.assert_array_equal(volume.data[0], grey)


def test_is_supported_checks_extension_and_folder_without_reading(tmp_path: Path) -> None:
    assert is_supported(tmp_path / "scan.TIF") and is_supported(tmp_path / "ct.nii.gz")
    assert not is_supported(tmp_path / "scan.vol") and not is_supported(tmp_path)
    _png(tmp_path / "s1.png", _grey((2, 2)))
    assert is_supported(tmp_path)


# --- bad input -----------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    _assert_input_error(tmp_path / "absent.tif", "no such file")


@pytest.mark.parametrize("name", ["broken.png", "broken.tif", "broken.nii.gz", "broken.nii"])
def test_corrupt_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x89this is not an image at all" * 20)
    _assert_input_error(path, "cannot be read")


def test_truncated_png(tmp_path: Path) -> None:
    path = _png(tmp_path / "cut.png", _grey((64, 64)))
    path.write_bytes(path.read_bytes()[:100])
    _assert_input_error(path, "cannot be read")


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.touch()
    _assert_input_error(path, "empty")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "scan.xyz"
    path.write_bytes(b"data")
    _assert_input_error(path, "unsupported file type")


def test_empty_folder(tmp_path: Path) -> None:
    folder = tmp_path / "no_slices"
    folder.mkdir()
    (folder / "readme.txt").write_text("nothing")
    _assert_input_error(folder, "no PNG or TIFF slices")


def test_folder_with_mismatched_slice_shapes_names_the_odd_slice(tmp_path: Path) -> None:
    _png(tmp_path / "s1.png", _grey((6, 8)))
    _png(tmp_path / "s2.png", _grey((6, 8)))
    odd = _png(tmp_path / "s3.png", _grey((7, 8)))
    with pytest.raises(InputError, match="must match") as caught:
        read_volume(tmp_path)
    assert odd.name in str(caught.value) and "s1.png" in str(caught.value)


def test_true_colour_rgb_is_rejected(tmp_path: Path) -> None:
    _assert_input_error(_png(tmp_path / "fundus.png", _grey((10, 12, 3))), "colour")
    tiff = tmp_path / "fundus.tif"
    tifffile.imwrite(tiff, _grey((10, 12, 3)), photometric="rgb")
    _assert_input_error(tiff, "colour")


def test_nan_in_float_tiff_is_rejected(tmp_path: Path) -> None:
    image = RNG.random((5, 6)).astype(np.float32)
    image[2, 3] = np.nan
    image[0, 0] = np.inf
    path = tmp_path / "nan.tif"
    tifffile.imwrite(path, image)
    _assert_input_error(path, "1 NaN and 1 infinite")


def test_4d_tiff_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "hyper.tif"
    tifffile.imwrite(path, _grey((2, 3, 8, 8)), photometric="minisblack")
    _assert_input_error(path, "is 4-D")


def test_4d_nifti_is_rejected(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "timeseries.nii.gz", _grey((4, 4, 3, 2)), np.eye(4))
    _assert_input_error(path, "is 4-D")


def test_nifti_with_trailing_singleton_is_3d(tmp_path: Path) -> None:
    path = _nifti(tmp_path / "singleton.nii.gz", _grey((4, 5, 3, 1)), np.eye(4))
    assert read_volume(path).data.shape == (3, 5, 4)


def test_write_labels_shape_mismatch_names_both_shapes(tmp_path: Path) -> None:
    volume = Volume(_grey((2, 4, 5)), source=tmp_path / "v.tif")
    with pytest.raises(ValueError, match=r"\(2, 4, 6\).*\(2, 4, 5\)"):
        write_labels(tmp_path / "l.tif", np.zeros((2, 4, 6), np.uint8), volume)


def test_unsupported_output_extension(tmp_path: Path) -> None:
    volume = Volume(_grey((1, 4, 5)), source=tmp_path / "v.tif")
    with pytest.raises(InputError, match="labels.png"):
        write_labels(tmp_path / "labels.png", np.zeros((1, 4, 5), np.uint8), volume)


# --- atomic writes ---------------------------------------------------------------------------------------


def _fail_midway(*args, **kwargs) -> None:
    """Stands in for tifffile.imwrite(path, ...) and nib.save(image, path): starts the file, then fails."""
    path = next(arg for arg in args if isinstance(arg, (str, Path)))
    Path(path).write_bytes(b"half a file")
    raise OSError("disk full")


@pytest.mark.parametrize("name", ["labels.tif", "labels.nii.gz"])
def test_failed_write_leaves_no_target_and_no_temporary(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.setattr(tifffile, "imwrite", _fail_midway)
    monkeypatch.setattr(nib, "save", _fail_midway)
    volume = Volume(_grey((2, 4, 5)), source=tmp_path / "v.tif")
    with pytest.raises(OSError, match="disk full"):
        write_labels(tmp_path / name, np.zeros((2, 4, 5), np.uint8), volume)
    assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    volume = Volume(_grey((2, 4, 5)), source=tmp_path / "v.tif")
    target = write_labels(tmp_path / "labels.tif", np.ones((2, 4, 5), np.uint8), volume)
    monkeypatch.setattr(tifffile, "imwrite", _fail_midway)
    with pytest.raises(OSError):
        write_labels(target, np.zeros((2, 4, 5), np.uint8), volume)
    monkeypatch.undo()
    np.testing.assert_array_equal(tifffile.imread(target), np.ones((2, 4, 5), np.uint8))
    assert _no_temporaries(tmp_path)


# --- real data -------------------------------------------------------------------------------------------


def test_real_ct_geometry(ct_small: Path) -> None:
    volume = read_volume(ct_small)
    assert volume.data.shape == (30, 101, 122) and volume.data.dtype == np.int16
    assert volume.spacing == pytest.approx((3.0, 3.0, 3.0)) and volume.modality == "CT"
    np.testing.assert_array_equal(volume.affine, nib.load(ct_small).affine)


def test_real_ct_labels_round_trip(tmp_path: Path, ct_small: Path) -> None:
    volume = read_volume(ct_small)
    labels = (volume.data > 0).astype(np.uint8)
    written = nib.load(write_labels(tmp_path / "body.nii.gz", labels, volume))
    original = nib.load(ct_small)
    np.testing.assert_array_equal(written.affine, original.affine)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), (np.asanyarray(original.dataobj) > 0))
    back = read_volume(tmp_path / "body.nii.gz")
    np.testing.assert_array_equal(back.data, labels)
    assert back.spacing == volume.spacing


def test_real_oct_bscan_png(tmp_path: Path, duke_bscan: Path) -> None:
    volume = read_volume(duke_bscan, modality="OCT")
    assert volume.data.shape == (1, 496, 768) and volume.data.dtype == np.uint8 and volume.ndim_on_disk == 2
    out = write_labels(tmp_path / "bscan_labels.tif", np.zeros(volume.data.shape, np.uint8), volume)
    assert tifffile.imread(out).shape == (496, 768)
