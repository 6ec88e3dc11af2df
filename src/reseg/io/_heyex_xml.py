"""Heidelberg Heyex XML exports: one .xml describing the series (pixel sizes, B-scan positions, laterality,
the device's layer lines) beside the B-scans and the SLO image as 8-bit PNG/TIFF files, read with eyepy's
HeXmlReader.

The exported images are already the grey levels Heyex displays, so they are used as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reseg.errors import InputError
from reseg.io._common import reading, require
from reseg.io._volume import Volume, three_spacings

_NO_HEIGHT = 3.0e38  # a layer value where the device found no boundary


def read_heyex_xml(source: Path) -> Volume:
    """Read the export's B-scans with their spacing, positions on the SLO image, laterality and layer lines."""
    xml_reader = require("eyepy.io.he.xml_reader", source, "Heyex XML exports")
    with reading(source, "a Heyex XML export"):
        reader = xml_reader.HeXmlReader(source)
        names = [meta["scan_name"] for meta in reader.bscan_meta]
        if not names:
            raise InputError(source, "lists no OCT B-scans (no Image with ImageType OCT)")
        missing = [name for name in names if not (reader.path.parent / name).is_file()]
        if missing:
            raise InputError(source, f"lists B-scan images that are not beside it: {', '.join(missing[:3])}")
        volume = reader.volume
        values = reader.parsed_values
        positions = np.array([[*m["start_pos"], *m["end_pos"]] for m in reader.bscan_meta], dtype=np.float64)
    distance = float(volume.meta["scale_z"] or 0.0) if len(names) > 1 else 0.0
    spacing_values = [distance, float(values["scale_y"] or 0.0), float(values["scale_x"] or 0.0)]
    known = tuple(bool(np.isfinite(v) and v > 0) for v in spacing_values)
    boundaries = {}
    for name, layer in volume.layers.items():
        heights = np.where(np.asarray(layer.data, np.float64) < _NO_HEIGHT, layer.data, np.nan)
        if np.isfinite(heights).any():
            boundaries[name] = heights
    metadata: dict = {
        "format": "heyex-xml",
        "dtype": "uint8",
        "axes": "ZYX",
        "spacing_known": known,
        "scan_pattern": "unknown",  # the export does not record it
        "laterality": values["scan_position"] or "",
        "bscan_files": names,
        "fundus": np.asarray(volume.localizer.data),
    }
    if boundaries:
        metadata["boundaries"] = boundaries
    if np.isfinite(positions).all():
        metadata["bscan_positions"] = positions
    if values["scale_y_slo"] and values["scale_x_slo"]:
        metadata["fundus_spacing"] = (float(values["scale_y_slo"]), float(values["scale_x_slo"]))
    spacing = three_spacings(v if ok else 1.0 for v, ok in zip(spacing_values, known, strict=True))
    return Volume(np.asarray(volume.data, dtype=np.uint8), spacing, "OCT", source, None, 3, metadata)
