"""Heidelberg Heyex .e2e exports: data containers ("MDbData") listed by directory chunks ("MDbDir"), with
eyepy's container layouts (eyepy.io.he.e2e_format, after the uocte project's description of the format).

eyepy 0.21's reader finds containers only through the directory chain, and refuses files it cannot turn into an
EyeVolume. Cut-down and partly exported files drop the directory (rse-panimg's test export keeps four containers
and a main header pointing past the end of the file) and rewrite an image's own size without its container's;
such files are read here by walking the containers in the order they lie in the file.

A multi-visit export holds several series (gigabytes of B-scans): the file is mapped, not read, the series is
chosen from the containers' headers alone, and only its containers are decoded.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO

import numpy as np

from reseg.errors import InputError
from reseg.io._common import reading, require
from reseg.io._heyex import _SCAN_PATTERNS, _display_grey
from reseg.io._volume import Volume, three_spacings

E2E_MAGIC = b"CMDb"  # the first bytes of every .e2e file
_FILE_HEADER_BYTES = 36 + 52  # version block, then the main directory header
_CONTAINER = b"MDbData"
_DIRECTORY = b"MDbDir"
_CONTAINER_HEADER_BYTES = 60
_DIRECTORY_HEADER_BYTES = 52
_FOLDER_HEADER_BYTES = 44
# Container types (eyepy's TypesEnum) and image kinds (the image header's type field).
_LATERALITY, _BSCAN_META, _LAYER, _IMAGE = 11, 10004, 10019, 1073741824
_FUNDUS_IMAGE, _BSCAN_IMAGE = 33620481, 35652097
# B-scan samples above this mark places without data (eyepy's from_e2e_intensity); real ones lie in 0..1.
_MISSING_ABOVE = 1.99
_NO_HEIGHT = 3.0e38  # a layer's value where the device found no boundary


@dataclass(frozen=True)
class _Container:
    """Where a data container lies and what its header says it holds (nothing of it decoded)."""

    start: int
    kind: int  # the container type
    slice_id: int
    image_kind: int | None  # an image container's image kind (B-scan, fundus), from the image's own header


def read_heyex_e2e(source: Path) -> Volume:
    """Read the first series (in file order) with B-scans: display grey levels, laterality, fundus image, device
    boundaries and, where the file holds B-scan records, the axial pixel size and scan pattern.

    Other series are not decoded; `metadata["other_series"]` says how many other series with B-scans the file
    holds (0 for a single-series export), so that a multi-visit export is not taken for one visit unawares."""
    formats = require("eyepy.io.he.e2e_format", source, "Heidelberg .e2e files")
    vol_reader = require("eyepy.io.he.vol_reader", source, "Heidelberg .e2e files")
    with reading(source, "a Heidelberg .e2e file"), source.open("rb") as file:
        head = file.read(len(E2E_MAGIC))
        if head != E2E_MAGIC:
            raise InputError(source, f"is not a Heidelberg .e2e file (it starts with {head!r}, not {E2E_MAGIC!r})")
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
            by_series = _containers_by_series(source, file, data, formats)
            with_bscans = [found for found in by_series.values() if any(c.image_kind == _BSCAN_IMAGE for c in found)]
            if not with_bscans:
                raise InputError(source, "holds no OCT B-scans (only fundus images or patient records)")
            series = _series_contents(source, data, formats, with_bscans[0])
    bscans = series["bscans"]
    order = sorted(bscans)
    shapes = {bscans[k].shape for k in order}
    if len(shapes) != 1:
        raise InputError(source, f"its B-scans differ in size ({sorted(shapes)})")
    raw = np.stack([bscans[k] for k in order])
    missing = raw > _MISSING_ABOVE
    metadata: dict = {
        "format": "heyex-e2e",
        "dtype": "float16u",
        "axes": "ZYX",
        "missing_pixels": int(missing.sum()),
        "laterality": series["laterality"],
        "other_series": len(with_bscans) - 1,
    }
    meta = [series["meta"][k] for k in order if k in series["meta"]]
    axial = float(meta[0].scale_y) if meta else 0.0
    known = (False, bool(np.isfinite(axial) and axial > 0), False)  # the lateral and B-scan spacing: not in .e2e
    metadata["spacing_known"] = known
    metadata["scan_pattern"] = _SCAN_PATTERNS.get(int(meta[0].scan_pattern), "unknown") if meta else "unknown"
    names = {index: name for name, index in vol_reader.SEG_MAPPING.items()}
    boundaries = {}
    for layer_id, per_slice in series["layers"].items():
        heights = np.full((len(order), raw.shape[2]), np.nan)
        for row, key in enumerate(order):
            if key in per_slice and per_slice[key].size == raw.shape[2]:
                heights[row] = np.where(per_slice[key] < _NO_HEIGHT, per_slice[key], np.nan)
        if np.isfinite(heights).any():
            boundaries[names.get(layer_id, f"layer {layer_id}")] = heights
    if boundaries:
        metadata["boundaries"] = boundaries
    if series["fundus"] is not None:
        metadata["fundus"] = series["fundus"]
    spacing = three_spacings((1.0, axial if known[1] else 1.0, 1.0))
    return Volume(_display_grey(raw, missing), spacing, "OCT", source, None, 3, metadata)


def _containers_by_series(
    source: Path, file: IO[bytes], data: mmap.mmap, formats: ModuleType
) -> dict[tuple[int, int, int], list[_Container]]:
    """Every data container by its (patient, study, series), from the headers only, in file order."""
    found: dict[tuple[int, int, int], list[_Container]] = {}
    for start in _container_starts(source, file, data, formats):
        header = formats.containerheader_format.parse(data[start : start + _CONTAINER_HEADER_BYTES])
        kind, image_kind = int(header.type), None
        if kind == _IMAGE:
            image_header = data[start + _CONTAINER_HEADER_BYTES : start + _CONTAINER_HEADER_BYTES + 8]
            if len(image_header) < 8:
                raise InputError(source, f"the image container at byte {start} is cut short inside its header")
            image_kind = struct.unpack_from("<I", image_header, 4)[0]
        key = (header.patient_id, header.study_id, header.series_id)
        found.setdefault(key, []).append(_Container(start, kind, header.slice_id, image_kind))
    return found


def _series_contents(source: Path, data: mmap.mmap, formats: ModuleType, containers: list[_Container]) -> dict:
    """A series' B-scans (by slice id), their records and layers, fundus and laterality, decoded from its
    containers."""
    series: dict = {"bscans": {}, "meta": {}, "layers": {}, "fundus": None, "laterality": ""}
    for container in containers:
        body_start = container.start + _CONTAINER_HEADER_BYTES
        body = data[body_start : body_start + _item_size(data, container.start)]
        if container.kind == _IMAGE and container.image_kind in (_BSCAN_IMAGE, _FUNDUS_IMAGE):
            if container.image_kind == _BSCAN_IMAGE:
                series["bscans"][container.slice_id] = _image(source, body)[1]
            elif series["fundus"] is None:
                series["fundus"] = _image(source, body)[1]
        elif container.kind == _LATERALITY:
            side = formats.type11_format.parse(body).laterality
            series["laterality"] = {"R": "OD", "L": "OS"}.get(chr(int(side)), "")
        elif container.kind == _BSCAN_META:
            series["meta"][container.slice_id] = formats.type10004_format.parse(body)
        elif container.kind == _LAYER:
            layer = formats.type10019_format.parse(body)
            series["layers"].setdefault(int(layer.id), {})[container.slice_id] = np.asarray(layer.data, np.float64)
    return series


def _container_starts(source: Path, file: IO[bytes], data: mmap.mmap, formats: ModuleType) -> Iterator[int]:
    """Where each data container starts: from the directory chunks where the file has them (eyepy's layout, parsed
    from the file without loading it), else walking the containers one after another from the end of the file
    header.

    eyepy's layout puts the first directory chunk right after the file header and parses whatever lies there as
    one: in a file without a directory it reads a container's header as a chunk's and, once the file is a few
    megabytes, takes a study id for the number of folders. Only chunks that start with their magic count."""
    starts = []
    if data[_FILE_HEADER_BYTES : _FILE_HEADER_BYTES + len(_DIRECTORY)] == _DIRECTORY:
        try:
            file.seek(0)
            parsed = formats.e2e_format.parse_stream(file)
        except Exception:  # a directory chain that does not parse: the walk below says where the file is damaged
            parsed = None
        for chunk in parsed.chunks if parsed is not None else []:
            if chunk.chunk_header.magic2 != _DIRECTORY.decode():
                break
            starts += [folder.start for folder in chunk.folders if folder.size > 0]
    if starts:
        yield from sorted(set(starts))
        return
    position = _FILE_HEADER_BYTES
    while position < len(data):
        magic = data[position : position + 12].split(b"\x00")[0]
        if magic == _DIRECTORY:
            (entries,) = struct.unpack_from("<I", data, position + 36)
            position += _DIRECTORY_HEADER_BYTES + entries * _FOLDER_HEADER_BYTES
        elif magic == _CONTAINER:
            end = position + _CONTAINER_HEADER_BYTES + _item_size(data, position)
            if end > len(data):
                raise InputError(
                    source, f"is cut short: the container at byte {position} ends past the end of the file"
                )
            yield position
            position = end
        else:
            raise InputError(source, f"is damaged: no .e2e data container at byte {position} (found {magic[:12]!r})")


def _item_size(data: mmap.mmap, start: int) -> int:
    """A container's data size; for images their own size field, which cut-down exports rewrite (the container's
    they leave as it was)."""
    if len(data) < start + _CONTAINER_HEADER_BYTES:
        return len(data)  # a header cut short: the caller's bounds check reports it
    size, kind = struct.unpack_from("<I24xI", data, start + 24)
    if kind == _IMAGE and len(data) >= start + _CONTAINER_HEADER_BYTES + 4:
        return struct.unpack_from("<I", data, start + _CONTAINER_HEADER_BYTES)[0]
    return size


def _image(source: Path, body: bytes) -> tuple[int, np.ndarray]:
    """An image container: (kind, pixels); B-scans as reflectivity decoded from Heidelberg's unsigned 16-bit float
    (6-bit exponent, 10-bit mantissa, bias 63), fundus images as uint8."""
    if len(body) < 20:
        raise InputError(source, "an image container is cut short inside its header")
    _, kind, _, height, width = struct.unpack_from("<5I", body)
    if kind == _BSCAN_IMAGE:
        if len(body) < 20 + height * width * 2:
            raise InputError(source, f"a {height} x {width} B-scan is cut short")
        raw = np.frombuffer(body, "<u2", height * width, 20).reshape(height, width)
        mantissa, exponent = (raw & 0x3FF).astype(np.float32), (raw >> 10).astype(np.float32)
        return kind, (1.0 + mantissa / 1024.0) * np.exp2(exponent - 63.0)
    if kind == _FUNDUS_IMAGE:
        if len(body) < 20 + height * width:
            raise InputError(source, f"a {height} x {width} fundus image is cut short")
        return kind, np.frombuffer(body, np.uint8, height * width, 20).reshape(height, width).copy()
    return kind, np.empty((0, 0))
