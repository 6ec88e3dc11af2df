"""`write_boundaries`: OCT boundary heights per A-scan as CSV or JSON, for layer-regression trainers and
spreadsheets.

A boundary's height is the row (from the top, 0-based) of the first pixel below it, the convention of
`reseg.inference.surfaces`; NaN (empty in CSV, null in JSON) where an A-scan has no such boundary. With the
axial spacing known, the CSV also gives each height in micrometres from the top of the image.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import InputError
from reseg.io._atomic import replace_atomically
from reseg.io._common import extension

BOUNDARY_EXTENSIONS = (".csv", ".json")


def write_boundaries(
    path: str | Path,
    heights: np.ndarray,
    names: Sequence[str],
    axial_mm: float | None,
    source: str = "",
    extra: dict[str, Any] | None = None,
    per_bscan: dict[str, Sequence[str]] | None = None,
) -> Path:
    """Write (K, Z, W) boundary heights (rows; NaN where absent) named `names`, atomically.

    CSV: one line per A-scan (`bscan`, `a_scan`, each `per_bscan` column (e.g. the review status), then each
    boundary in px and, with `axial_mm`, in um). JSON: `{"boundaries": names, "shape": [Z, W],
    "axial_spacing_mm", "source", "heights": {name: Z x W}}` plus `extra` (e.g. the model that drew them) and
    each `per_bscan` list.
    """
    target = Path(path)
    suffix = extension(target)
    if suffix not in BOUNDARY_EXTENSIONS:
        raise InputError(target, f"boundaries are written as {' or '.join(BOUNDARY_EXTENSIONS)}, not {suffix!r}")
    heights = np.asarray(heights, dtype=np.float64)
    if heights.ndim != 3 or heights.shape[0] != len(names):
        raise ValueError(f"expected ({len(names)}, Z, W) heights, got {heights.shape}")
    per_bscan = per_bscan or {}
    if any(len(values) != heights.shape[1] for values in per_bscan.values()):
        raise ValueError(f"each per-B-scan column needs {heights.shape[1]} values")
    if suffix == ".csv":
        text = _csv(heights, names, axial_mm, per_bscan)
    else:
        text = _json(heights, names, axial_mm, source, {**(extra or {}), **{k: list(v) for k, v in per_bscan.items()}})
    replace_atomically(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return target


def _csv(heights: np.ndarray, names: Sequence[str], axial_mm: float | None, per_bscan: dict[str, Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["bscan", "a_scan", *per_bscan, *(f"{name}_px" for name in names)]
    if axial_mm:
        header += [f"{name}_um" for name in names]
    writer.writerow(header)
    _, n_bscans, width = heights.shape
    for bscan in range(n_bscans):
        for a_scan in range(width):
            column = heights[:, bscan, a_scan]
            row = [bscan, a_scan, *(values[bscan] for values in per_bscan.values()), *(_number(h) for h in column)]
            if axial_mm:
                row += [_number(h * axial_mm * 1000.0, 2) for h in column]
            writer.writerow(row)
    return out.getvalue()


def _json(
    heights: np.ndarray, names: Sequence[str], axial_mm: float | None, source: str, extra: dict[str, Any] | None
) -> str:
    document = {
        "boundaries": list(names),
        "shape": list(heights.shape[1:]),
        "axial_spacing_mm": axial_mm,
        "source": source,
        **(extra or {}),
        "heights": {name: [[_number(h) for h in row] for row in heights[k]] for k, name in enumerate(names)},
    }
    return json.dumps(document) + "\n"


def _number(value: float, digits: int = 3) -> float | int | None:
    """A height for the file: integers stay integers; NaN is empty (CSV) / null (JSON) via None."""
    if not np.isfinite(value):
        return None
    rounded = round(float(value), digits)
    return int(rounded) if rounded.is_integer() else rounded
