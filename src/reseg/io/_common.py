"""Helpers every reader shares: library errors to InputError, array checks, orientation, optional imports."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np

from reseg.errors import InputError
from reseg.io._volume import Volume

# Intensities below this are only found in Hounsfield units (air is -1000 HU): the volume is CT.
HU_MIN = -500
# Millimetres per unit, for the unit names used by ImageJ, tifffile and NIfTI headers.
MM_PER_UNIT = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "cm": 10.0, "centimeter": 10.0, "m": 1000.0,
    "meter": 1000.0, "um": 1e-3, "µm": 1e-3, "micron": 1e-3, "micrometer": 1e-3, "nm": 1e-6,
    "inch": 25.4, "in": 25.4,
}


@contextmanager
def reading(source: Path, kind: str) -> Iterator[None]:
    """Turn whatever a file library raises on a bad file into an InputError naming the file.

    The libraries' own log warnings about the file are silenced meanwhile: the InputError says it once.
    """
    library_log = logging.getLogger("tifffile")
    level = library_log.level
    library_log.setLevel(logging.ERROR + 1)
    try:
        yield
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(source, "too large to load into memory") from exc
    except Exception as exc:
        raise InputError(source, f"cannot be read as {kind}: the file is corrupt or not {kind} ({exc})") from exc
    finally:
        library_log.setLevel(level)


def require(module: str, source: Path, kind: str) -> ModuleType:
    """Import a library only some formats need (pydicom, eyepy), or say which one to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise InputError(source, f"reading {kind} needs the '{package}' package: pip install {package}") from exc


def to_volume(source: Path, data: np.ndarray, spacing: Sequence[float], affine: np.ndarray | None,
              metadata: dict) -> Volume:
    """Wrap a checked (Y, X) or (Z, Y, X) array, guessing CT from Hounsfield-like values."""
    ndim = data.ndim
    data = data[np.newaxis] if ndim == 2 else data
    modality = "CT" if data.dtype.kind in "if" and data.min() < HU_MIN else "unknown"
    return Volume(data, tuple(spacing), modality, source, affine, ndim, metadata)


def check_array(source: Path, data: np.ndarray, axes: str) -> np.ndarray:
    """Reject what cannot be segmented (empty, colour, wrong dimensionality, NaN/Inf); collapse grey channels."""
    if data.size == 0:
        raise InputError(source, f"contains no pixels (shape {data.shape})")
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype.kind not in "iuf":
        raise InputError(source, f"unsupported pixel type {data.dtype}; expected grey integers or floats")
    for channel_axis in "SC":  # tifffile's names: S samples (RGB), C channels (ImageJ)
        if channel_axis in axes:
            data = _grey_channel(source, data, axes.index(channel_axis), alpha=channel_axis == "S")
            axes = axes.replace(channel_axis, "")
    if data.ndim not in (2, 3):
        raise InputError(source, f"is {data.ndim}-D (shape {data.shape}); expected a 2-D image or a 3-D stack")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
        raise InputError(source, f"contains {nan} NaN and {inf} infinite values; only finite values can be segmented")
    return data


def _grey_channel(source: Path, data: np.ndarray, axis: int, alpha: bool) -> np.ndarray:
    """Grey stored as RGB(A) or as identical channels is common: keep one channel; reject true colour.

    With `alpha` (TIFF samples, Pillow modes) a 2nd of 2 or 4th of 4 samples is transparency and is ignored.
    """
    count = data.shape[axis]
    colours = count - 1 if alpha and count in (2, 4) else count
    first = np.take(data, 0, axis=axis)
    if any(not np.array_equal(first, np.take(data, c, axis=axis)) for c in range(1, colours)):
        raise InputError(source, f"has {count} channels that differ (colour); a greyscale image is expected")
    return first


def to_canonical(xyz: np.ndarray, affine: np.ndarray, zooms: Sequence[float]
                 ) -> tuple[np.ndarray, list[float], dict]:
    """Flip and permute an on-disk (X, Y, Z) array into nibabel's closest canonical (RAS+) orientation.

    Models are trained in one orientation, so an LPS or sagittal file must reach them turned the same way.
    Returns the array, its voxel sizes in the new axis order, and the metadata that lets `from_canonical`
    put labels back on disk. An affine too degenerate to give an orientation leaves the array as it is.
    """
    from nibabel.orientations import aff2axcodes, apply_orientation, io_orientation  # only NIfTI / DICOM need it

    ornt = io_orientation(affine)
    if np.isnan(ornt).any():
        return xyz, list(zooms), {}
    canonical_zooms = [0.0] * 3
    for disk_axis, (canonical_axis, _) in enumerate(ornt):
        canonical_zooms[int(canonical_axis)] = float(zooms[disk_axis])
    orientation = {"to_canonical": ornt, "orientation_on_disk": "".join(aff2axcodes(affine))}
    return apply_orientation(xyz, ornt), canonical_zooms, orientation


def from_canonical(xyz: np.ndarray, metadata: dict) -> np.ndarray:
    """Undo `to_canonical` on an (X, Y, Z) array so that it lines up with the file it was read from."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, ornt_transform

    ornt = metadata.get("to_canonical")
    return xyz if ornt is None else apply_orientation(xyz, ornt_transform(axcodes2ornt("RAS"), ornt))


def extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def natural_key(name: str) -> list:
    """Sort key that puts slice2 before slice10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]
