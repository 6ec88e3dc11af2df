"""`open_volume`: a scan whose slices are read from the file as inference reaches them, where its format allows.

`read_volume` holds a whole scan in memory, which a viewer needs; `reseg segment` only ever looks at a batch of
slices, so for a 3-D NIfTI file it gets a `NiftiSlices` instead: the same (Z, Y, X) slices in the engine's
orientation, read a few at a time (a gzip stream forward, as it is decompressed). Peak memory then follows
the batch, not the scan. Other formats, and NIfTI files stored across their slices, are read whole.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np

from reseg.io._common import canonical_orientation, check_array, extension, reading
from reseg.io._formats import (
    NIFTI_EXTENSIONS,
    check_nifti_size,
    gzip_errors,
    nifti_geometry,
    nifti_image,
    nifti_pixels,
    nifti_volume,
    read_nifti,
)
from reseg.io._read import read_volume
from reseg.io._volume import Volume, normalize_modality

if TYPE_CHECKING:
    from nibabel.arrayproxy import ArrayProxy

_VERIFY_BYTES = 1 << 20  # a gzip stream is checked to its end in pieces of this size


def open_volume(path: str | Path, modality: str | None = None) -> Volume:
    """`read_volume`, except that a 3-D NIfTI volume stored slice after slice keeps its pixels in the file:
    its `data` is a `NiftiSlices` that reads the slices asked for. Every check `read_volume` makes on the
    file (size budget, damaged gzip stream, pixel type, NaN) is made here, before the first slice is used."""
    source = Path(path)
    if not source.is_file() or extension(source) not in NIFTI_EXTENSIONS or source.stat().st_size == 0:
        return read_volume(source, modality)
    volume = _open_nifti(source)
    if modality is not None:
        volume.modality = normalize_modality(modality)
    return volume


class NiftiSlices:
    """The (Z, Y, X) slices of a 3-D NIfTI file as `read_volume` would turn them, read on indexing.

    Stands in for the array where only slices are taken (`stack[i]`, `stack[[i, j]]`, `stack[a:b]`); the last
    slices read are kept, since inference asks for a batch twice (the network, then the post-processing).
    `np.asarray` reads them all."""

    ndim = 3

    def __init__(self, source: Path, proxy: ArrayProxy, ornt: np.ndarray | None, dtype: np.dtype) -> None:
        self.source, self._proxy, self.dtype = source, proxy, np.dtype(dtype)
        x, y, z = proxy.shape[:3]
        self._flip_z = ornt is not None and ornt[2, 1] < 0
        # the in-plane turn of a slice: the orientation with the slice axis left as it is
        self._plane = None if ornt is None else np.array([ornt[0], ornt[1], [2, 1]])
        in_plane = (x, y) if ornt is None or ornt[0, 0] == 0 else (y, x)
        self.shape = (z, in_plane[1], in_plane[0])
        self._last: tuple[tuple[int, ...], np.ndarray] | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int | slice | Sequence[int] | np.ndarray) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read((int(index),))[0]
        if isinstance(index, slice):
            return self._read(tuple(range(*index.indices(len(self)))))
        return self._read(tuple(int(i) for i in np.asarray(index).ravel()))

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def _read(self, indices: tuple[int, ...]) -> np.ndarray:
        if self._last is not None and self._last[0] == indices:
            return self._last[1]
        count = len(self)
        for index in indices:
            if not -count <= index < count:
                raise IndexError(f"slice {index} of {self.source}, which has {count}")
        slices = np.empty((len(indices), *self.shape[1:]), self.dtype)
        with reading(self.source, "NIfTI"):
            for position, index in enumerate(indices):
                slices[position] = self._slice(index % count)
        self._last = (indices, slices)
        return slices

    def _slice(self, z: int) -> np.ndarray:
        from nibabel.orientations import apply_orientation

        on_disk = len(self) - 1 - z if self._flip_z else z
        plane = nifti_pixels(np.asanyarray(self._proxy[:, :, on_disk]), self._proxy.dtype)
        if self._plane is not None:
            plane = apply_orientation(plane[:, :, None], self._plane)[:, :, 0]
        return plane.T


def _open_nifti(source: Path) -> Volume:
    import nibabel as nib

    with reading(source, "NIfTI"):
        check_nifti_size(source)
        compressed = extension(source) == ".nii.gz"
        if compressed:
            _verify_gzip(source)
        image = nifti_image(source, nib.load(source, mmap=False, keep_file_open=True))
    shape = image.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3 or 0 in shape:
        return read_nifti(source)  # a 2-D image, or one read_volume refuses with its reason
    metadata, zooms = nifti_geometry(source, image, 3)
    zooms, orientation = canonical_orientation(image.affine, zooms)
    ornt = orientation.get("to_canonical")
    if ornt is not None and (ornt[2, 0] != 2 or (compressed and ornt[2, 1] < 0)):
        return read_nifti(source)  # slices across the file, or a gzip stream read backwards: read it whole
    proxy = cast("ArrayProxy", image.dataobj)
    if len(proxy.shape) > 3:
        proxy = cast("ArrayProxy", proxy.reshape(shape))
    with reading(source, "NIfTI"):
        first = nifti_pixels(np.asanyarray(proxy[:, :, 0]), proxy.dtype)
    slices = NiftiSlices(source, proxy, ornt, first.dtype)
    minimum = _checked_minimum(source, slices)
    metadata.update(orientation)
    return nifti_volume(source, image, cast(np.ndarray, slices), zooms, metadata, minimum)


def _verify_gzip(source: Path) -> None:
    """Decompress the stream once to its end (CRC and length), in pieces: nibabel reads only what it needs."""
    with gzip_errors(source), gzip.open(source) as stream:
        while stream.read(_VERIFY_BYTES):
            pass


def _checked_minimum(source: Path, slices: NiftiSlices) -> float:
    """Check every slice as `read_volume` checks a whole array (pixel type, NaN), returning the least value."""
    minimum = np.inf
    for z in range(len(slices)):
        checked = check_array(source, slices[z], "YX")
        minimum = min(minimum, float(checked.min()))
    return minimum
