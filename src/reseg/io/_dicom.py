"""DICOM series (PS3.10 files, read with pydicom): slices in spatial order, with the scanner geometry.

DICOM places pixels in LPS patient coordinates (PS3.3 C.7.6.2.1.1); the affine here is given in RAS as in
NIfTI and as dcm2niix writes it, so a series and a NIfTI conversion of it reach the models identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from reseg.errors import InputError
from reseg.io._common import check_array, invert_grey, natural_key, reading, require, to_canonical
from reseg.io._volume import Volume, three_spacings

_MARKER_END = 132  # a PS3.10 file starts with a 128-byte preamble and the 4 bytes b"DICM"
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_MODALITIES = {"CT": "CT", "OPT": "OCT", "OCT": "OCT"}  # DICOM Modality tag -> ours; others are "unknown"
# Larger values (the pixel data) are read only when needed, so that listing a folder's series stays cheap.
_DEFER_BYTES = 4096
# Gaps between slices may differ by this share of the typical gap (rounding of stored positions), not more.
_GAP_TOLERANCE = 0.05
# Direction cosines closer than this are the same orientation; positions closer (mm) are the same slice.
_COSINE_TOLERANCE = 1e-4
_SAME_POSITION_MM = 1e-3


@dataclass(frozen=True)
class _Frame:
    """One 2-D image: a single-frame file, or frame `index` of an enhanced (multi-frame) file."""

    file: Path
    dataset: Any
    index: int = 0

    @property
    def name(self) -> str:
        return self.file.name if _frame_count(self.dataset) == 1 else f"{self.file.name} frame {self.index + 1}"


def is_dicom_file(path: Path) -> bool:
    """A .dcm name or the 'DICM' marker after the preamble: DICOM files often have no extension at all."""
    if path.name.startswith(".") or not path.is_file():
        return False
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with open(path, "rb") as file:
            return file.read(_MARKER_END)[128:] == b"DICM"
    except OSError:
        return False


def read_dicom(source: Path) -> Volume:
    """Read the one series in a folder, or the whole series (same SeriesInstanceUID, same folder) of a file."""
    pydicom = require("pydicom", source, "DICOM")
    if source.is_dir():
        images = _images(_headers(pydicom, _dicom_files(source)))
        if not images:
            raise InputError(source, "holds DICOM files but no image among them (none has pixel data)")
        series = _by_series(images)
        if len(series) > 1:
            listing = "; ".join(
                f"{uid or '(no SeriesInstanceUID)'} '{members[0][1].get('SeriesDescription', '')}' "
                f"({len(members)} files, e.g. {members[0][0].name})"
                for uid, members in series.items()
            )
            raise InputError(
                source,
                f"holds {len(series)} DICOM series; open one file of the series you want "
                f"or give each series its own folder: {listing}",
            )
    else:
        dataset = _header(pydicom, source)
        if not _has_pixels(dataset):
            raise InputError(
                source,
                "is a DICOM image (it has rows and columns) without pixel data: the file is damaged or cut short"
                if _is_image_class(dataset)
                else "is a DICOM file without pixel data (a report, DICOMDIR or the like), not an image",
            )
        uid = dataset.get("SeriesInstanceUID")  # anonymised files may all have none: then they are one series
        others = [f for f in _dicom_files(source.parent) if f.name != source.name]
        images = [(source, dataset)] + [
            (file, other) for file, other in _images(_headers(pydicom, others)) if other.get("SeriesInstanceUID") == uid
        ]
    return _assemble(source, images)


def _dicom_files(folder: Path) -> list[Path]:
    try:
        return sorted((f for f in folder.iterdir() if is_dicom_file(f)), key=lambda f: natural_key(f.name))
    except OSError as exc:
        raise InputError(folder, f"cannot list the folder ({exc.strerror})") from exc


def _header(pydicom: ModuleType, file: Path) -> Any:
    with reading(file, "DICOM"):
        dataset = pydicom.dcmread(file, defer_size=_DEFER_BYTES)
    if len(dataset) == 0:  # pydicom gives up quietly on a data set cut short
        raise InputError(file, "is a DICOM file whose data set cannot be parsed: it is damaged or cut short")
    return dataset


def _headers(pydicom: ModuleType, files: list[Path]) -> list[tuple[Path, Any]]:
    return [(file, _header(pydicom, file)) for file in files]


def _has_pixels(dataset: Any) -> bool:
    return any(keyword in dataset for keyword in _PIXEL_KEYWORDS)


def _images(headers: list[tuple[Path, Any]]) -> list[tuple[Path, Any]]:
    """Drop what is not an image (DICOMDIR, structured reports, presentation states) from a folder listing.

    A file whose SOP class is an image's but that holds no pixels is damaged (cut short, stripped): a series
    read without it would silently miss a slice, so it is an error naming the file.
    """
    images = []
    for file, dataset in headers:
        if _has_pixels(dataset):
            images.append((file, dataset))
        elif _is_image_class(dataset):
            raise InputError(
                file,
                "is a DICOM image (it has rows and columns) without pixel data: the file is "
                "damaged or cut short, and its series would miss a slice",
            )
    return images


def _is_image_class(dataset: Any) -> bool:
    """Whether a file describes an image: an image storage SOP class (CT Image, Ophthalmic Tomography...) or,
    where anonymisation removed the class, the Image Pixel module's Rows (no report or DICOMDIR has them)."""
    name = str(getattr(dataset.get("SOPClassUID"), "name", ""))
    return "Image Storage" in name or "Rows" in dataset


