"""`write_labels` and `write_image`: results back to disk in register with their source, atomically."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile

from reseg.errors import InputError
from reseg.io._common import extension, from_canonical
from reseg.io._formats import NIFTI_EXTENSIONS, TIFF_EXTENSIONS
from reseg.io._volume import Volume

_WRITE_EXTENSIONS = TIFF_EXTENSIONS | NIFTI_EXTENSIONS
# Pixel types ImageJ opens; others are written as plain TIFF.
_IMAGEJ_DTYPES = "BHhf"


def write_labels(path: str | Path, labels: np.ndarray, like: Volume) -> Path:
    """Write labels in register with `like` (same orientation, spacing, affine, 2-D/3-D), atomically.

    `labels` is (Z, Y, X) with `like.data`'s shape and integer values 0..255, stored as uint8. A NIfTI file
    gets the source's on-disk orientation and affine back, so it overlays the source in any viewer; a TIFF,
    which has no orientation, keeps the engine's, so it lines up with `read_volume` of the source.
    """
    labels = np.asarray(labels)
    if labels.shape != like.data.shape:
        raise ValueError(
            f"labels shape {labels.shape} does not match the shape {like.data.shape} of {like.source}"
        )
    if labels.dtype.kind not in "biu":
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"labels must be in 0..255 to be stored as uint8, got {labels.min()}..{labels.max()}")
    return _write(Path(path), labels.astype(np.uint8, copy=False), like)


def write_image(path: str | Path, volume: Volume) -> Path:
    """Write a volume's intensities (dtype kept) with its geometry, atomically, e.g. to convert a format."""
    return _write(Path(path), volume.data, volume)


def _write(target: Path, data: np.ndarray, like: Volume) -> Path:
    suffix = extension(target)
    if suffix not in _WRITE_EXTENSIONS:
        raise InputError(target, f"cannot write '{target.suffix or target.name}' files; use .tif, .nii or .nii.gz")
    on_disk = data[0] if like.ndim_on_disk == 2 else data
    writer = _write_nifti if suffix in NIFTI_EXTENSIONS else _write_tiff
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, lambda temporary: writer(temporary, on_disk, like))
    return target


def replace_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside the target, then rename: readers never see a half-written target.

    The temporary name ends with the target's name so that libraries choose the same format.
    """
    temporary = target.with_name(f".{uuid.uuid4().hex[:12]}.tmp.{target.name}")
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _write_tiff(path: Path, data: np.ndarray, like: Volume) -> None:
    z, y, x = like.spacing
    metadata = {"axes": "ZYX"[-data.ndim:], "spacing": z, "unit": "mm"}
    if data.dtype.char in _IMAGEJ_DTYPES:
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / x, 1 / y), metadata=metadata)
    else:  # plain TIFF: x/y in standard resolution tags (pixels per cm), z in tifffile's JSON description
        tifffile.imwrite(path, data, photometric="minisblack", resolution=(10 / x, 10 / y),
                         resolutionunit="CENTIMETER", metadata=metadata)


def _write_nifti(path: Path, data: np.ndarray, like: Volume) -> None:
    if like.affine is not None:
        affine, unit = like.affine, like.metadata.get("nifti_unit", "mm")
    else:
        z, y, x = like.spacing
        affine, unit = np.diag([x, y, z, 1.0]), "mm"
    xyz = from_canonical(data.T, like.metadata)  # (Z, Y, X) -> (X, Y, Z), turned back as the source lies on disk
    image = nib.Nifti1Image(xyz, affine)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units(xyz=unit)
    image.set_sform(affine, code=like.metadata.get("nifti_sform_code", 2))
    image.set_qform(affine, code=like.metadata.get("nifti_qform_code", 2))
    nib.save(image, path)
