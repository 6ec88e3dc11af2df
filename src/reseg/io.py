"""Reading images, stacks and NIfTI volumes into a `Volume`, and writing labels or images back atomically.

Readers keep the pixel type and the geometry (spacing in mm, the NIfTI affine, 2-D vs 3-D on disk) so that
labels written later line up with the source in any viewer. Every problem with an input file is an
`InputError` naming the file and what is wrong; writers never leave a half-written file behind.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import tifffile
from PIL import Image

from reseg.errors import InputError

MODALITIES = ("OCT", "CT", "unknown")

_PIL_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
_NIFTI_EXTENSIONS = frozenset({".nii", ".nii.gz"})
_SLICE_EXTENSIONS = _PIL_EXTENSIONS | _TIFF_EXTENSIONS
_WRITE_EXTENSIONS = _TIFF_EXTENSIONS | _NIFTI_EXTENSIONS

# Intensities below this are only found in Hounsfield units (air is -1000 HU): the volume is CT.
_HU_MIN = -500
# Millimetres per unit, for the unit names used by ImageJ, tifffile and NIfTI headers.
_MM_PER_UNIT = {
    "mm": 1.0, "millimeter": 1.0, "millimetre": 1.0, "cm": 10.0, "centimeter": 10.0, "m": 1000.0,
    "meter": 1000.0, "um": 1e-3, "µm": 1e-3, "micron": 1e-3, "micrometer": 1e-3, "nm": 1e-6,
    "inch": 25.4, "in": 25.4,
}
# TIFF ResolutionUnit tag values (1 = none) to millimetres.
_TIFF_RESOLUTION_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
# Image editors write these by default: a display setting, not a physical pixel size.
_SCREEN_DPI = (72.0, 96.0)
# Pixel types ImageJ opens; others are written as plain TIFF.
_IMAGEJ_DTYPES = "BHhf"


@dataclass
class Volume:
    """An image or stack as the engine sees it, with what is needed to write results back in register.

    `data` is (Z, Y, X): slices along axis 0 (OCT B-scans, CT axial slices); a 2-D image has Z = 1 and
    `ndim_on_disk` = 2 so that it is written back 2-D. `spacing` is (z, y, x) in millimetres, 1.0 where the
    file does not say (`metadata["spacing_known"]` tells which). `affine` is the NIfTI affine as on disk.
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    modality: str = "unknown"
    source: Path = Path("<array>")
    affine: np.ndarray | None = None
    ndim_on_disk: int = 3
    metadata: dict = field(default_factory=dict)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        """In-plane (y, x) spacing in mm when the file records it, else None."""
        known = self.metadata.get("spacing_known", (False, False, False))
        return self.spacing[1:] if all(known[1:]) else None

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3-D (Z, Y, X), got shape {self.data.shape}")
        if self.ndim_on_disk not in (2, 3):
            raise ValueError(f"ndim_on_disk must be 2 or 3, got {self.ndim_on_disk}")
        if self.ndim_on_disk == 2 and self.data.shape[0] != 1:
            raise ValueError(f"a volume that is 2-D on disk has one slice, got shape {self.data.shape}")
        spacing = tuple(float(s) for s in self.spacing)
        if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be three positive numbers (z, y, x) in mm, got {self.spacing}")
        self.spacing = spacing
        self.modality = _modality(self.modality)
        self.source = Path(self.source)
        if self.affine is not None:
            self.affine = np.asarray(self.affine, dtype=np.float64)
            if self.affine.shape != (4, 4):
                raise ValueError(f"affine must be 4x4, got shape {self.affine.shape}")


def is_supported(path: str | Path) -> bool:
    """Cheap check, without reading pixels, so a reader hook can decline files it cannot open."""
    path = Path(path)
    if path.is_dir():
        try:
            return any(_is_slice_file(f) for f in path.iterdir())
        except OSError:
            return False
    return _extension(path) in _READERS


def read_volume(path: str | Path, modality: str | None = None) -> Volume:
    """Read a PNG/TIFF image, a TIFF stack, a NIfTI volume or a folder of slices, keeping dtype and geometry.

    `modality` overrides the guess (CT when intensities look like Hounsfield units, otherwise "unknown").
    Raises InputError naming the file for anything that cannot be segmented as it is.
    """
    chosen = _modality(modality) if modality is not None else None
    source = Path(path)
    if not source.exists():
        raise InputError(source, "no such file or folder")
    volume = _read_folder(source) if source.is_dir() else _read_file(source)
    volume.modality = chosen or volume.modality
    return volume


