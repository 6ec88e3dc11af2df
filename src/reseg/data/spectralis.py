"""Facts about Spectralis exports such as the Duke DME PNGs that more than one part of the project needs."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

FILL_MIN_PIXELS = 200


def scan_field_mask(bscan: np.ndarray) -> np.ndarray:
    """True where a uint8 B-scan export shows the scan, False on the registration fill.

    The export pads a shifted frame with large pure-white (and some pure-black) regions that are not image
    content; isolated 0 / 255 pixels inside the speckle are kept.
    """
    fill = np.zeros(bscan.shape, dtype=bool)
    for value in (0, 255):
        regions, count = ndimage.label(bscan == value)
        if count:
            sizes = np.bincount(regions.ravel())
            sizes[0] = 0
            fill |= sizes[regions] >= FILL_MIN_PIXELS
    return ~fill
