"""Heidelberg Heyex XML exports: one .xml describing the series (pixel sizes, B-scan positions, laterality,
the device's layer lines) beside the B-scans and the SLO image as 8-bit PNG/TIFF files.

eyepy's HeXmlReader parses the XML (sizes, scales, positions, file names) and reads the SLO image. The B-scans
and their SegLines are read here: its `volume` computes the distance between B-scans from neighbouring
B-scans' positions and fails on an export of one B-scan, yet single line and circle scans are the most common
XML exports. The exported images are already the grey levels Heyex displays, so they are used as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import InputError
from reseg.io._common import reading, require
from reseg.io._volume import Volume, three_spacings

_NO_HEIGHT = 3.0e38  # a layer value where the device found no boundary
_OCT_IMAGES = ".//ImageType[Type='OCT'].."  # the export's Image elements of OCT B-scans, in file order
# What may come before the root element: the XML declaration, comments, a document type declaration.
_PROLOGUE = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>)", re.DOTALL)
_HEYEX_ROOT = re.compile(rb"\s*<(?:[\w.-]+:)?HEDX[\s/>]")  # a Heyex export's root element, with or without a prefix


def starts_as_heyex_xml(head: bytes) -> bool:
    """Whether a file's first bytes open a Heyex export (its root element is HEDX), so that other tools' XML files
    are left to other readers; a UTF-8 or UTF-16 byte order mark is allowed."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        head = head.decode("utf-16", "ignore").encode("utf-8")
    head = head.removeprefix(b"\xef\xbb\xbf")
    position = 0
    while prologue := _PROLOGUE.match(head, position):
        position = prologue.end()
    return _HEYEX_ROOT.match(head, position) is not None


def read_heyex_xml(source: Path) -> Volume:
    """Read the export's B-scans with their spacing, positions on the SLO image, laterality and layer lines;
    the distance between B-scans only where there are several."""
    xml_reader = require("eyepy.io.he.xml_reader", source, "Heyex XML exports")
    with reading(source, "a Heyex XML export"):
        reader = xml_reader.HeXmlReader(source)
        bscan_meta = reader.bscan_meta
        names = [meta["scan_name"] for meta in bscan_meta]
        if not names:
            raise InputError(source, "lists no OCT B-scans (no Image with ImageType OCT)")
        missing = [name for name in names if not (reader.path.parent / name).is_file()]
        if missing:
            raise InputError(source, f"lists B-scan images that are not beside it: {', '.join(missing[:3])}")
        data = _bscan_images(source, reader.path.parent, names)
        boundaries = _seg_lines(source, reader.xml_root[0].findall(_OCT_IMAGES), data.shape[2])
        fundus = np.asarray(reader.localizer.data)
        distance = float(xml_reader.get_bscan_spacing(bscan_meta)) if len(names) > 1 else 0.0
        values = reader.parsed_values
        positions = np.array([[*m["start_pos"], *m["end_pos"]] for m in bscan_meta], dtype=np.float64)
    spacing_values = [distance, float(values["scale_y"] or 0.0), float(values["scale_x"] or 0.0)]
    known = tuple(bool(np.isfinite(v) and v > 0) for v in spacing_values)
    metadata: dict = {
        "format": "heyex-xml",
        "dtype": "uint8",
        "axes": "ZYX",
        "spacing_known": known,
        "scan_pattern": "unknown",  # the export does not record it
        "laterality": values["scan_position"] or "",
        "bscan_files": names,
        "fundus": fundus,
    }
    if boundaries:
        metadata["boundaries"] = boundaries
    if np.isfinite(positions).all():
        metadata["bscan_positions"] = positions
    if values["scale_y_slo"] and values["scale_x_slo"]:
        metadata["fundus_spacing"] = (float(values["scale_y_slo"]), float(values["scale_x_slo"]))
    spacing = three_spacings(v if ok else 1.0 for v, ok in zip(spacing_values, known, strict=True))
    return Volume(data, spacing, "OCT", source, None, 3, metadata)


def _bscan_images(source: Path, folder: Path, names: list[str]) -> np.ndarray:
    """(Z, Y, X) uint8: each exported B-scan image, its first channel where it is stored as colour."""
    from PIL import Image
    from skimage.util import img_as_ubyte

    slices: list[np.ndarray] = []
    for name in names:
        try:
            with Image.open(folder / name) as image:
                pixels = np.asarray(image)
        except OSError as exc:
            raise InputError(source, f"its B-scan image {name} cannot be read ({exc})") from exc
        grey = img_as_ubyte(pixels[..., 0] if pixels.ndim == 3 else pixels)
        if slices and grey.shape != slices[0].shape:
            raise InputError(source, f"its B-scan image {name} is {grey.shape}, but {names[0]} is {slices[0].shape}")
        slices.append(grey)
    return np.stack(slices)


def _seg_lines(source: Path, images: list[Any], width: int) -> dict[str, np.ndarray]:
    """The device's layer lines as (Z, W) heights in rows from the top, NaN where it found none; lines that are
    nowhere found are left out."""
    heights: dict[str, np.ndarray] = {}
    for index, image in enumerate(images):
        for line in image.findall(".//SegLine"):
            name = (line.findtext("./Name") or "").strip()
            what = f"B-scan {index}'s SegLine {name!r}"
            try:
                row = np.array((line.findtext("./Array") or "").split(), dtype=np.float64)
            except ValueError:
                raise InputError(source, f"{what} holds values that are not numbers") from None
            if row.shape != (width,):
                raise InputError(source, f"{what} has {row.size} values for {width} A-scans")
            grid = heights.setdefault(name, np.full((len(images), width), np.nan))
            grid[index] = np.where(row < _NO_HEIGHT, row, np.nan)
    return {name: grid for name, grid in heights.items() if np.isfinite(grid).any()}
