"""Organs as bodies: the volume-level rule that an organ is one sizeable piece, not scattered specks.

A CT model that has seen few scans calls a few voxels of bowel "kidney" or a thin streak of fat "gallbladder"
in slices that hold neither; per slice nothing tells such a speck from an organ's tip, but in the whole stack
it is a small body of its own, apart from the organ. nnU-Net keeps only the largest connected component of a
class where that helps on validation data (Isensee et al., Nature Methods 18, 2021); organs here may
legitimately come in pieces (a pancreas whose thin neck leaves the grid, a stomach whose fundus and antrum
meet outside the stack), so a piece is kept when it is big enough in absolute terms and next to the organ's
largest piece, not only when it is the largest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

MIN_ORGAN_ML = 2.0  # a 12.6 mm cube: smaller than any of the 8 organs even where a stack cuts it to its tip
MIN_PIECE_FRACTION = 0.1  # a piece under a tenth of the organ's largest one is a satellite, not a lobe
_TOUCHING = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity: pieces that meet at a corner are one body


def drop_organ_fragments(labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """(Z, H, W) `labels` with each organ's small pieces set to background; `spacing` is (z, y, x) in mm.

    A connected piece of an organ stays when it holds at least :data:`MIN_ORGAN_ML` millilitres and at
    least :data:`MIN_PIECE_FRACTION` of the organ's largest piece."""
    if labels.ndim != 3:
        raise ValueError(f"organ pieces are found in a (Z, H, W) stack, got labels of shape {labels.shape}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    kept = labels.copy()
    for organ in np.unique(labels):
        if organ == 0:
            continue
        pieces, count = ndi.label(labels == organ, structure=_TOUCHING)
        sizes = np.bincount(pieces.ravel(), minlength=count + 1)[1:] * voxel_ml
        small = (sizes < MIN_ORGAN_ML) | (sizes < MIN_PIECE_FRACTION * sizes.max())
        drop = np.concatenate([[False], small])  # index 0 is the rest of the stack
        kept[drop[pieces]] = 0
    return kept
