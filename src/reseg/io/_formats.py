"""Readers for PNG/JPEG/BMP (Pillow), TIFF (tifffile) and NIfTI (nibabel) files."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tifffile
from PIL import Image
from tifffile import COMPRESSION, EXTRASAMPLE, PHOTOMETRIC, PLANARCONFIG, TIFF

from reseg.errors import InputError
from reseg.io import _label_maps
from reseg.io._common import (
    MM_PER_UNIT,
    check_array,
    check_size,
    extension,
    invert_grey,
    reading,
    to_canonical,
    to_volume,
)
from reseg.io._volume import Volume

if TYPE_CHECKING:
    import nibabel as nib

PIL_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
TIFF_EXTENSIONS = frozenset({".tif", ".tiff"})
NIFTI_EXTENSIONS = frozenset({".nii", ".nii.gz"})
_NIFTI_COMMENT = 6  # NIfTI-1 extension code "comment": free text, here the label map's JSON description

# Bytes per band of the Pillow modes that are not 8-bit.
_PIL_BAND_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}
# TIFF ResolutionUnit tag values (1 = none) to millimetres.
_TIFF_RESOLUTION_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
# Image editors write these by default: a display setting, not a physical pixel size.
_SCREEN_DPI = (72.0, 96.0)


def read_pil(source: Path) -> Volume:
    with reading(source, "an image"), Image.open(source) as image:
        width, height = image.size
        bands = image.getbands()
        check_size(source, height, width, height * width * len(bands) * _PIL_BAND_BYTES.get(image.mode, 1))
        # Palette indices mean nothing as intensities: compare the colours.
        pixels = image.convert("RGBA") if image.mode == "P" else image
        alpha = int(pixels.mode.endswith("A"))  # LA, RGBA, PA: the last band is transparency
        data = np.asarray(pixels)
        dpi = image.info.get("dpi")
    axes = "YX" if data.ndim == 2 else "YXS"
    spacing, known = _xy_spacing(dpi, MM_PER_UNIT["inch"])
    return _make_volume(source, data, axes, spacing, known, kind="image", alpha_samples=alpha)


def read_tiff(source: Path) -> Volume:
    with reading(source, "a TIFF"), tifffile.TiffFile(source) as tif:
        if not tif.series:
            raise InputError(source, "is a TIFF without any image in it (no readable page): damaged or cut short")
        series = tif.series[0]
        page = series.keyframe
        _check_decodable(source, page, series)
        axes, alpha = _sample_axes(tif, page, series.axes)
        data = series.asarray()
        if "S" in series.axes and "S" not in axes:  # grey planes: slices first, as every stack is
            data = np.moveaxis(data, series.axes.index("S"), 0)
            axes = axes[series.axes.index("S")] + series.axes.replace("S", "")
        if page.photometric == PHOTOMETRIC.MINISWHITE:
            data = invert_grey(data, int(page.bitspersample))
        resolution, tag_unit = page.resolution, int(page.resolutionunit)
        imagej = tif.is_imagej
        if imagej:
            header = tif.imagej_metadata or {}
        elif tif.is_shaped:
            header = (tif.shaped_metadata or ({},))[0]
        else:
            header = {}
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
    volume = _make_volume(source, data, axes, spacing, known, kind="tiff", alpha_samples=alpha)
    properties = header.get("Properties")
    description = properties.get(_label_maps.TIFF_PROPERTY) if isinstance(properties, dict) else None
    return _as_label_map(volume, description)


def _check_decodable(source: Path, page: tifffile.TiffPage, series: tifffile.TiffPageSeries) -> None:
    """Before decoding: a codec this installation has, and a size within the budget."""
    if page.compression not in TIFF.DECOMPRESSORS:
        raise InputError(
            source,
            f"is compressed with {COMPRESSION(page.compression).name}, which this installation cannot "
            "decode: pip install imagecodecs",
        )
    shape, axes = series.shape, series.axes
    height, width = (shape[axes.index(a)] if a in axes else 1 for a in "YX")
    check_size(source, height, width, float(np.prod(shape, dtype=np.float64)) * series.dtype.itemsize)


def _sample_axes(tif: tifffile.TiffFile, page: tifffile.TiffPage, axes: str) -> tuple[str, int]:
    """What a TIFF's samples (tifffile's axis S) hold, read from its tags, and how many are transparency.

    Colour (photometric RGB and the like): the samples are colours, and those the ExtraSamples tag calls
    alpha are transparency. Grey (MinIsBlack / MinIsWhite) with several samples, or RGB stored plane by
    plane by tifffile's own writer (its legacy default for any (3 or 4, Y, X) array, recorded in its shaped
    description): the samples are grey planes, i.e. slices.
    """
    if "S" not in axes:
        return axes, 0
    grey = page.photometric in (PHOTOMETRIC.MINISBLACK, PHOTOMETRIC.MINISWHITE)
    planes_by_tifffile = (
        page.photometric == PHOTOMETRIC.RGB and page.planarconfig == PLANARCONFIG.SEPARATE and tif.is_shaped
    )
    if grey or planes_by_tifffile:
        return axes.replace("S", "C" if "Z" in axes else "Z"), 0
    alpha = sum(extra in (EXTRASAMPLE.ASSOCALPHA, EXTRASAMPLE.UNASSALPHA) for extra in page.extrasamples)
    return axes, alpha


def read_nifti(source: Path) -> Volume:
    with reading(source, "NIfTI"):
        image = _load_nifti(source)
        data = np.asanyarray(image.dataobj)
    data = nifti_pixels(data, image.get_data_dtype())
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    data = check_array(source, data, "XYZTUVW"[: data.ndim])
    metadata, zooms = nifti_geometry(source, image, data.ndim)
    if data.ndim == 3:  # a 2-D image stays as it is: turning it could stand the one slice on its edge
        data, zooms, orientation = to_canonical(data, image.affine, zooms)
        metadata.update(orientation)
    return nifti_volume(source, image, np.ascontiguousarray(data.T), zooms, metadata)


def nifti_pixels(data: np.ndarray, dtype_on_disk: np.dtype) -> np.ndarray:
    """Pixels as nibabel scaled them, in float32 where float64 only came from the scaling of integers."""
    if data.dtype == np.float64 and dtype_on_disk != np.float64:
        return data.astype(np.float32)  # scaled integers: float32 holds them and halves the memory
    return data


def nifti_geometry(source: Path, image: nib.Nifti1Image, ndim: int) -> tuple[dict, list[float]]:
    """The metadata of a NIfTI image of `ndim` dimensions and its voxel sizes in mm as on disk (x, y[, z])."""
    if not np.isfinite(image.affine).all():
        raise InputError(
            source,
            "has NaN or infinite values in its affine (the sform/qform of its header), so "
            "where its voxels lie and how large they are is unknown; fix the header",
        )
    header = image.header
    unit_name = header.get_xyzt_units()[0]
    unit = MM_PER_UNIT.get(unit_name, 1.0)  # NIfTI's "unknown" unit is taken as mm, as ITK and nibabel do
    zooms = [float(z) * unit for z in header.get_zooms()[:ndim]]
    metadata = {
        "format": "nifti",
        "dtype": str(image.get_data_dtype()),
        "axes": "XYZ"[:ndim],
        "nifti_unit": unit_name if unit_name != "unknown" else "mm",
        "nifti_sform_code": int(header["sform_code"]),
        "nifti_qform_code": int(header["qform_code"]),
    }
    return metadata, zooms


def nifti_volume(
    source: Path,
    image: nib.Nifti1Image,
    data: np.ndarray,
    zooms: list[float],
    metadata: dict,
    minimum: float | None = None,
) -> Volume:
    """The Volume of (Z, Y, X) `data` (turned as `metadata` says) of a NIfTI image, a label map if it is one."""
    spacing = ([1.0, *zooms[::-1]])[-3:]
    # A voxel size of 0, negative or NaN (pixdim) says nothing: pixel units, as for a file without one.
    known = tuple(bool(np.isfinite(size) and size > 0) for size in spacing)
    metadata["spacing_known"] = known
    spacing = [size if ok else 1.0 for size, ok in zip(spacing, known, strict=True)]
    volume = to_volume(source, data, spacing, image.affine, metadata, minimum)
    comments = [ext.get_content() for ext in image.header.extensions if ext.get_code() == _NIFTI_COMMENT]
    descriptions = [
        text for text in comments if isinstance(text, bytes) and _label_maps.LABEL_MAP_FORMAT.encode() in text
    ]
    return _as_label_map(volume, descriptions[0].decode("utf-8", "replace") if descriptions else None)


def _load_nifti(source: Path) -> nib.Nifti1Image:
    """The image, in memory (the file may be replaced while the volume is open), its size checked before the
    pixels are decoded and a gzip stream verified to its end (CRC and length: nibabel reads only the bytes it
    needs, so a damaged stream would otherwise go unnoticed)."""
    import nibabel as nib  # on use: importing it costs a third of a second, and most commands never read NIfTI

    check_nifti_size(source)
    if extension(source) != ".nii.gz":
        return nifti_image(source, nib.load(source, mmap=False))
    with gzip_errors(source):
        raw = gzip.decompress(source.read_bytes())
    return nib.Nifti1Image.from_bytes(raw)


def check_nifti_size(source: Path) -> None:
    """Refuse a NIfTI file whose header promises more pixels than the size budget, before any is decoded."""
    import nibabel as nib

    with gzip.open(source) if extension(source) == ".nii.gz" else open(source, "rb") as stream:
        header = nib.Nifti1Header.from_fileobj(stream, check=False)
    shape = header.get_data_shape()
    height, width = (shape[1], shape[0]) if len(shape) > 1 else (1, shape[0] if shape else 0)
    check_size(source, height, width, float(np.prod(shape, dtype=np.float64)) * header.get_data_dtype().itemsize)


def nifti_image(source: Path, image: object) -> nib.Nifti1Image:
    """`image` as nibabel loaded it, if it is a NIfTI-1 image (nibabel may find another format behind the name)."""
    import nibabel as nib

    if not isinstance(image, nib.Nifti1Image):  # NIfTI-2 is one
        raise InputError(source, f"holds a {type(image).__name__}, not a NIfTI image")
    return image


@contextmanager
def gzip_errors(source: Path) -> Iterator[None]:
    """A damaged or cut gzip stream met while decompressing is an InputError naming the file."""
    try:
        yield
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise InputError(source, f"is a damaged gzip stream ({error}); the file is corrupt or was cut short") from None


def _as_label_map(volume: Volume, description: str | None) -> Volume:
    """Mark a volume read from a label map of ours with its classes and the modality of its scan."""
    parsed = _label_maps.parse(volume.source, description) if description else None
    if parsed is None:
        return volume
    volume.label_classes, volume.modality = parsed.classes, parsed.modality
    volume.ndim_on_disk = parsed.ndim if len(volume.data) == 1 else volume.ndim_on_disk
    volume.metadata["labelled_scan"] = parsed.scan
    return volume


def _make_volume(
    source: Path,
    data: np.ndarray,
    axes: str,
    spacing: list[float],
    known: list[bool],
    kind: str,
    alpha_samples: int = 0,
) -> Volume:
    """Validate a (Y, X) or (Z, Y, X) array read with `axes` and wrap it with its geometry."""
    dtype_on_disk = str(data.dtype)
    data = check_array(source, data, axes, alpha_samples)
    metadata = {"format": kind, "dtype": dtype_on_disk, "axes": axes, "spacing_known": tuple(known)}
    return to_volume(source, data, spacing, None, metadata)


def _xy_spacing(resolution: tuple[float, float] | None, mm_per_unit: float | None) -> tuple[list[float], list[bool]]:
    """Pixel size in mm from (x, y) pixels-per-unit; 1.0 and unknown where the file gives no physical unit."""
    if mm_per_unit is None or resolution is None or not all(r > 0 for r in resolution):
        return [1.0, 1.0, 1.0], [False, False, False]
    if mm_per_unit == MM_PER_UNIT["inch"] and float(resolution[0]) in _SCREEN_DPI:
        return [1.0, 1.0, 1.0], [False, False, False]
    x, y = (mm_per_unit / float(r) for r in resolution[:2])
    return [1.0, y, x], [False, True, True]


def _mm_per_unit(unit: object) -> float | None:
    if not isinstance(unit, str):
        return None
    unit = unit.strip().lower().replace("\\u00b5", "µ").replace("μ", "µ")
    return MM_PER_UNIT.get(unit)