def _by_series(images: list[tuple[Path, Any]]) -> dict[str | None, list[tuple[Path, Any]]]:
    series: dict[str | None, list[tuple[Path, Any]]] = {}
    for file, dataset in images:
        series.setdefault(dataset.get("SeriesInstanceUID"), []).append((file, dataset))
    return series


def _frame_count(dataset: Any) -> int:
    return int(dataset.get("NumberOfFrames") or 1)


def _attribute(frame: _Frame, group: str, keyword: str) -> Any:
    """A value for one frame: from its own or the shared functional group of an enhanced multi-frame file
    (PS3.3 C.7.6.16), else the plain attribute as classic single-frame files hold it."""
    dataset = frame.dataset
    for groups, index in (
        (dataset.get("PerFrameFunctionalGroupsSequence"), frame.index),
        (dataset.get("SharedFunctionalGroupsSequence"), 0),
    ):
        if groups and index < len(groups):
            items = groups[index].get(group)
            if items and keyword in items[0]:
                return items[0].get(keyword)
    return dataset.get(keyword)


def _numbers(frame: _Frame, group: str, keyword: str, count: int, positive: bool = False) -> np.ndarray | None:
    """`count` finite (and `positive`) numbers from a frame's attribute, None when the file does not give it."""
    value = _attribute(frame, group, keyword)
    if value is None or value == "":
        return None
    try:
        numbers = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        numbers = np.array([])
    if numbers.shape != (count,) or not np.isfinite(numbers).all() or (positive and not (numbers > 0).all()):
        kind = "positive numbers" if positive else "numbers"
        raise InputError(frame.file, f"has an invalid {keyword} {value!r}; expected {count} {kind}")
    return numbers


