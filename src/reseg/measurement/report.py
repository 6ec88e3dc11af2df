"""`reseg measure`: the thickness figures of a segmented OCT scan, per B-scan and on the ETDRS grid, as CSV or
JSON for spreadsheets and statistics.

Each B-scan's row carries the model that drew its labels and its review status, so a cohort table can keep
only what a grader confirmed. The ETDRS grid needs a volume (two or more B-scans of a raster scan); a line scan
gets the per-B-scan figures only, and so does a volume whose B-scan spacing is unknown. A peripapillary circle
scan whose file records where the circle lies and which eye it is (a Spectralis `.vol`) also gets its TSNIT
figures (`reseg.measurement.tsnit`): the average, quadrant and sector means along the circle.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import InputError
from reseg.evaluation.evaluate import boundary_rows
from reseg.io import Volume, replace_atomically
from reseg.io._common import extension
from reseg.measurement.etdrs import en_face, find_fovea, sector_map, sector_means, sector_names
from reseg.measurement.thickness import LAYERS, TOTAL_RETINA, layer_thickness
from reseg.measurement.tsnit import tsnit_profile
from reseg.review.state import SliceStatus

MEASUREMENT_EXTENSIONS = (".csv", ".json")
CSV_COLUMNS = ("region", "bscan", "sector", "layer", "mean_um", "a_scans", "model", "review_status")


@dataclass
class Measurement:
    """Mean thickness (um) per B-scan and layer, and per ETDRS sector and layer where the scan is a volume."""

    scan: str
    layers: tuple[str, ...]
    bscans: list[dict[str, Any]]  # {"bscan", "model", "review_status", "mean_um": {layer}, "a_scans": {layer}}
    fovea_mm: tuple[float, float] | None = None  # (y, x) on the fundus
    laterality: str | None = None
    etdrs: dict[str, dict[str, float | None]] = field(default_factory=dict)  # layer -> sector -> mean
    tsnit: dict[str, dict[str, float | None]] = field(default_factory=dict)  # circle scans: layer -> sector -> mean

    def to_dict(self) -> dict[str, Any]:
        return {
            "scan": self.scan,
            "layers": list(self.layers),
            "laterality": self.laterality,
            "fovea_mm": None if self.fovea_mm is None else list(self.fovea_mm),
            "etdrs_um": self.etdrs,
            "tsnit_um": self.tsnit,
            "bscans": self.bscans,
        }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for row in self.bscans:
            for layer in self.layers:
                mean, count, model = _number(row["mean_um"][layer]), row["a_scans"][layer], row["model"] or ""
                writer.writerow(("bscan", row["bscan"], "", layer, mean, count, model, row["review_status"]))
        for region, figures in (("etdrs", self.etdrs), ("tsnit", self.tsnit)):
            for layer, sectors in figures.items():
                for sector, sector_mean in sectors.items():
                    writer.writerow((region, "", sector, layer, _number(sector_mean), "", "", ""))
        return out.getvalue()


def _number(value: float | None) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.2f}"


def measure(
    volume: Volume,
    labels: np.ndarray,
    model: str | None = None,
    review_status: Sequence[str] | None = None,
) -> Measurement:
    """Thickness figures of OCT `labels` ((Z, H, W), the classes of `reseg.classes.OCT_CLASSES`) of `volume`.

    `review_status` gives each B-scan's status (default "unreviewed": a bare label map says nothing of it).
    Raises InputError naming the scan when its pixel size is unknown: a thickness in um needs it."""
    if labels.shape != volume.data.shape:
        raise InputError(volume.source, f"has shape {volume.data.shape}; the labels have {labels.shape}")
    if volume.pixel_spacing is None:
        raise InputError(volume.source, "does not record its pixel size, so no thickness in um can be measured")
    thickness = layer_thickness(boundary_rows(labels), volume.spacing[1])
    layers = (*LAYERS, TOTAL_RETINA)
    statuses = list(review_status) if review_status is not None else [SliceStatus.UNREVIEWED.value] * len(labels)
    bscans = []
    for z in range(len(labels)):
        known = {layer: np.isfinite(thickness[layer][z]) for layer in layers}
        bscans.append(
            {
                "bscan": z,
                "model": model,
                "review_status": statuses[z],
                "mean_um": {
                    layer: float(thickness[layer][z][known[layer]].mean()) if known[layer].any() else None
                    for layer in layers
                },
                "a_scans": {layer: int(known[layer].sum()) for layer in layers},
            }
        )
    result = Measurement(str(volume.source), layers, bscans, laterality=volume.metadata.get("laterality") or None)
    positions = volume.metadata.get("bscan_positions")
    if len(labels) == 1 and volume.metadata.get("scan_pattern") == "circle" and positions is not None:
        if (result.laterality or "").upper() in ("OD", "OS"):  # nasal and temporal need the eye
            result.tsnit = {
                layer: tsnit_profile(thickness[layer][0], positions[0], result.laterality).figures() for layer in layers
            }
    placed = positions is not None or bool(volume.metadata.get("spacing_known", (False,))[0])
    if len(labels) >= 2 and placed and volume.metadata.get("scan_pattern", "volume") not in ("line", "circle"):
        grid = en_face(
            (len(labels), labels.shape[2]),
            (volume.spacing[0], volume.spacing[2]),
            positions,
            result.laterality,
        )
        result.fovea_mm = find_fovea(thickness[TOTAL_RETINA], grid)
        sectors = sector_map(grid, result.fovea_mm)
        names = sector_names(grid.laterality)
        result.laterality = grid.laterality
        result.etdrs = {layer: sector_means(thickness[layer], sectors, names) for layer in layers}
    return result


def write_measurement(path: str | Path, measurement: Measurement) -> Path:
    """Write `measurement` as CSV (one row per B-scan and layer, then per ETDRS sector and layer) or JSON."""
    target = Path(path)
    suffix = extension(target)
    if suffix not in MEASUREMENT_EXTENSIONS:
        raise InputError(target, f"measurements are written as {' or '.join(MEASUREMENT_EXTENSIONS)}, not {suffix!r}")
    text = measurement.to_csv() if suffix == ".csv" else json.dumps(measurement.to_dict(), indent=2) + "\n"
    replace_atomically(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return target
