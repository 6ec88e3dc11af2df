"""Where each B-scan of an OCT volume lies on the file's fundus (SLO) image, in the image's pixels: what a fundus
view draws, and which B-scan a click on it means.

Readers record a fundus image (`Volume.metadata["fundus"]`, grey (H, W) or colour (H, W, 3)), its pixel size
(`fundus_spacing`, (y, x) mm) and each B-scan's position on it (`bscan_positions`, (Z, 4): start x, y and end
x, y in mm). For a circle scan the end point is the circle's centre and the start the point on the circle where
the scan begins (the Heidelberg .vol header, as eyepy's reader documents its fields). On the real
peripapillary scan (HSF-OCT-103 `Willis_B_716_2.vol`) that centre lies on the optic disc and the radius,
1.80 mm, gives a circumference of 11.31 mm: its 768 A-scans times their 14.72 um.

Fundus pixel coordinates are continuous (x, y): (0, 0) is the top-left corner of the first pixel and (W, H)
the bottom-right corner of the last, so a line scan across the whole fundus ends on the image's edge (the
real line scan runs from x = 0 to 9.078 mm = 768 fundus pixels of 11.82 um).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg.errors import InputError

CIRCLE_SEGMENTS = 180  # a circle of 200 px radius drawn with these is within 0.03 px of the true circle


@dataclass(frozen=True)
class FundusView:
    """A scan's fundus as a view shows it: the image as uint8 and each B-scan's path on it.

    `paths[i]` is B-scan i's path, (N, 2) x, y fundus pixels, from the B-scan's first A-scan for a line, a
    closed polygon from the scan's start for a circle; empty where the position is unknown. `note` says why
    no path is drawn, when none is."""

    image: np.ndarray
    paths: tuple[np.ndarray, ...]
    circle: bool
    spacing: tuple[float, float] | None  # (y, x) mm per pixel, where the file records it
    note: str | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    @property
    def aspect(self) -> float:
        """The fundus's physical height over its width (its pixel shape where the pixel size is unknown)."""
        pixel_aspect = self.spacing[0] / self.spacing[1] if self.spacing else 1.0
        return self.image.shape[0] * pixel_aspect / self.image.shape[1]


def fundus_view(metadata: Mapping[str, Any], n_bscans: int, source: str | Path) -> FundusView | None:
    """The fundus view of a scan from its reader's metadata; None when the file holds no fundus image.
    Positions that do not match the scan's B-scans are an `InputError` naming `source`."""
    fundus = metadata.get("fundus")
    if fundus is None or np.size(fundus) == 0:
        return None
    image = display_fundus(np.asarray(fundus), source)
    circle = metadata.get("scan_pattern") == "circle"
    positions, spacing = metadata.get("bscan_positions"), _pixel_size(metadata.get("fundus_spacing"))
    if spacing is None:
        return FundusView(image, (), circle, None, "the file does not record the fundus image's pixel size")
    if positions is None:
        return FundusView(image, (), circle, spacing, "the file does not record where its B-scans lie on the fundus")
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape != (n_bscans, 4):
        raise InputError(
            source, f"records {positions.shape} B-scan positions on its fundus for {n_bscans} B-scans (expected (Z, 4))"
        )
    paths = tuple(bscan_paths(positions, spacing, circle))
    if not any(len(path) for path in paths):
        return FundusView(image, paths, circle, spacing, "the file's B-scan positions are not numbers")
    if not any(_overlaps(path, image.shape[1], image.shape[0]) for path in paths):
        return FundusView(image, paths, circle, spacing, "the file's B-scan positions lie outside its fundus image")
    return FundusView(image, paths, circle, spacing)


