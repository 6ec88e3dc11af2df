"""The patient's body in a CT slice, and the rule that no organ lies outside it.

A model that has seen few scans calls air, the table or the gown "stomach" often enough to matter; the body
outline is cheap to find and certain, so organs outside it are removed rather than trusted.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from reseg.io import as_stack

AIR_HU = -500.0  # between air (-1000) and fat (-100): everything denser is tissue, the table or clothing
MARGIN_PX = 2  # the body is grown by this much, so partial-volume skin pixels stay inside


def body_mask(image: np.ndarray, air_hu: float = AIR_HU) -> np.ndarray:
    """(Z, H, W) or (H, W) bool: per slice, the largest connected region denser than air, holes filled
    (lungs and bowel gas are inside the body), grown by :data:`MARGIN_PX`."""
    stack = as_stack(image)
    masks = np.zeros(stack.shape, dtype=bool)
    grow = ndi.generate_binary_structure(2, 1)
    for index, slice_ in enumerate(stack):
        dense, count = ndi.label(slice_ > air_hu)
        if count == 0:
            continue
        sizes = np.bincount(dense.ravel())[1:]
        body = ndi.binary_fill_holes(dense == 1 + int(np.argmax(sizes)))
        masks[index] = ndi.binary_dilation(body, grow, iterations=MARGIN_PX)
    return masks.reshape(image.shape)


def confine_to_body(labels: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`labels` with every organ pixel outside the body (of `image`, in Hounsfield units) set to background."""
    return np.where(body_mask(image), labels, 0).astype(labels.dtype, copy=False)
