"""`open_volume`: a NIfTI scan's slices read from the file as they are needed, the same as `read_volume` gives."""

from __future__ import annotations

import gzip
import itertools
import tracemalloc

import nibabel as nib
import numpy as np
import pytest

from reseg.errors import InputError
from reseg.io import open_volume, read_volume
from reseg.io._lazy import NiftiSlices


def _affine(permutation: tuple[int, ...], flips: tuple[int, ...]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = 0
    for disk_axis, (world_axis, flip) in enumerate(zip(permutation, flips, strict=True)):
        affine[world_axis, disk_axis] = flip * (0.7 + disk_axis)
    return affine


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_every_orientation_gives_the_slices_read_volume_gives(tmp_path, suffix):
    """LPS, RAS, sagittal, flipped: the engine sees one orientation whichever way the file lies, lazily or not."""
    hu = np.random.default_rng(0).integers(-1000, 400, (7, 5, 6)).astype(np.int16)
    lazy = 0
    for index, (permutation, flips) in enumerate(
        itertools.product(itertools.permutations(range(3)), itertools.product((1, -1), repeat=3))
    ):
        path = tmp_path / f"ct{index}{suffix}"
        nib.save(nib.Nifti1Image(hu, _affine(permutation, flips)), path)
        whole, opened = read_volume(path), open_volume(path)
        assert opened.data.shape == whole.data.shape, (permutation, flips)
        np.testing.assert_array_equal(opened.data[[4, 0]], whole.data[[4, 0]])
        np.testing.assert_array_equal(np.asarray(opened.data), whole.data)
        assert (opened.spacing, opened.modality, opened.metadata.keys()) == (
            whole.spacing,
            whole.modality,
            whole.metadata.keys(),
        )
        lazy += isinstance(opened.data, NiftiSlices)
    # axial files (slices along the file's last axis) stay in the file; a gzip stream read backwards does not
    assert lazy == (8 if suffix == ".nii.gz" else 16)


def test_the_real_ct_scan_opens_as_it_reads(shared_data):
    path = shared_data("ct_totalseg", "example_ct_sm.nii.gz")
    whole, opened = read_volume(path), open_volume(path)
    assert isinstance(opened.data, NiftiSlices) and opened.modality == "CT" == whole.modality
    np.testing.assert_array_equal(np.asarray(opened.data), whole.data)
    np.testing.assert_allclose(opened.affine, whole.affine)


def test_reading_batch_by_batch_holds_a_batch_not_the_scan(tmp_path):
    """What `reseg segment` relies on for a 300-slice CT: memory follows the batch it reads."""
    hu = np.random.default_rng(1).integers(-1000, 400, (256, 256, 40)).astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([0.8, 0.8, 2.0, 1.0])), path)
    tracemalloc.start()
    try:
        slices = open_volume(path).data
        for start in range(0, len(slices), 4):
            assert slices[list(range(start, start + 4))].shape == (4, 256, 256)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < hu.nbytes / 4, f"peak {peak / 2**20:.1f} MiB for a {hu.nbytes / 2**20:.1f} MiB scan"


def test_a_damaged_file_is_refused_when_opened_as_read_volume_refuses_it(tmp_path):
    hu = np.random.default_rng(2).integers(-1000, 400, (32, 32, 8)).astype(np.int16)
    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.eye(4)), good)
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(good.read_bytes()[:-2000])
    with pytest.raises(InputError, match=r"cut\.nii\.gz: is a damaged gzip stream"):
        open_volume(cut)
    nan = tmp_path / "nan.nii"
    values = hu.astype(np.float32)
    values[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(values, np.eye(4)), nan)
    with pytest.raises(InputError, match=r"nan\.nii: contains 1 NaN"):
        open_volume(nan)
    with gzip.open(tmp_path / "empty.nii.gz", "wb"):
        pass
    with pytest.raises(InputError, match=r"empty\.nii\.gz"):
        open_volume(tmp_path / "empty.nii.gz")
