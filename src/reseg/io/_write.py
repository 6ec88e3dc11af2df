"""`write_labels` and `write_image`: results back to disk in register with their source, atomically."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import tifffile

from reseg.classes import SegmentationClass
from reseg.errors import InputError
from reseg.io import _label_maps
from reseg.io._atomic import replace_atomically
from reseg.io._common import extension, from_canonical
from reseg.io._formats import NIFTI_EXTENSIONS, TIFF_EXTENSIONS
from reseg.io._volume import Volume

_WRITE_EXTENSIONS = TIFF_EXTENSIONS | NIFTI_EXTENSIONS
# Pixel types ImageJ opens; others are written as plain TIFF.
_IMAGEJ_DTYPES = "BHhf"


def write_labels(
    path: str | Path, labels: np.ndarray, like: Volume, classes: Sequence[SegmentationClass] | None = None
) -> Path:
    """Write labels in register with `like` (same orientation, spacing, affine, 2-D/3-D), atomically.

    `labels` is (Z, Y, X) with `like.data`'s shape and integer values 0..255, stored as uint8. A NIfTI file
    gets the source's on-disk orientation and affine back, so it overlays the source in any viewer; a TIFF,
    which has no orientation, keeps the engine's, so it lines up with `read_volume` of the source. With
    `classes`, the file also records their names and colours, the modality and the scan (`like.source`), so
    that `read_volume` knows it for a label map (`Volume.label_classes`).
    """
    labels, target = np.asarray(labels), Path(path)
    if labels.shape != like.data.shape:
        raise InputError(
            target,
            f"cannot hold labels of shape {labels.shape}: they do not match the shape "
            f"{like.data.shape} of {like.source}",
        )
    if labels.dtype.kind not in "biu":
        raise InputError(target, f"cannot hold labels of type {labels.dtype}: labels must be integers")
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise InputError(target, f"cannot hold labels {labels.min()}..{labels.max()}: a label map stores 0..255")
    description = _label_maps.describe(classes, like.modality, like.source, like.ndim_on_disk) if classes else None
    return _write(target, labels.astype(np.uint8, copy=False), like, description)


def write_image(path: str | Path, volume: Volume) -> Path:
    """Write a volume's intensities (dtype kept) with its geometry, atomically, e.g. to convert a format."""
    return _write(Path(path), volume.data, volume)


def _write(
    target: Path, data: np.ndarray, like: Volume, description: _label_maps.LabelMapDescription | None = None
) -> Path:
    suffix = extension(target)
    if suffix not in _WRITE_EXTENSIONS:
        raise InputError(target, f"cannot write '{target.suffix or target.name}' files; use .tif, .nii or .nii.gz")
    on_disk = data[0] if like.ndim_on_disk == 2 else data
    writer = _write_nifti if suffix in NIFTI_EXTENSIONS else _write_tiff
    target.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(target, lambda temporary: writer(temporary, on_disk, like, description))
    return target


def _write_tiff(
    path: Path, data: np.ndarray, like: Volume, description: _label_maps.LabelMapDescription | None
) -> None:
    z, y, x = like.spacing
    metadata: dict = {"axes": "ZYX"[-data.ndim :], "spacing": z, "unit": "mm"}
    if description is not None:  # label maps are uint8: always the ImageJ branch, which keeps properties
        metadata["Properties"] = {_label_maps.TIFF_PROPERTY: description.to_json()}
    if data.dtype.char in _IMAGEJ_DTYPES:
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / x, 1 / y), metadata=metadata)
    else:  # plain TIFF: x/y in standard resolution tags (pixels per cm), z in tifffile's JSON description
        tifffile.imwrite(
            path,
            data,
            photometric="minisblack",
            resolution=(10 / x, 10 / y),
            resolutionunit="CENTIMETER",
            metadata=metadata,
        )


def _write_nifti(
    path: Path, data: np.ndarray, like: Volume, description: _label_maps.LabelMapDescription | None
) -> None:
    if like.affine is not None:
        affine, unit = like.affine, like.metadata.get("nifti_unit", "mm")
    else:
        z, y, x = like.spacing
        affine, unit = np.diag([x, y, z, 1.0]), "mm"
    xyz = from_canonical(data.T, like.metadata)  # (Z, Y, X) -> (X, Y, Z), turned back as the source lies on disk
    import nibabel as nib  # on use: importing it costs a third of a second

    image = nib.Nifti1Image(xyz, affine)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units(xyz=unit)
    image.set_sform(affine, code=like.metadata.get("nifti_sform_code", 2))
    image.set_qform(affine, code=like.metadata.get("nifti_qform_code", 2))
    if description is not None:
        image.header.set_intent("label", name="reseg")
        image.header.extensions.append(nib.nifti1.Nifti1Extension("comment", description.to_json().encode()))
    nib.save(image, path)