def write_labels(path: str | Path, labels: np.ndarray, like: Volume) -> Path:
    """Write labels in register with `like` (same orientation, spacing, affine, 2-D/3-D), atomically.

    `labels` is (Z, Y, X) with `like.data`'s shape and integer values 0..255, stored as uint8.
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


# --- reading -------------------------------------------------------------------------------------------


def _read_file(source: Path) -> Volume:
    reader = _READERS.get(_extension(source))
    if reader is None:
        supported = ", ".join(sorted(_READERS))
        raise InputError(source, f"unsupported file type '{source.suffix or source.name}'; supported: {supported}")
    if source.stat().st_size == 0:
        raise InputError(source, "file is empty (0 bytes)")
    return reader(source)


def _read_pil(source: Path) -> Volume:
    with _reading(source, "an image"), Image.open(source) as image:
        if image.mode == "P":  # palette indices mean nothing as intensities: compare the colours
            image = image.convert("RGBA")
        data = np.asarray(image)
        dpi = image.info.get("dpi")
    axes = "YX" if data.ndim == 2 else "YXS"
    spacing, known = _xy_spacing(dpi, _MM_PER_UNIT["inch"])
    return _make_volume(source, data, axes, spacing, known, kind="image")


def _read_tiff(source: Path) -> Volume:
    with _reading(source, "a TIFF"), tifffile.TiffFile(source) as tif:
        series = tif.series[0]
        data = series.asarray()
        page = series.keyframe
        resolution, tag_unit = page.resolution, int(page.resolutionunit)
        imagej = tif.is_imagej
        if imagej:
            header = tif.imagej_metadata or {}
        elif tif.is_shaped:
            header = tif.shaped_metadata[0]
        else:
            header = {}
    axes = series.axes
    if imagej and header.get("mode") == "grayscale" and "C" in axes and "Z" not in axes:
        # A plain 3-D array saved with imagej=True (tifffile's default) is stored as grey "channels": slices.
        axes = axes.replace("C", "Z")
    header_unit = _mm_per_unit(header.get("unit"))
    # ImageJ keeps the unit of the resolution tags in its header; other TIFFs in the ResolutionUnit tag.
    xy_unit = header_unit if imagej and header_unit else _TIFF_RESOLUTION_UNIT_MM.get(tag_unit)
    spacing, known = _xy_spacing(resolution, xy_unit)
    z = header.get("spacing")
    if header_unit is not None and isinstance(z, (int, float)) and z > 0:
        spacing[0], known[0] = float(z) * header_unit, True
    return _make_volume(source, data, axes, spacing, known, kind="tiff")


def _read_nifti(source: Path) -> Volume:
    with _reading(source, "NIfTI"):
        image = nib.load(source, mmap=False)  # in memory: the file may be replaced while the volume is open
        data = np.asanyarray(image.dataobj)
    header = image.header
    dtype_on_disk = image.get_data_dtype()
    if data.dtype == np.float64 and dtype_on_disk != np.float64:
        data = data.astype(np.float32)  # scaled integers: float32 holds them and halves the memory
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    data = _check_array(source, data, "XYZTUVW"[: data.ndim])
    unit_name = header.get_xyzt_units()[0]
    unit = _MM_PER_UNIT.get(unit_name, 1.0)  # NIfTI's "unknown" unit is taken as mm, as ITK and nibabel do
    zooms = [float(z) * unit for z in header.get_zooms()[: data.ndim]]
    spacing = ([1.0] + zooms[::-1])[-3:]
    metadata = {
        "format": "nifti", "dtype": str(dtype_on_disk), "axes": "XYZ"[: data.ndim], "spacing_known": (True,) * 3,
        "nifti_unit": unit_name if unit_name != "unknown" else "mm",
        "nifti_sform_code": int(header["sform_code"]), "nifti_qform_code": int(header["qform_code"]),
    }
    return _to_volume(source, np.ascontiguousarray(data.T), spacing, image.affine, metadata)


def _read_folder(folder: Path) -> Volume:
    try:
        files = sorted((f for f in folder.iterdir() if _is_slice_file(f)), key=lambda f: _natural_key(f.name))
    except OSError as exc:
        raise InputError(folder, f"cannot list the folder ({exc.strerror})") from exc
    if not files:
        raise InputError(folder, "folder holds no PNG or TIFF slices")
    first = _read_slice(files[0])
    data = np.empty((len(files),) + first.data.shape[1:], dtype=first.data.dtype)
    for index, file in enumerate(files):
        piece = first if index == 0 else _read_slice(file)
        if piece.data.shape != first.data.shape or piece.data.dtype != first.data.dtype:
            raise InputError(
                file,
                f"slice is {piece.data.shape[1:]} {piece.data.dtype} but {files[0].name} is "
                f"{first.data.shape[1:]} {first.data.dtype}; all slices in a folder must match",
            )
        data[index] = piece.data[0]
    known = (False,) + first.metadata["spacing_known"][1:]
    metadata = {**first.metadata, "format": "folder", "axes": "ZYX", "spacing_known": known,
                "slice_files": [f.name for f in files]}
    return _to_volume(folder, data, (1.0,) + first.spacing[1:], None, metadata)


def _read_slice(file: Path) -> Volume:
    piece = _read_file(file)
    if piece.ndim_on_disk != 2:
        raise InputError(file, f"is a stack of {piece.data.shape[0]} slices; a folder must hold one 2-D image per file")
    return piece


_READERS: dict[str, Callable[[Path], Volume]] = {
    **dict.fromkeys(_PIL_EXTENSIONS, _read_pil),
    **dict.fromkeys(_TIFF_EXTENSIONS, _read_tiff),
    **dict.fromkeys(_NIFTI_EXTENSIONS, _read_nifti),
}


@contextmanager
def _reading(source: Path, kind: str) -> Iterator[None]:
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


def _make_volume(source: Path, data: np.ndarray, axes: str, spacing: list[float], known: list[bool],
                 kind: str) -> Volume:
    """Validate a (Y, X) or (Z, Y, X) array read with `axes` and wrap it with its geometry."""
    dtype_on_disk = str(data.dtype)
    data = _check_array(source, data, axes)
    metadata = {"format": kind, "dtype": dtype_on_disk, "axes": axes, "spacing_known": tuple(known)}
    return _to_volume(source, data, spacing, None, metadata)


def _to_volume(source: Path, data: np.ndarray, spacing: list[float] | tuple[float, ...],
               affine: np.ndarray | None, metadata: dict) -> Volume:
    ndim = data.ndim
    data = data[np.newaxis] if ndim == 2 else data
    modality = "CT" if data.dtype.kind in "if" and data.min() < _HU_MIN else "unknown"
    return Volume(data, tuple(spacing), modality, source, affine, ndim, metadata)


def _check_array(source: Path, data: np.ndarray, axes: str) -> np.ndarray:
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


def _xy_spacing(resolution: tuple[float, float] | None, mm_per_unit: float | None
                ) -> tuple[list[float], list[bool]]:
    """Pixel size in mm from (x, y) pixels-per-unit; 1.0 and unknown where the file gives no physical unit."""
    if mm_per_unit is None or resolution is None or not all(r > 0 for r in resolution):
        return [1.0, 1.0, 1.0], [False, False, False]
    if mm_per_unit == _MM_PER_UNIT["inch"] and float(resolution[0]) in _SCREEN_DPI:
        return [1.0, 1.0, 1.0], [False, False, False]
    x, y = (mm_per_unit / float(r) for r in resolution[:2])
    return [1.0, y, x], [False, True, True]


def _mm_per_unit(unit: object) -> float | None:
    if not isinstance(unit, str):
        return None
    unit = unit.strip().lower().replace("\\u00b5", "µ").replace("μ", "µ")
    return _MM_PER_UNIT.get(unit)


def _modality(value: str) -> str:
    for name in MODALITIES:
        if value.lower() == name.lower():
            return name
    raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {value!r}")


def _extension(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _is_slice_file(path: Path) -> bool:
    return not path.name.startswith(".") and _extension(path) in _SLICE_EXTENSIONS and path.is_file()


def _natural_key(name: str) -> list:
    """Sort key that puts slice2 before slice10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


# --- writing -------------------------------------------------------------------------------------------


def _write(target: Path, data: np.ndarray, like: Volume) -> Path:
    extension = _extension(target)
    if extension not in _WRITE_EXTENSIONS:
        raise InputError(target, f"cannot write '{target.suffix or target.name}' files; use .tif, .nii or .nii.gz")
    on_disk = data[0] if like.ndim_on_disk == 2 else data
    writer = _write_nifti if extension in _NIFTI_EXTENSIONS else _write_tiff
    target.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(target, lambda temporary: writer(temporary, on_disk, like))
    return target


def _replace_atomically(target: Path, write: Callable[[Path], None]) -> None:
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
    image = nib.Nifti1Image(data.T, affine)  # (Z, Y, X) -> on-disk (X, Y, Z)
    image.header.set_data_dtype(data.dtype)
    image.header.set_xyzt_units(xyz=unit)
    image.set_sform(affine, code=like.metadata.get("nifti_sform_code", 2))
    image.set_qform(affine, code=like.metadata.get("nifti_qform_code", 2))
    nib.save(image, path)
