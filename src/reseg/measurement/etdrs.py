"""The ETDRS grid: nine macular sectors around the fovea, the map graders and trials report thickness on.

Circles of 1, 3 and 6 mm diameter around the foveal centre; the central disc and, in the inner and the outer
ring, four quadrants (superior, nasal, inferior, temporal) bounded by the diagonals (Early Treatment Diabetic
Retinopathy Study Research Group, Ophthalmology 98(5 Suppl), 1991). The fovea is found as the thinnest point of
the smoothed total retinal thickness near the scan centre (macular scans are centred on it); a grader may
move it.

A-scans are placed on the en-face plane as the fundus image shows it: y down (superior at the top), x to the
right. With the B-scan positions a device recorded (Spectralis `.vol`: start and end on the fundus, mm) they
are exact; without, B-scan 0 is taken as the top row and column 0 as the left. Nasal is towards the optic
disc: to the right for a right eye (OD), to the left for a left eye (OS); without the eye's laterality the
quadrants are named by the image ("right", "left").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DIAMETERS_MM = (1.0, 3.0, 6.0)
FOVEA_SEARCH_MM = 1.0  # the fovea is sought within this distance of the scan centre
FOVEA_SMOOTHING_MM = 0.1  # thickness is smoothed over about a vessel's width first, so noise cannot win
_RINGS = ("inner", "outer")


@dataclass(frozen=True)
class EnFace:
    """Where each A-scan of a (Z, W) volume lies on the fundus: (Z, W) y and x in mm, and the eye."""

    y_mm: np.ndarray
    x_mm: np.ndarray
    laterality: str | None = None  # "OD" (right eye), "OS" (left eye) or unknown


def en_face(
    shape: Sequence[int],
    spacing: Sequence[float],
    bscan_positions: np.ndarray | None = None,
    laterality: str | None = None,
) -> EnFace:
    """The en-face position of every A-scan of `shape` (Z, W); `spacing` is (between B-scans, lateral) in mm.
    `bscan_positions` (Z, 4: start x, y, end x, y on the fundus, mm), where given, place each B-scan exactly."""
    n_bscans, width = int(shape[0]), int(shape[1])
    along = np.arange(width) / max(width - 1, 1)
    if bscan_positions is not None:
        positions = np.asarray(bscan_positions, dtype=np.float64)
        if positions.shape != (n_bscans, 4):
            raise ValueError(f"expected ({n_bscans}, 4) B-scan positions, got {positions.shape}")
        x = positions[:, 0:1] + (positions[:, 2:3] - positions[:, 0:1]) * along[None, :]
        y = positions[:, 1:2] + (positions[:, 3:4] - positions[:, 1:2]) * along[None, :]
    else:
        y, x = np.meshgrid(np.arange(n_bscans) * spacing[0], np.arange(width) * spacing[1], indexing="ij")
    side = laterality.upper() if laterality and laterality.upper() in ("OD", "OS") else None
    return EnFace(y.astype(np.float64), x.astype(np.float64), side)


def sector_names(laterality: str | None) -> tuple[str, ...]:
    """The nine sector names, centre first, then each ring's superior, right-hand, inferior, left-hand
    quadrant (nasal / temporal where the eye is known)."""
    right, left = {"OD": ("nasal", "temporal"), "OS": ("temporal", "nasal")}.get(laterality or "", ("right", "left"))
    return ("central", *(f"{ring} {q}" for ring in _RINGS for q in ("superior", right, "inferior", left)))


def find_fovea(total_um: np.ndarray, grid: EnFace) -> tuple[float, float]:
    """(y, x) mm of the thinnest point of the smoothed total retinal thickness within
    :data:`FOVEA_SEARCH_MM` of the scan centre; NaN thickness (no retina found) never counts."""
    sigma = [FOVEA_SMOOTHING_MM / step if step > 0 else 0.0 for step in _steps(grid)]
    known = np.isfinite(total_um)
    from scipy import ndimage as ndi  # on use: `reseg measure` refuses bad inputs without paying for scipy

    weight = ndi.gaussian_filter(known.astype(np.float64), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = ndi.gaussian_filter(np.where(known, total_um, 0.0), sigma) / weight
    centre_y, centre_x = (float(np.mean([a.min(), a.max()])) for a in (grid.y_mm, grid.x_mm))
    near = np.hypot(grid.y_mm - centre_y, grid.x_mm - centre_x) <= FOVEA_SEARCH_MM
    candidates = np.where(near & known & np.isfinite(smooth), smooth, np.inf)
    if not np.isfinite(candidates).any():
        raise ValueError("no retinal thickness within 1 mm of the scan centre to find the fovea in")
    index = np.unravel_index(int(np.argmin(candidates)), candidates.shape)
    return float(grid.y_mm[index]), float(grid.x_mm[index])


def _steps(grid: EnFace) -> tuple[float, float]:
    """Typical distance (mm) between neighbouring B-scans and between neighbouring A-scans of one B-scan."""
    steps = []
    for axis in (0, 1):
        if grid.y_mm.shape[axis] < 2:
            steps.append(0.0)
            continue
        distance = np.hypot(np.diff(grid.y_mm, axis=axis), np.diff(grid.x_mm, axis=axis))
        steps.append(float(np.median(distance)))
    return steps[0], steps[1]


def sector_map(grid: EnFace, centre: tuple[float, float]) -> np.ndarray:
    """(Z, W) int: the ETDRS sector of each A-scan (0 central, 1-4 inner, 5-8 outer ring, in the order of
    :func:`sector_names`), -1 beyond the 6 mm circle."""
    dy, dx = grid.y_mm - centre[0], grid.x_mm - centre[1]
    radius = np.hypot(dy, dx)
    # quadrant 0 superior (up: -y), 1 right (+x), 2 inferior, 3 left, split along the diagonals
    quadrant = np.select([(-dy >= np.abs(dx)), (dx > np.abs(dy)), (dy >= np.abs(dx))], [0, 1, 2], 3)
    inner, middle, outer = (d / 2 for d in DIAMETERS_MM)
    sectors = np.full(radius.shape, -1, dtype=np.int8)
    sectors[radius <= outer] = 5 + quadrant[radius <= outer]
    sectors[radius <= middle] = 1 + quadrant[radius <= middle]
    sectors[radius <= inner] = 0
    return sectors


def sector_means(thickness_um: np.ndarray, sectors: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    """Mean thickness of each sector over its A-scans with a thickness; None where it has none (the scan
    does not reach it)."""
    means: dict[str, float | None] = {}
    for index, name in enumerate(names):
        values = thickness_um[(sectors == index) & np.isfinite(thickness_um)]
        means[name] = float(values.mean()) if values.size else None
    return means