def display_fundus(fundus: np.ndarray, source: str | Path) -> np.ndarray:
    """The fundus as uint8 grey (H, W) or RGB (H, W, 3), C-contiguous: other types are stretched from their
    lowest to their highest value, an alpha channel is dropped."""
    if fundus.ndim == 3 and fundus.shape[2] == 4:
        fundus = fundus[..., :3]
    if not (fundus.ndim == 2 or (fundus.ndim == 3 and fundus.shape[2] == 3)):
        raise InputError(source, f"holds a fundus image of shape {fundus.shape}, neither grey (H, W) nor RGB (H, W, 3)")
    if fundus.dtype != np.uint8:
        values = fundus.astype(np.float32)
        finite = np.isfinite(values)
        low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
        scaled = (np.where(finite, values, low) - low) * (255.0 / (high - low) if high > low else 0.0)
        fundus = np.rint(scaled).astype(np.uint8)
    return np.ascontiguousarray(fundus)


def bscan_paths(positions: np.ndarray, fundus_spacing: tuple[float, float], circle: bool) -> list[np.ndarray]:
    """Each B-scan's path in fundus pixels (x, y) from its (start x, y, end x, y) mm position; `fundus_spacing`
    is (y, x) mm per pixel. Circles (end = centre) become closed polygons of :data:`CIRCLE_SEGMENTS` sides
    starting at the scan's start; the polygon's winding is not the scan's direction (the file does not say)."""
    per_mm = np.array([1.0 / fundus_spacing[1], 1.0 / fundus_spacing[0]])
    paths = []
    for start_x, start_y, end_x, end_y in np.asarray(positions, dtype=np.float64):
        start, end = np.array([start_x, start_y]), np.array([end_x, end_y])
        if not (np.isfinite(start).all() and np.isfinite(end).all()):
            paths.append(np.empty((0, 2)))
        elif circle:
            radius = float(np.hypot(*(start - end)))
            first = float(np.arctan2(*(start - end)[::-1]))
            angles = first + np.linspace(0.0, 2 * np.pi, CIRCLE_SEGMENTS + 1)
            ring = end + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
            paths.append(ring * per_mm)
        else:
            paths.append(np.stack([start, end]) * per_mm)
    return paths


def distances_to_paths(paths: Sequence[np.ndarray], point: tuple[float, float]) -> np.ndarray:
    """The distance from `point` (x, y) to each path, in the paths' units; infinite for an empty path."""
    here = np.asarray(point, dtype=np.float64)
    result = np.full(len(paths), np.inf)
    for index, path in enumerate(paths):
        if len(path) == 0:
            continue
        if len(path) == 1:
            result[index] = float(np.hypot(*(here - path[0])))
            continue
        a, b = path[:-1], path[1:]
        along = b - a
        length2 = np.einsum("ij,ij->i", along, along)
        t = np.clip(np.einsum("ij,ij->i", here - a, along) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
        nearest = a + t[:, None] * along
        result[index] = float(np.min(np.hypot(*(here - nearest).T)))
    return result


def nearest_bscan(paths: Sequence[np.ndarray], point: tuple[float, float], within: float) -> int | None:
    """The B-scan whose path passes nearest to `point` (x, y), if it passes within `within`; else None.
    Where paths cross (radial scans at their centre), the first B-scan wins."""
    distances = distances_to_paths(paths, point)
    if not len(distances):
        return None
    index = int(np.argmin(distances))
    return index if distances[index] <= within else None


def _pixel_size(recorded: Any) -> tuple[float, float] | None:
    """The recorded (y, x) mm per fundus pixel, or None where it is missing or not a positive size."""
    values = np.asarray(recorded if recorded is not None else (), dtype=np.float64).ravel()
    return (float(values[0]), float(values[1])) if len(values) == 2 and np.all(values > 0) else None


def _overlaps(path: np.ndarray, width: int, height: int) -> bool:
    """Whether the path's bounding box meets the image."""
    if len(path) == 0:
        return False
    low, high = path.min(axis=0), path.max(axis=0)
    return bool(low[0] <= width and high[0] >= 0 and low[1] <= height and high[1] >= 0)
