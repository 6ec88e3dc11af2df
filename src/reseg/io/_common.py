"""Helpers every reader shares: library errors to InputError, array checks, orientation, optional imports."""

from __future__ import annotations

import importlib
import logging
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np

from reseg.errors import InputError
from reseg.io._volume import Volume, three_spacings

# Intensities below this are only found in Hounsfield units (air is -1000 HU): the volume is CT.
HU_MIN = -500
# The size budget, settable in the environment: an image beyond it is refused before it is decoded (a 140 kB
# PNG can decode to 12000 x 12000). A slice: B-scans are ~0.4 and CT slices 0.26 megapixels; at 16 (4096 x
# 4096) a network's feature maps already take gigabytes. A scan: 4 GiB is ~8000 CT slices of 512 x 512 int16.
SLICE_BUDGET_VARIABLE = "RESEG_MAX_SLICE_MEGAPIXELS"
DEFAULT_MAX_SLICE_MEGAPIXELS = 16.0
SIZE_BUDGET_VARIABLE = "RESEG_MAX_IMAGE_GB"
DEFAULT_MAX_IMAGE_GB = 4.0
# Millimetres per unit, for the unit names used by ImageJ, tifffile and NIfTI headers.
MM_PER_UNIT = {
    "mm": 1.0,
    "millimeter": 1.0,
    "millimetre": 1.0,
    "cm": 10.0,
    "centimeter": 10.0,
    "m": 1000.0,
    "meter": 1000.0,
    "um": 1e-3,
    "µm": 1e-3,
    "micron": 1e-3,
    "micrometer": 1e-3,
    "nm": 1e-6,
    "inch": 25.4,
    "in": 25.4,
}


_OURS = __name__.split(".")[0]  # "reseg"


@contextmanager
def reading(source: Path, kind: str) -> Iterator[None]:
    """Turn what a file library raises on a bad file into a one-line InputError naming the file and the
    library's own cause; an exception raised in our code is a bug and stays one.

    tifffile does not raise on some damage (a page beyond the end of a cut file, a series that no longer
    fits its shape): it logs an error and returns what it could read. Its errors logged by this thread
    meanwhile are caught, kept from the log, and make the read fail; other threads' records pass untouched.
    """
    library_errors = _ThreadRecords()
    library_log = logging.getLogger("tifffile")
    library_log.addFilter(library_errors)
    try:
        yield
        if library_errors.errors:
            raise InputError(source, f"is damaged or cut short: {_one_line(library_errors.errors[0])}")
    except InputError:
        raise
    except MemoryError as exc:
        raise InputError(source, "too large to load into memory") from exc
    except Exception as exc:
        library = _raised_in(exc)
        if library == _OURS:
            raise  # a bug of ours, not a fault of the file: it keeps its traceback
        raise InputError(
            source,
            f"cannot be read as {kind}: {library} found it damaged or not {kind} "
            f"({type(exc).__name__}: {_one_line(str(exc))})",
        ) from exc
    finally:
        library_log.removeFilter(library_errors)


def _raised_in(error: BaseException) -> str:
    """The top-level package whose code raised `error`: that of the innermost frame of its traceback, or for
    a compiled decoder whose frames name no module, that of the exception's class."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    module = frame.tb_frame.f_globals.get("__name__") if frame is not None else None
    return str(module or type(error).__module__).split(".")[0]


class _ThreadRecords(logging.Filter):
    """A logger filter that takes the records of the thread that made it out of the log, keeping errors."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()
        self.errors: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.thread != self.thread:
            return True
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())
        return False


def _one_line(text: str, limit: int = 300) -> str:
    """A library's message as one line of at most `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def require(module: str, source: Path, kind: str) -> ModuleType:
    """Import a library only some formats need (pydicom, eyepy), or say which one to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".")[0]
        raise InputError(source, f"reading {kind} needs the '{package}' package: pip install {package}") from exc


def to_volume(
    source: Path,
    data: np.ndarray,
    spacing: Sequence[float],
    affine: np.ndarray | None,
    metadata: dict,
    minimum: float | None = None,
) -> Volume:
    """Wrap a checked (Y, X) or (Z, Y, X) array, guessing CT from Hounsfield-like values; `minimum`, the least
    value, where the caller has it already (a stack read lazily is not read once more for it)."""
    ndim = data.ndim
    data = data[np.newaxis] if ndim == 2 else data
    least = data.min() if minimum is None else minimum
    modality = "CT" if data.dtype.kind in "if" and least < HU_MIN else "unknown"
    return Volume(data, three_spacings(spacing), modality, source, affine, ndim, metadata)


