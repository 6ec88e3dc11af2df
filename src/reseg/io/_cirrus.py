"""Zeiss Cirrus .img exports: a headerless cube of uint8 samples whose size only the file name gives.

Cirrus names its raw exports like "P123_Macular Cube 512x128_7-25-2012_15-40-1_OD_sn1234_cube_raw.img":
A-scans per B-scan x B-scans, each A-scan 1024 samples deep. The B-scans are stored one after another, each as
1024 rows of one sample per A-scan, its bottom row first and mirrored left to right, so the cube is read as
(B-scans, 1024, A-scans) and turned upright and unmirrored; B-scans stay in file order. That is how
oct-preprocess-cirrus reads it (github.com/ashkan-abbasi66/oct-preprocess-cirrus, read_img.py). A. Lang's
MATLAB octCirrusReader.m (and retimat's io/read_img.m) read each B-scan the same way but also reverse the B-scan
order; without a real cube at hand to tell which is right, the file's order is kept.

Macular and Optic Disc Cubes cover 6 x 6 mm and 2 mm of depth (Zeiss' scan specification); other scans' sizes
are not recorded and are left unknown.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from reseg.errors import InputError
from reseg.io._volume import Volume, three_spacings

_DEPTH = 1024  # samples per A-scan
_NAME = re.compile(r"(?P<scan>[A-Za-z ]+?)\s*(?P<ascans>\d+)x(?P<bscans>\d+)")
_CUBE_MM = (6.0, 6.0, 2.0)  # width, height on the fundus and depth of a Macular / Optic Disc Cube
_CUBES = ("macular cube", "optic disc cube")
_EYE = re.compile(r"_(OD|OS)_")


def is_cirrus_img(path: Path) -> bool:
    """Whether the file is named as Cirrus names its cubes and holds the bytes that name gives (no data is read),
    so that other .img files (Analyze, ENVI) are left to other readers."""
    match = _NAME.search(path.name)
    try:
        return match is not None and path.stat().st_size == _cube_bytes(match) > 0
    except OSError:
        return False


def _cube_bytes(match: re.Match[str]) -> int:
    return int(match["ascans"]) * int(match["bscans"]) * _DEPTH


def read_cirrus_img(source: Path) -> Volume:
    """Read the cube as B-scans (Z, 1024, A-scans) the right way up, with the cube's spacing where it is known."""
    match = _NAME.search(source.name)
    if match is None:
        raise InputError(
            source,
            "cannot be read as a Zeiss Cirrus .img: the file has no header, and its name does not give the scan "
            "size as Cirrus writes it (e.g. 'Macular Cube 512x128')",
        )
    ascans, bscans = int(match["ascans"]), int(match["bscans"])
    expected = _cube_bytes(match)
    size = source.stat().st_size
    if size != expected or expected == 0:
        raise InputError(
            source,
            f"holds {size} bytes, but a Cirrus {ascans}x{bscans} scan of {_DEPTH}-sample A-scans holds {expected}; "
            "the file is cut short or its name does not match its scan",
        )
    try:
        raw = np.fromfile(source, np.uint8).reshape(bscans, _DEPTH, ascans)
    except OSError as exc:
        raise InputError(source, f"cannot be read ({exc.strerror})") from exc
    data = np.ascontiguousarray(raw[:, ::-1, ::-1])
    scan = match["scan"].strip()
    is_cube = scan.lower() in _CUBES
    width_mm, height_mm, depth_mm = _CUBE_MM
    values = (height_mm / bscans if bscans > 1 else 1.0, depth_mm / _DEPTH, width_mm / ascans)
    known = (is_cube and bscans > 1, is_cube, is_cube)
    eye = _EYE.search(source.name)
    metadata = {
        "format": "cirrus-img",
        "dtype": "uint8",
        "axes": "ZYX",
        "spacing_known": known,
        "scan_pattern": "volume" if is_cube else "unknown",
        "laterality": eye.group(1) if eye else "",
        "scan_name": scan,
    }
    spacing = three_spacings(v if ok else 1.0 for v, ok in zip(values, known, strict=True))
    return Volume(data, spacing, "OCT", source, None, 3, metadata)
