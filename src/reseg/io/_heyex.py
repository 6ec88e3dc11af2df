"""Heidelberg Engineering Spectralis .vol files (HSF-OCT-1xx raw export), parsed with eyepy's HeVolReader.

eyepy's `import_heyex_vol` builds an EyeVolume, which refuses single circle and radial scans; the reader's
parsed file holds every scan pattern, so it is used directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import InputError
from reseg.io._common import reading, require
from reseg.io._volume import Volume, three_spacings

_MAGIC = b"HSF-OCT-"
# The format marks samples it has no value for with a huge float (float32 max); real ones lie in 0..1.
_MISSING_ABOVE = 1e30
_SCAN_PATTERNS = {1: "line", 2: "circle", 3: "volume", 4: "fast volume", 5: "radial"}


def read_heyex_vol(source: Path) -> Volume:
    """Read the B-scans as display grey levels, with the device's layer boundaries and the SLO fundus image."""
    vol_reader = require("eyepy.io.he.vol_reader", source, "Heidelberg .vol files")
    with reading(source, "a Heidelberg .vol file"):
        with open(source, "rb") as file:
            magic = file.read(len(_MAGIC))
        if magic != _MAGIC:
            raise InputError(
                source,
                f"is not a Heidelberg Spectralis .vol file (it starts with {magic!r}, not "
                f"{_MAGIC!r}); other .vol formats are not supported",
            )
        reader = vol_reader.HeVolReader(source)
        parsed = reader.parsed_file
        if not parsed.bscans:
            raise InputError(source, "holds no B-scans")
        raw = np.stack([np.asarray(bscan.data, dtype=np.float32) for bscan in parsed.bscans])
        heights = reader.layers  # (layer, B-scan, A-scan) row heights, NaN where the device has none
    names = {index: name for name, index in vol_reader.SEG_MAPPING.items()}
    boundaries = {
        names.get(index, f"layer {index}"): layer for index, layer in enumerate(heights) if np.isfinite(layer).any()
    }
    missing = ~np.isfinite(raw) | (raw > _MISSING_ABOVE)
    spacing, known = _spacing(parsed)
    metadata = {
        "format": "heyex-vol",
        "vol_version": parsed.version,
        "dtype": str(raw.dtype),
        "axes": "ZYX",
        "spacing_known": known,
        "missing_pixels": int(missing.sum()),
        "scan_pattern": _SCAN_PATTERNS.get(parsed.scan_pattern, "unknown"),
        "laterality": parsed.scan_position.strip("\x00 "),  # OD right eye, OS left eye
        "boundaries": boundaries,
        # Where each B-scan lies on the fundus (mm): start x, y and end x, y (for a circle scan its centre).
        "bscan_positions": np.array([[b.start_x, b.start_y, b.end_x, b.end_y] for b in parsed.bscans]),
        "fundus": np.array(parsed.localizer),
        "fundus_spacing": (float(parsed.scale_y_slo), float(parsed.scale_x_slo)),
    }
    return Volume(_display_grey(raw, missing), spacing, "OCT", source, None, 3, metadata)


def _display_grey(raw: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Map reflectivity 0..1 to uint8 as the Spectralis software displays it, 255 * v ** 0.25; missing is 0.

    The bundled OCT model is trained on display-scaled B-scans like the Duke PNGs (Spectralis exports), so a
    .vol file must reach it scaled the same way, not as raw linear reflectivity.
    """
    linear = np.clip(np.where(missing, 0.0, raw), 0.0, 1.0)
    return np.rint(255.0 * linear**0.25).astype(np.uint8)


def _spacing(parsed: Any) -> tuple[tuple[float, float, float], tuple[bool, bool, bool]]:
    """(z, y, x) mm from the header: B-scan distance (none for one B-scan), axial and lateral pixel size."""
    values = [float(parsed.distance) if len(parsed.bscans) > 1 else 0.0, float(parsed.scale_y), float(parsed.scale_x)]
    z, y, x = (bool(np.isfinite(v) and v > 0) for v in values)
    known = (z, y, x)
    return three_spacings(v if ok else 1.0 for v, ok in zip(values, known, strict=True)), known
