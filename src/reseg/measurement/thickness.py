"""Retinal layer thickness from boundary heights: what graders read off an OCT volume.

A layer's thickness at an A-scan is the distance between the boundaries above and below it, in micrometres:
(rows between them) x the axial spacing. Boundary heights follow `reseg.inference.surfaces` (boundary k is the
first row of class k + 1), so the rows of class k + 1 are heights[k] .. heights[k + 1] - 1 and the layer is
heights[k + 1] - heights[k] rows thick. Intraretinal fluid is part of the layer it swells, as in the thickness
maps of OCT devices; the total retina runs from the ILM to BM.
"""

from __future__ import annotations

import numpy as np

from reseg.classes import OCT_BOUNDARIES, OCT_CLASSES

LAYERS = tuple(c.name for c in OCT_CLASSES[1 : len(OCT_BOUNDARIES)])  # RNFL .. OS+RPE: between boundaries
TOTAL_RETINA = "total retina"  # ILM to BM


def layer_thickness(heights: np.ndarray, axial_mm: float) -> dict[str, np.ndarray]:
    """(Z, W) thickness in um of each layer and of the total retina, from (8, Z, W) boundary heights in rows
    (NaN where an A-scan lacks a boundary, and then its thickness is NaN)."""
    heights = np.asarray(heights, dtype=np.float64)
    if heights.ndim != 3 or heights.shape[0] != len(OCT_BOUNDARIES):
        raise ValueError(f"expected ({len(OCT_BOUNDARIES)}, Z, W) boundary heights, got {heights.shape}")
    if not axial_mm > 0:
        raise ValueError(f"the axial spacing must be positive (mm per row), got {axial_mm}")
    um_per_row = axial_mm * 1000.0
    thickness = {name: (heights[k + 1] - heights[k]) * um_per_row for k, name in enumerate(LAYERS)}
    thickness[TOTAL_RETINA] = (heights[-1] - heights[0]) * um_per_row
    return thickness