def check_array(source: Path, data: np.ndarray, axes: str, alpha_samples: int = 0) -> np.ndarray:
    """Reject what cannot be segmented (empty, colour, wrong dimensionality, NaN/Inf); collapse grey channels.

    `axes` names each axis as tifffile does (S: colour samples, C: channels); `alpha_samples` is how many of
    the last samples the file declares as transparency (TIFF ExtraSamples, a Pillow mode ending in A).
    """
    if data.size == 0:
        raise InputError(source, f"contains no pixels (shape {data.shape})")
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype.kind not in "iuf":
        raise InputError(source, f"unsupported pixel type {data.dtype}; expected grey integers or floats")
    for channel_axis in "SC":  # tifffile's names: S samples (RGB), C channels (ImageJ)
        if channel_axis in axes:
            alpha = alpha_samples if channel_axis == "S" else 0
            data = _grey_channel(source, data, axes.index(channel_axis), alpha)
            axes = axes.replace(channel_axis, "")
    if data.ndim not in (2, 3):
        raise InputError(source, f"is {data.ndim}-D (shape {data.shape}); expected a 2-D image or a 3-D stack")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        nan, inf = int(np.isnan(data).sum()), int(np.isinf(data).sum())
        raise InputError(source, f"contains {nan} NaN and {inf} infinite values; only finite values can be segmented")
    return data


def _grey_channel(source: Path, data: np.ndarray, axis: int, alpha_samples: int) -> np.ndarray:
    """Grey stored as RGB(A) or as identical channels is common: keep one channel; reject true colour.
    Transparency samples are ignored."""
    count = data.shape[axis]
    colours = max(count - alpha_samples, 1)
    first = np.take(data, 0, axis=axis)
    if any(not np.array_equal(first, np.take(data, c, axis=axis)) for c in range(1, colours)):
        raise InputError(source, f"has {count} colour channels that differ; a greyscale image is expected")
    return first


def invert_grey(data: np.ndarray, bits: int) -> np.ndarray:
    """Flip a grey image stored white-lowest (DICOM MONOCHROME1, TIFF MinIsWhite) to black-lowest, within the
    range its `bits` can hold (floats, which declare none, within their own range)."""
    if data.dtype.kind == "u":
        return (np.asarray((1 << bits) - 1, data.dtype) - data).astype(data.dtype)
    if data.dtype.kind == "i":
        return (-1 - data).astype(data.dtype)  # two's complement: maps [-2^(b-1), 2^(b-1) - 1] onto itself
    return (data.max() + data.min() - data).astype(data.dtype)


def check_size(source: Path, height: int, width: int, total_bytes: float) -> None:
    """Refuse, before decoding, an image beyond the size budget: a slice larger than inference can hold, or
    more decoded bytes than a scan may take. Both limits are settings (environment variables)."""
    slice_limit = max_slice_pixels()
    if height * width > slice_limit:
        raise InputError(
            source,
            f"would decode to slices of {height} x {width} pixels ({height * width / 1e6:.0f} "
            f"megapixels), more than the {slice_limit / 1e6:g} a model can segment; set "
            f"{SLICE_BUDGET_VARIABLE} to allow more",
        )
    budget = _setting(SIZE_BUDGET_VARIABLE, DEFAULT_MAX_IMAGE_GB) * 2**30
    if total_bytes > budget:
        raise InputError(
            source,
            f"would decode to {total_bytes / 2**30:.1f} GiB of pixels, more than the "
            f"{budget / 2**30:g} GiB a scan may take; set {SIZE_BUDGET_VARIABLE} to allow more",
        )


def max_slice_pixels() -> float:
    """The most pixels a slice may have (RESEG_MAX_SLICE_MEGAPIXELS, default 16 megapixels)."""
    return _setting(SLICE_BUDGET_VARIABLE, DEFAULT_MAX_SLICE_MEGAPIXELS) * 1e6


def _setting(variable: str, default: float) -> float:
    text = os.environ.get(variable, "")
    try:
        value = float(text) if text else default
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise InputError(variable, f"(an environment setting) must be a positive number, not {text!r}")
    return value


def to_canonical(xyz: np.ndarray, affine: np.ndarray, zooms: Sequence[float]) -> tuple[np.ndarray, list[float], dict]:
    """Flip and permute an on-disk (X, Y, Z) array into nibabel's closest canonical (RAS+) orientation.

    Models are trained in one orientation, so an LPS or sagittal file must reach them turned the same way.
    Returns the array, its voxel sizes in the new axis order, and the metadata that lets `from_canonical`
    put labels back on disk. An affine too degenerate to give an orientation leaves the array as it is.
    """
    from nibabel.orientations import apply_orientation  # only NIfTI / DICOM need it

    canonical_zooms, orientation = canonical_orientation(affine, zooms)
    turned = apply_orientation(xyz, orientation["to_canonical"]) if orientation else xyz
    return turned, canonical_zooms, orientation


def canonical_orientation(affine: np.ndarray, zooms: Sequence[float]) -> tuple[list[float], dict]:
    """What `to_canonical` does to an (X, Y, Z) array of this affine, without the array: the voxel sizes in
    the new axis order and the metadata (empty for an affine too degenerate to give an orientation)."""
    from nibabel.orientations import aff2axcodes, io_orientation

    ornt = io_orientation(affine)
    if np.isnan(ornt).any():
        return list(zooms), {}
    canonical_zooms = [0.0] * 3
    for disk_axis, (canonical_axis, _) in enumerate(ornt):
        canonical_zooms[int(canonical_axis)] = float(zooms[disk_axis])
    return canonical_zooms, {"to_canonical": ornt, "orientation_on_disk": "".join(aff2axcodes(affine))}


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