def _assemble(source: Path, images: list[tuple[Path, Any]]) -> Volume:
    frames = [_Frame(file, dataset, index) for file, dataset in images for index in range(_frame_count(dataset))]
    first = frames[0]
    size = (int(first.dataset.Rows), int(first.dataset.Columns))
    for frame in frames:
        if (int(frame.dataset.Rows), int(frame.dataset.Columns)) != size:
            raise InputError(
                frame.file,
                f"is {frame.dataset.Rows} x {frame.dataset.Columns} pixels but {first.name} "
                f"is {size[0]} x {size[1]}; all slices of a series must match",
            )
    frames, zooms, known, affine = _geometry(source, frames)
    stored = _pixels(frames)
    samples = int(first.dataset.get("SamplesPerPixel") or 1)
    tag = str(first.dataset.get("Modality", "")).upper()
    modality = _MODALITIES.get(tag, "unknown")
    stored = check_array(source, stored, "ZYXS" if samples > 1 else "ZYX")
    # MONOCHROME1 stores white as the lowest value. Models see tissue bright, as MONOCHROME2 stores it; CT
    # values are Hounsfield units whatever the display, so they stay.
    inverted = str(first.dataset.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" and modality != "CT"
    if inverted:
        stored = invert_grey(stored, int(first.dataset.get("BitsStored") or 8 * stored.dtype.itemsize))
    data = _rescale(frames, stored)
    metadata = {
        "format": "dicom",
        "dtype": str(stored.dtype),
        "axes": "XYZ",
        "dicom_modality": tag,
        "dicom_series_uid": str(first.dataset.get("SeriesInstanceUID", "")),
        "dicom_series_description": str(first.dataset.get("SeriesDescription", "")),
        "dicom_files": list(dict.fromkeys(frame.file.name for frame in frames)),
        "spacing_known": known[::-1],  # all True whenever the volume is turned below: no need to turn it too
        "nifti_sform_code": 1,
        "nifti_qform_code": 1,  # scanner coordinates, as dcm2niix writes them
        **({"inverted": "MONOCHROME1"} if inverted else {}),
    }
    xyz = data.transpose(2, 1, 0)  # (column, row, slice): the axes of the affine
    # OCT frames are B-scans (depth down the rows) whatever their patient geometry: keep them as acquired.
    if affine is not None and len(frames) > 1 and modality != "OCT":
        xyz, zooms, turn = to_canonical(xyz, affine, zooms)
        metadata.update(turn)
    ndim = 2 if len(frames) == 1 else 3
    return Volume(np.ascontiguousarray(xyz.T), three_spacings(zooms[::-1]), modality, source, affine, ndim, metadata)


def _geometry(
    source: Path, frames: list[_Frame]
) -> tuple[list[_Frame], list[float], tuple[bool, bool, bool], np.ndarray | None]:
    """Frames in spatial order, with (x, y, z) voxel sizes in mm, which of them the files give, and the RAS
    affine of the (column, row, slice) array; without patient geometry the device's numbering and no affine."""
    first = frames[0]
    orientation = _numbers(first, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
    pixel_spacing = _numbers(first, "PixelMeasuresSequence", "PixelSpacing", 2, positive=True)
    positions = [_numbers(frame, "PlanePositionSequence", "ImagePositionPatient", 3) for frame in frames]
    y, x = pixel_spacing if pixel_spacing is not None else (1.0, 1.0)
    between = _numbers(first, "PixelMeasuresSequence", "SpacingBetweenSlices", 1)  # some files store it signed
    z, z_known = (abs(float(between[0])), True) if between is not None and between[0] != 0 else (1.0, False)
    if orientation is None or pixel_spacing is None or any(p is None for p in positions):
        order = sorted(
            range(len(frames)),
            key=lambda i: (
                int(frames[i].dataset.get("InstanceNumber") or 0),
                natural_key(frames[i].file.name),
                frames[i].index,
            ),
        )
        known = (pixel_spacing is not None, pixel_spacing is not None, z_known)
        return [frames[i] for i in order], [x, y, z], known, None
    _check_parallel(frames, orientation)
    normal = np.cross(orientation[:3], orientation[3:])
    placed = [position for position in positions if position is not None]  # every one, by the check above
    by_depth = np.argsort([normal @ position for position in placed], kind="stable")
    frames, placed = [frames[i] for i in by_depth], [placed[i] for i in by_depth]
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 3] = orientation[:3] * x, orientation[3:] * y, placed[0]  # a row, a column
    if len(frames) > 1:
        depths = np.array([normal @ position for position in placed])
        _check_gaps(source, frames, np.diff(depths))
        z, z_known = (depths[-1] - depths[0]) / (len(frames) - 1), True  # the real distance, not SliceThickness
        lps[:3, 2] = (placed[-1] - placed[0]) / (len(frames) - 1)
    else:
        lps[:3, 2] = normal * z
    return frames, [x, y, z], (True, True, z_known), _LPS_TO_RAS @ lps


def _check_parallel(frames: list[_Frame], orientation: np.ndarray) -> None:
    for frame in frames[1:]:
        other = _numbers(frame, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
        if other is not None and not np.allclose(other, orientation, atol=_COSINE_TOLERANCE):
            raise InputError(
                frame.file,
                f"is oriented {other.tolist()} but {frames[0].name} is "
                f"{orientation.tolist()}; a series must be one stack of parallel slices",
            )


def _check_gaps(source: Path, frames: list[_Frame], gaps: np.ndarray) -> None:
    """A volume needs evenly spaced slices: a repeated position means several volumes, an odd gap a lost slice."""
    same = np.flatnonzero(gaps < _SAME_POSITION_MM)
    if same.size:
        a, b = frames[same[0]], frames[same[0] + 1]
        raise InputError(
            source,
            f"{a.name} and {b.name} are at the same slice position: the series holds more "
            "than one volume (time points, echoes or repeats); put each in its own folder",
        )
    typical = float(np.median(gaps))
    worst = int(np.argmax(np.abs(gaps - typical)))
    if abs(gaps[worst] - typical) > _GAP_TOLERANCE * typical:
        a, b = frames[worst], frames[worst + 1]
        raise InputError(
            source,
            f"slices are not evenly spaced: {a.name} and {b.name} are {gaps[worst]:.4g} mm "
            f"apart, the others {typical:.4g} mm (is a slice missing?)",
        )


def _pixels(frames: list[_Frame]) -> np.ndarray:
    """Decode the frames in order into one (Z, Y, X[, samples]) stack, each file decoded once."""
    stack: np.ndarray | None = None
    decoded_file: Path | None = None
    decoded = np.empty(0)
    for position, frame in enumerate(frames):
        if frame.file != decoded_file:
            with reading(frame.file, "DICOM pixel data"):
                decoded = frame.dataset.pixel_array
            decoded_file = frame.file
            if _frame_count(frame.dataset) == 1:
                decoded = decoded[np.newaxis]
        image = decoded[frame.index]
        if stack is None:
            stack = np.empty((len(frames), *image.shape), image.dtype)
        elif image.shape != stack.shape[1:]:
            raise InputError(
                frame.file, f"has pixels of shape {image.shape} but {frames[0].name} has {stack.shape[1:]}"
            )
        elif image.dtype != stack.dtype:  # e.g. one slice stored signed, the next unsigned
            stack = stack.astype(np.result_type(stack.dtype, image.dtype))
        stack[position] = image
    if stack is None:
        raise ValueError("no DICOM frames to decode")  # the series reader never passes an empty list
    return stack


def _rescale(frames: list[_Frame], stored: np.ndarray) -> np.ndarray:
    """Stored values to physical ones (Hounsfield units for CT): int16 when they are whole and fit, else float32."""
    slopes = np.array([_scalar(f, "RescaleSlope", 1.0) for f in frames])
    intercepts = np.array([_scalar(f, "RescaleIntercept", 0.0) for f in frames])
    if np.all(slopes == 1) and np.all(intercepts == 0):
        return stored
    low, high = stored.min(axis=(1, 2)), stored.max(axis=(1, 2))
    ends = np.stack([slopes * low + intercepts, slopes * high + intercepts])
    whole = stored.dtype.kind in "iu" and np.all(np.mod(slopes, 1) == 0) and np.all(np.mod(intercepts, 1) == 0)
    limits = np.iinfo(np.int16)
    dtype = np.int16 if whole and ends.min() >= limits.min and ends.max() <= limits.max else np.float32
    data = np.empty(stored.shape, dtype)
    for index, (slope, intercept) in enumerate(zip(slopes, intercepts, strict=True)):
        data[index] = stored[index] * slope + intercept
    return data


def _scalar(frame: _Frame, keyword: str, default: float) -> float:
    value = _numbers(frame, "PixelValueTransformationSequence", keyword, 1)
    return default if value is None else float(value[0])
