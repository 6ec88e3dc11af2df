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


def drop_organ_fragments(labels: np.ndarray, spacing: Sequence[float]) -> None:
    """Set each organ's small pieces in the (Z, H, W) `labels` to background, in place (a copy of a whole CT
    stack's labels would be the largest thing in memory); `spacing` is (z, y, x) in mm.

    A connected piece of an organ stays when it holds at least :data:`MIN_ORGAN_ML` millilitres and at
    least :data:`MIN_PIECE_FRACTION` of the organ's largest piece."""
    if labels.ndim != 3:
        raise ValueError(f"organ pieces are found in a (Z, H, W) stack, got labels of shape {labels.shape}")
    voxel_ml = float(np.prod(spacing)) / 1000.0
    # Each organ within its bounding box, slice by slice where whole-box temporaries would add up: the step
    # runs on a whole CT stack, and a box-sized int64 copy would outweigh the scan (issue 15). Boxes are found
    # first: dropping a piece of one organ changes no other organ's voxels.
    for organ, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        pieces, count = _pieces(labels[box] == organ)
        sizes = np.zeros(count + 1, np.int64)
        for plane in pieces:
            sizes += np.bincount(plane.ravel(), minlength=count + 1)
        volumes = sizes[1:] * voxel_ml
        small = (volumes < MIN_ORGAN_ML) | (volumes < MIN_PIECE_FRACTION * volumes.max())
        drop = np.concatenate([[False], small])  # index 0 is the rest of the box
        for plane, labels_plane in zip(pieces, labels[box], strict=True):
            labels_plane[drop[plane]] = 0


def _pieces(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """The 26-connected pieces of `mask`, numbered in 16 bits unless there are more than 16 bits can count."""
    try:
        return ndi.label(mask, structure=_TOUCHING, output=np.uint16)
    except RuntimeError:  # scipy: "insufficient bit-depth in requested output type"
        return ndi.label(mask, structure=_TOUCHING)
