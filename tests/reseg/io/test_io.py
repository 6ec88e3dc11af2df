"""File IO: geometry survives a round trip, bad input is an InputError naming the file, writes are atomic."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import tifffile
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from reseg.errors import InputError, OutputError
from reseg.io import Volume, is_supported, read_volume, write_image, write_labels


@pytest.fixture
def ct_small(shared_data) -> Path:
    return shared_data("ct_totalseg", "example_ct_sm.nii.gz")


@pytest.fixture
def duke_bscan(shared_data) -> Path:
    return shared_data("duke_dme", "images", "subject01_bscan01.png")


@pytest.fixture
def ct_dicom(shared_data) -> Path:
    return shared_data("ct_totalseg", "example_ct_dicom")


@pytest.fixture(params=["Willis_B_716_0.vol", "Willis_B_716_2.vol"])
def spectralis_vol(request, shared_data) -> Path:
    return shared_data("spectralis_vol", request.param)


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
    tifffile.imwrite(
        source,
        stack,
        imagej=True,
        resolution=(1 / 0.0113, 1 / 0.00387),
        metadata={"axes": "ZYX", "spacing": 0.12, "unit": "micron"},
    )
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
    # x runs right-to-left (LAS, slightly oblique): the engine sees it flipped to RAS, the file gets it back.
    affine = np.array([[-0.8, 0.0, 0.1, 12.5], [0.0, 0.7, 0.0, -30.25], [0.0, 0.0, 2.5, 7.0], [0, 0, 0, 1]])
    xyz = RNG.integers(-1024, 1500, size=(12, 10, 4)).astype(np.int16)
    source = _nifti(tmp_path / "ct.nii.gz", xyz, affine)
    on_disk = nib.load(source)
    volume = read_volume(source)
    assert volume.data.shape == (4, 10, 12) and volume.data.dtype == np.int16 and volume.modality == "CT"
    np.testing.assert_array_equal(volume.data, xyz[::-1].transpose(2, 1, 0))
    np.testing.assert_array_equal(volume.affine, on_disk.affine)
    assert volume.spacing == pytest.approx(tuple(on_disk.header.get_zooms()[::-1]))

    labels = np.zeros(volume.data.shape, np.uint8)
    labels[1, 2, 3] = 7  # slice z=1, row y=2, column x=3 of the RAS view: x = 11 - 3 on disk
    out = write_labels(tmp_path / "ct_labels.nii.gz", labels, volume)
    written = nib.load(out)
    assert written.shape == xyz.shape and written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(written.affine, on_disk.affine)
    assert np.asanyarray(written.dataobj)[8, 2, 1] == 7 and np.asanyarray(written.dataobj).sum() == 7
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
    assert is_supported(tmp_path / "scan.vol") and is_supported(tmp_path / "slice.DCM")
    assert not is_supported(tmp_path / "scan.xyz") and not is_supported(tmp_path)
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
    with pytest.raises(InputError, match=r"l\.tif: .*\(2, 4, 6\).*\(2, 4, 5\)"):
        write_labels(tmp_path / "l.tif", np.zeros((2, 4, 6), np.uint8), volume)


@pytest.mark.parametrize(
    "labels, problem",
    [(np.full((1, 4, 5), 0.5), "must be integers"), (np.full((1, 4, 5), 300, np.int16), "stores 0..255")],
)
def test_write_labels_refuses_what_a_label_map_cannot_hold(tmp_path: Path, labels, problem) -> None:
    volume = Volume(_grey((1, 4, 5)), source=tmp_path / "v.tif")
    with pytest.raises(InputError, match=problem):
        write_labels(tmp_path / "l.tif", labels, volume)
    assert not (tmp_path / "l.tif").exists()


def test_unsupported_output_extension(tmp_path: Path) -> None:
    volume = Volume(_grey((1, 4, 5)), source=tmp_path / "v.tif")
    with pytest.raises(InputError, match=r"labels\.png"):
        write_labels(tmp_path / "labels.png", np.zeros((1, 4, 5), np.uint8), volume)


# --- atomic writes ---------------------------------------------------------------------------------------


def _fail_midway(*args, **kwargs) -> None:
    """Stands in for tifffile.imwrite(path, ...) and nib.save(image, path): starts the file, then fails."""
    path = next(arg for arg in args if isinstance(arg, (str, Path)))
    Path(path).write_bytes(b"half a file")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("name", ["labels.tif", "labels.nii.gz"])
def test_failed_write_leaves_no_target_and_no_temporary(tmp_path: Path, monkeypatch, name: str) -> None:
    monkeypatch.setattr(tifffile, "imwrite", _fail_midway)
    monkeypatch.setattr(nib, "save", _fail_midway)
    volume = Volume(_grey((2, 4, 5)), source=tmp_path / "v.tif")
    with pytest.raises(OutputError, match=rf"{name}: cannot be written: no space left .*nothing was changed"):
        write_labels(tmp_path / name, np.zeros((2, 4, 5), np.uint8), volume)
    assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    volume = Volume(_grey((2, 4, 5)), source=tmp_path / "v.tif")
    target = write_labels(tmp_path / "labels.tif", np.ones((2, 4, 5), np.uint8), volume)
    monkeypatch.setattr(tifffile, "imwrite", _fail_midway)
    with pytest.raises(OutputError):
        write_labels(target, np.zeros((2, 4, 5), np.uint8), volume)
    monkeypatch.undo()
    np.testing.assert_array_equal(tifffile.imread(target), np.ones((2, 4, 5), np.uint8))
    assert _no_temporaries(tmp_path)


@pytest.mark.parametrize("name", ["labels.tif", "labels.nii.gz"])
@pytest.mark.parametrize("shape", [(1, 8, 9), (3, 8, 9)])
def test_label_maps_record_their_classes_modality_scan_and_shape(tmp_path: Path, name: str, shape) -> None:
    """A one-slice stack stays 3-D although a TIFF page cannot say so; a plain image stays an image."""
    from reseg.classes import OCT_CLASSES

    scan = tmp_path / "scan.vol"  # a one-B-scan .vol is a 3-D stack of one slice
    scan.write_bytes(b"a scan")
    volume = Volume(_grey(shape), (0.12, 0.004, 0.011), "OCT", scan, metadata={"spacing_known": (True, True, True)})
    labels = np.random.default_rng(1).integers(0, 10, shape).astype(np.uint8)
    back = read_volume(write_labels(tmp_path / name, labels, volume, classes=OCT_CLASSES))
    assert back.label_classes == OCT_CLASSES and back.modality == "OCT"
    assert back.metadata["labelled_scan"] == str(scan.resolve())
    assert back.ndim_on_disk == 3 and back.data.shape == shape
    np.testing.assert_array_equal(back.data, labels)
    np.testing.assert_allclose(back.spacing, volume.spacing, rtol=1e-5)
    assert read_volume(write_labels(tmp_path / f"plain-{name}", labels, volume)).label_classes is None


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


def test_real_dicom_series_lines_up_with_its_nifti_segmentation(tmp_path: Path, ct_dicom: Path) -> None:
    """The series and the TotalSegmentator labels made from it (a NIfTI stored LAS) must meet voxel for
    voxel: the liver label then covers homogeneous soft tissue, which any wrong flip of the CT breaks."""
    volume = read_volume(ct_dicom)
    assert volume.data.shape == (20, 512, 512) and volume.data.dtype == np.int16 and volume.modality == "CT"
    assert volume.spacing == pytest.approx((2.0, 0.9765625, 0.9765625)) and volume.ndim_on_disk == 3
    assert volume.metadata["spacing_known"] == (True, True, True)
    segmentation_file = ct_dicom.parent / "example_seg_dicom.nii.gz"
    segmentation = read_volume(segmentation_file)
    assert segmentation.data.shape == volume.data.shape and segmentation.spacing == pytest.approx(volume.spacing)

    liver = segmentation.data == 5  # TotalSegmentator "total" id 5
    assert _soft_tissue(volume.data[liver])  # mean 89 HU, sd 22
    for axis in range(3):  # flipped in z: mean 77, sd 96; in y: -75, 375; in x: 11, 185
        assert not _soft_tissue(np.flip(volume.data, axis)[liver]), axis

    one_file = read_volume(sorted(ct_dicom.iterdir())[7])
    np.testing.assert_array_equal(one_file.data, volume.data)

    written = nib.as_closest_canonical(nib.load(write_labels(tmp_path / "seg.nii.gz", segmentation.data, volume)))
    reference = nib.as_closest_canonical(nib.load(segmentation_file))
    np.testing.assert_allclose(written.affine, reference.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), np.asanyarray(reference.dataobj))


def _soft_tissue(hounsfield: np.ndarray) -> bool:
    return 0 < hounsfield.mean() < 200 and hounsfield.std() < 40


def test_real_spectralis_vol(spectralis_vol: Path) -> None:
    from eyepy.io.he import HeVolReader

    volume = read_volume(spectralis_vol)
    assert volume.data.shape == (1, 496, 768) and volume.data.dtype == np.uint8 and volume.modality == "OCT"
    assert volume.spacing[1:] == pytest.approx(
        (0.0039, 0.0118 if spectralis_vol.stem.endswith("0") else 0.0147), abs=1e-4
    )
    assert volume.metadata["spacing_known"] == (False, True, True)  # one B-scan: no distance between B-scans
    raw = HeVolReader(spectralis_vol).parsed_file.bscans[0].data
    np.testing.assert_array_equal(volume.data[0], np.rint(255 * raw**0.25).astype(np.uint8))

    boundaries = volume.metadata["boundaries"]
    assert {"ILM", "BM"} <= set(boundaries) and all(b.shape == (1, 768) for b in boundaries.values())
    ilm, bm = boundaries["ILM"][0], boundaries["BM"][0]
    both = np.isfinite(ilm) & np.isfinite(bm)
    assert both.mean() > 0.8 and np.all(ilm[both] < bm[both]) and np.nanmax(bm) < 496
    rows = np.arange(496)[:, None]
    retina = (rows > ilm) & (rows < bm) & both
    vitreous = (rows < ilm - 10) & both
    assert volume.data[0][retina].mean() > volume.data[0][vitreous].mean() + 20
    fundus = volume.metadata["fundus"]
    assert fundus.shape == (768, 768) and fundus.dtype == np.uint8


def test_spectralis_missing_samples_are_black(tmp_path: Path, shared_data) -> None:
    from eyepy.io.he import HeVolReader

    original = shared_data("spectralis_vol", "Willis_B_716_0.vol")
    header = HeVolReader(original).parsed_file
    # HSF-OCT-103: a 2048-byte file header, the SLO image, then each B-scan's header and its float32 samples.
    first_pixel = 2048 + header.size_x_slo * header.size_y_slo + header.bscan_hdr_size
    content = bytearray(original.read_bytes())
    marks = np.array([np.finfo(np.float32).max, np.nan, np.inf], np.float32).tobytes()
    content[first_pixel : first_pixel + len(marks)] = marks
    path = tmp_path / "missing.vol"
    path.write_bytes(bytes(content))
    volume = read_volume(path)
    assert volume.data[0, 0, :3].tolist() == [0, 0, 0] and volume.metadata["missing_pixels"] == 3
    np.testing.assert_array_equal(volume.data[0, 1:], read_volume(original).data[0, 1:])


@pytest.mark.parametrize("content", [b"not a vol file" * 100, b"HSF-OCT-103\x00" + b"\x07" * 3000])
def test_corrupt_vol(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "scan.vol"
    path.write_bytes(content)
    _assert_input_error(path, "Heidelberg")


# --- NIfTI orientation -------------------------------------------------------------------------------------


def test_lps_nifti_is_read_in_ras_and_labels_go_back_as_on_disk(tmp_path: Path) -> None:
    xyz = np.arange(4 * 3 * 5, dtype=np.int16).reshape(4, 3, 5)  # every voxel different: any flip shows
    source = _nifti(tmp_path / "lps.nii.gz", xyz, np.diag([-1.0, -1.0, 2.0, 1.0]))
    volume = read_volume(source)
    np.testing.assert_array_equal(volume.data, xyz[::-1, ::-1, :].T)
    assert volume.spacing == (2.0, 1.0, 1.0) and volume.metadata["orientation_on_disk"] == "LPS"

    back = nib.load(write_labels(tmp_path / "labels.nii.gz", volume.data.astype(np.uint8), volume))
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), xyz)
    np.testing.assert_array_equal(back.affine, nib.load(source).affine)


def test_permuted_nifti_spacing_follows_the_turn(tmp_path: Path) -> None:
    # Stored sagittal-first with different voxel sizes on every axis: axes swap places as well as flip.
    affine = np.array([[0.0, 0.0, -3.0, 5.0], [-1.0, 0.0, 0.0, 2.0], [0.0, 2.0, 0.0, -7.0], [0, 0, 0, 1]])
    xyz = RNG.integers(0, 1000, size=(6, 4, 5)).astype(np.uint16)
    source = _nifti(tmp_path / "turned.nii.gz", xyz, affine)
    volume = read_volume(source)
    canonical = nib.as_closest_canonical(nib.load(source))
    np.testing.assert_array_equal(volume.data, np.asanyarray(canonical.dataobj).T)
    assert volume.spacing == pytest.approx(canonical.header.get_zooms()[::-1]) == (2.0, 1.0, 3.0)

    image = write_image(tmp_path / "copy.nii.gz", volume)
    np.testing.assert_array_equal(np.asanyarray(nib.load(image).dataobj), xyz)
    tiff = read_volume(write_labels(tmp_path / "labels.tif", (volume.data > 500).astype(np.uint8), volume))
    np.testing.assert_array_equal(tiff.data, volume.data > 500)  # a TIFF keeps the engine's orientation


def test_nifti_with_degenerate_affine_is_read_as_stored(tmp_path: Path) -> None:
    header = nib.Nifti1Header()
    header.set_data_shape((3, 4, 5))
    header.set_zooms((1.0, 1.0, 2.0))
    header["sform_code"], header["srow_z"] = 1, [0, 0, 0, 0]  # a broken converter's sform: z maps nowhere
    header["srow_x"], header["srow_y"] = [1, 0, 0, 0], [0, 1, 0, 0]
    xyz = _grey((3, 4, 5))
    nib.save(nib.Nifti1Image(xyz, None, header=header), tmp_path / "flat.nii")
    volume = read_volume(tmp_path / "flat.nii")
    np.testing.assert_array_equal(volume.data, xyz.T)
    assert "to_canonical" not in volume.metadata


# --- DICOM ----------------------------------------------------------------------------------------------


AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _dicom(
    path: Path,
    pixels: np.ndarray,
    position: tuple[float, float, float],
    *,
    series: str = "1.2.826.0.1.1",
    modality: str = "CT",
    orientation: tuple[float, ...] = AXIAL,
    instance: int = 1,
    slope: float = 1.0,
    intercept: float = -1024.0,
    with_pixels: bool = True,
    photometric: str = "MONOCHROME2",
) -> Path:
    """A minimal single-frame DICOM file (PS3.10, explicit VR little endian) written with pydicom."""
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = CTImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
    dataset.Modality, dataset.SeriesInstanceUID, dataset.InstanceNumber = modality, series, instance
    dataset.ImagePositionPatient, dataset.ImageOrientationPatient = list(position), list(orientation)
    dataset.PixelSpacing, dataset.SliceThickness = [0.5, 0.8], 5.0  # rows 0.5 mm apart, columns 0.8 mm
    dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
    if with_pixels:
        dataset.set_pixel_data(pixels, photometric_interpretation=photometric, bits_stored=16)
    dataset.save_as(path, enforce_file_format=True)
    return path


def _slices(count: int = 4, shape: tuple[int, int] = (6, 7)) -> list[np.ndarray]:
    return [(np.arange(shape[0] * shape[1]).reshape(shape) * 3 + 100 * k).astype(np.uint16) for k in range(count)]


def _axial_series(folder: Path, z: list[float], **kwargs) -> list[np.ndarray]:
    """Slices at heights `z`, in files named and numbered against their order in space."""
    folder.mkdir(exist_ok=True)
    slices = _slices(len(z))
    for k, height in enumerate(z):
        _dicom(folder / f"IM{len(z) - k:04d}", slices[k], (-10.0, 20.0, height), instance=len(z) - k, **kwargs)
    return slices


def test_dicom_series_is_ordered_by_position_and_turned_to_ras(tmp_path: Path) -> None:
    slices = _axial_series(tmp_path / "series", [17.5, 10.0, 15.0, 12.5])
    volume = read_volume(tmp_path / "series")
    assert volume.data.shape == (4, 6, 7) and volume.data.dtype == np.int16 and volume.modality == "CT"
    expected = [slices[k].astype(np.int16)[::-1, ::-1] - 1024 for k in (1, 3, 2, 0)]  # LPS rows/columns to RAS
    np.testing.assert_array_equal(volume.data, np.stack(expected))
    assert volume.spacing == pytest.approx((2.5, 0.5, 0.8))  # from positions, not SliceThickness (5 mm)
    assert volume.metadata["orientation_on_disk"] == "LPS"
    ras = [[-0.8, 0, 0, 10.0], [0, -0.5, 0, -20.0], [0, 0, 2.5, 10.0], [0, 0, 0, 1]]  # x, y negated from LPS
    np.testing.assert_allclose(volume.affine, ras)

    assert is_supported(tmp_path / "series") and is_supported(tmp_path / "series" / "IM0001")
    one_file = read_volume(tmp_path / "series" / "IM0002")
    np.testing.assert_array_equal(one_file.data, volume.data)

    converted = read_volume(write_image(tmp_path / "series.nii.gz", volume))
    np.testing.assert_array_equal(converted.data, volume.data)
    np.testing.assert_allclose(converted.affine, volume.affine)


def test_sagittal_dicom_reaches_the_same_orientation_as_its_nifti(tmp_path: Path) -> None:
    folder = tmp_path / "sagittal"
    folder.mkdir()
    slices = _slices(3)
    for k, slices_k in enumerate(slices):  # rows run down (-z), columns run anterior (-y), slices along x
        _dicom(folder / f"s{k}.dcm", slices_k, (4.0 * k, 0.0, 50.0), orientation=(0, -1, 0, 0, 0, -1))
    volume = read_volume(folder)
    lps_to_nifti = nib.Nifti1Image(np.stack(slices).transpose(2, 1, 0).astype(np.int16) - 1024, volume.affine)
    canonical = nib.as_closest_canonical(lps_to_nifti)
    np.testing.assert_array_equal(volume.data, np.asanyarray(canonical.dataobj).T)
    assert volume.spacing == pytest.approx(canonical.header.get_zooms()[::-1])
    assert nib.aff2axcodes(volume.affine) == ("A", "I", "L")


def test_dicom_rescale_to_float_and_modality_from_the_tag(tmp_path: Path) -> None:
    slices = _axial_series(tmp_path / "ct", [0.0, 1.0], slope=0.5, intercept=-1000.0)
    volume = read_volume(tmp_path / "ct")
    assert volume.data.dtype == np.float32
    np.testing.assert_allclose(volume.data[0], slices[0][::-1, ::-1] * 0.5 - 1000)

    oct_slices = _axial_series(tmp_path / "oct", [0.0, 1.0], modality="OPT", intercept=0.0)
    oct_volume = read_volume(tmp_path / "oct")  # B-scans are kept as acquired, not turned
    assert oct_volume.modality == "OCT" and oct_volume.data.dtype == np.uint16
    np.testing.assert_array_equal(oct_volume.data, np.stack(oct_slices))
    assert read_volume(_dicom(tmp_path / "mr.dcm", _slices(1)[0], (0, 0, 0), modality="MR")).modality == "unknown"


def test_single_dicom_image_is_2d(tmp_path: Path) -> None:
    volume = read_volume(_dicom(tmp_path / "only.dcm", _slices(1)[0], (0, 0, 0), series="9.9"))
    assert volume.ndim_on_disk == 2 and volume.data.shape == (1, 6, 7)
    assert volume.metadata["spacing_known"] == (False, True, True)


def test_folder_with_two_dicom_series_names_both(tmp_path: Path) -> None:
    _axial_series(tmp_path, [0.0, 2.0], series="1.2.3.111")
    _dicom(tmp_path / "other", _slices(1)[0], (0, 0, 0), series="1.2.3.222")
    with pytest.raises(InputError, match="2 DICOM series") as caught:
        read_volume(tmp_path)
    assert str(tmp_path) in str(caught.value) and "1.2.3.111" in str(caught.value) and "1.2.3.222" in str(caught.value)
    assert read_volume(tmp_path / "IM0001").data.shape == (2, 6, 7)  # a file picks its own series


def test_dicom_file_without_pixel_data(tmp_path: Path) -> None:
    _assert_input_error(
        _dicom(tmp_path / "report.dcm", _slices(1)[0], (0, 0, 0), with_pixels=False), "without pixel data"
    )


def test_non_dicom_file_with_dicom_extension(tmp_path: Path) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"\x00" * 128 + b"NOPE" + b"\x01" * 200)
    _assert_input_error(path, "cannot be read as DICOM")
    plain = tmp_path / "IM0001"
    plain.write_bytes(b"\x00" * 300)
    assert not is_supported(plain)
    _assert_input_error(plain, "unsupported file type")


def test_dicom_series_with_a_missing_slice(tmp_path: Path) -> None:
    _axial_series(tmp_path, [0.0, 2.0, 4.0, 8.0, 10.0])
    with pytest.raises(InputError, match=r"not evenly spaced: IM0003 and IM0002 are 4 mm apart") as caught:
        read_volume(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_dicom_series_with_two_volumes(tmp_path: Path) -> None:
    _axial_series(tmp_path, [0.0, 2.0, 2.0])
    _assert_input_error(tmp_path, "same slice position")


def test_dicom_slices_of_different_sizes(tmp_path: Path) -> None:
    _dicom(tmp_path / "a.dcm", _slices(1, (6, 7))[0], (0, 0, 0))
    odd = _dicom(tmp_path / "b.dcm", _slices(1, (6, 8))[0], (0, 0, 1))
    with pytest.raises(InputError, match="must match") as caught:
        read_volume(tmp_path)
    assert odd.name in str(caught.value)


def test_multiframe_dicom_frames_are_slices(tmp_path: Path) -> None:
    """Enhanced files (OCT is stored so) keep geometry in per-frame functional groups, one file per volume."""
    frames = np.stack(_slices(3))
    path = _dicom(tmp_path / "enhanced.dcm", frames, (0, 0, 0), modality="OPT", intercept=0.0)
    dataset = pydicom.dcmread(path)
    dataset.NumberOfFrames = 3
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        del dataset[keyword]
    shared, measures, plane = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, plane.ImageOrientationPatient = [0.004, 0.012], list(AXIAL)
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = [measures], [plane]
    dataset.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for height in (0.24, 0.0, 0.12):  # stored out of spatial order
        item, position = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, height]
        item.PlanePositionSequence = [position]
        per_frame.append(item)
    dataset.PerFrameFunctionalGroupsSequence = per_frame
    dataset.save_as(path, enforce_file_format=True)

    volume = read_volume(path)
    assert volume.modality == "OCT" and volume.data.shape == (3, 6, 7)
    np.testing.assert_array_equal(volume.data, frames[[1, 2, 0]])
    assert volume.spacing == pytest.approx((0.12, 0.004, 0.012))


@pytest.mark.parametrize(("modality", "inverted"), [("OPT", True), ("CT", False)])
def test_monochrome1_is_inverted_except_for_ct(tmp_path: Path, modality: str, inverted: bool) -> None:
    pixels = _slices(1)[0]
    path = _dicom(
        tmp_path / "one.dcm", pixels, (0.0, 0.0, 0.0), modality=modality, photometric="MONOCHROME1", intercept=0.0
    )
    data = read_volume(path).data[0]
    np.testing.assert_array_equal(data, 65535 - pixels if inverted else pixels)


# --- TIFF samples, compression, damage and the size budget -----------------------------------------------


@pytest.mark.parametrize("count", [3, 4])
def test_tifffile_default_stacks_of_3_or_4_slices_are_stacks(tmp_path: Path, count: int) -> None:
    """tifffile stores such arrays as planar RGB(A); its shaped description says they are plain arrays."""
    stack = _grey((count, 12, 16))
    with pytest.warns(DeprecationWarning):
        tifffile.imwrite(tmp_path / "s.tif", stack)
    np.testing.assert_array_equal(read_volume(tmp_path / "s.tif").data, stack)


def test_colour_comes_from_the_photometric_tag_and_alpha_from_extrasamples(tmp_path: Path) -> None:
    grey = _grey((12, 16))
    tifffile.imwrite(
        tmp_path / "rgba.tif",
        np.dstack([grey, grey, grey, np.full_like(grey, 7)]),
        photometric="rgb",
        extrasamples=["unassalpha"],
    )
    np.testing.assert_array_equal(read_volume(tmp_path / "rgba.tif").data[0], grey)
    tifffile.imwrite(tmp_path / "rgb.tif", np.dstack([grey, grey + 1, grey]), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif: has 3 colour channels that differ"):
        read_volume(tmp_path / "rgb.tif")
    tifffile.imwrite(
        tmp_path / "planes.tif", np.dstack([grey, grey + 1]), photometric="minisblack", planarconfig="contig"
    )  # grey with an extra, unspecified sample: two grey planes
    assert read_volume(tmp_path / "planes.tif").data.shape == (2, 12, 16)


def test_min_is_white_reads_black_lowest(tmp_path: Path) -> None:
    grey = _grey((12, 16))
    tifffile.imwrite(tmp_path / "w.tif", 255 - grey, photometric="miniswhite")
    np.testing.assert_array_equal(read_volume(tmp_path / "w.tif").data[0], grey)


@pytest.mark.parametrize("compression", ["lzw", "zstd", "jpeg", "lzma"])
def test_every_tiff_compression_tifffile_decodes_is_read(tmp_path: Path, compression: str) -> None:
    stack = _grey((3, 16, 24))
    tifffile.imwrite(tmp_path / "c.tif", stack, compression=compression, photometric="minisblack")
    data = read_volume(tmp_path / "c.tif").data
    assert data.shape == stack.shape
    if compression != "jpeg":  # lossy
        np.testing.assert_array_equal(data, stack)


def test_a_tiff_cut_short_is_refused_not_padded(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", _grey((5, 32, 40)), compression="zlib", photometric="minisblack")
    raw = (tmp_path / "s.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(raw[: int(len(raw) * 0.6)])
    with pytest.raises(InputError, match=r"cut\.tif: (is damaged or cut short|cannot be read as a TIFF)"):
        read_volume(tmp_path / "cut.tif")


def test_flipped_bits_in_a_gzip_nifti_are_found(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(_grey((20, 24, 6), np.int16), np.eye(4)), tmp_path / "v.nii.gz")
    raw = bytearray((tmp_path / "v.nii.gz").read_bytes())
    raw[len(raw) * 2 // 3] ^= 0x10
    (tmp_path / "flipped.nii.gz").write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"flipped\.nii\.gz: (is a damaged gzip stream|cannot be read)"):
        read_volume(tmp_path / "flipped.nii.gz")


def test_an_image_beyond_the_size_budget_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    Image.fromarray(np.zeros((300, 400), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setenv("RESEG_MAX_SLICE_MEGAPIXELS", "0.1")
    with pytest.raises(
        InputError,
        match=r"big\.png: would decode to slices of 300 x 400 pixels .* set "
        "RESEG_MAX_SLICE_MEGAPIXELS",
    ):
        read_volume(tmp_path / "big.png")
    monkeypatch.setenv("RESEG_MAX_SLICE_MEGAPIXELS", "1")
    assert read_volume(tmp_path / "big.png").data.shape == (1, 300, 400)
    monkeypatch.setenv("RESEG_MAX_IMAGE_GB", "0.0001")
    with pytest.raises(InputError, match=r"big\.png: would decode to 0\.0 GiB .* RESEG_MAX_IMAGE_GB"):
        read_volume(tmp_path / "big.png")


def test_a_decoder_failure_names_the_library_and_a_bug_of_ours_stays_a_bug(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    _assert_input_error(path, "cannot be read as an image: PIL found it damaged")
    from reseg.io import _formats

    good = _png(tmp_path / "good.png", _grey((8, 8)))

    monkeypatch.setattr(_formats, "_PIL_BAND_BYTES", None)  # a bug in reseg's own reader code
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'get'"):
        read_volume(good)
