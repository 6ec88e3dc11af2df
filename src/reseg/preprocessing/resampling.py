"""In-plane resampling to a model's training spacing, shared by inference and training.

A CT model trained at 3 mm pixels sees a 0.8 mm scan's organs almost four times too large; cards with an
`input_spacing` therefore have every slice resampled to it, at inference and when such a model is trained
further, so both see the same scale.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def spacing_grid(shape: tuple[int, int], pixel_spacing: Sequence[float] | None,
                 input_spacing: Sequence[float] | None) -> tuple[int, int]:
    """The (H, W) a slice of `shape` at `pixel_spacing` (y, x, mm) has at `input_spacing`; unchanged when
    either spacing is unknown or every side is within 10 % of it already."""
    if not input_spacing or pixel_spacing is None:
        return shape
    size = tuple(max(16, round(n * have / want)) for n, have, want in zip(shape, pixel_spacing, input_spacing[-2:]))
    return shape if all(abs(a - b) <= 0.1 * b for a, b in zip(size, shape)) else size


def resample_image(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A float image (H, W) bilinearly resampled to `grid`."""
    if tuple(image.shape) == tuple(grid):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=grid, mode="bilinear", align_corners=False)[0, 0].numpy()


def resample_labels(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A label map (H, W) resampled to `grid` by nearest neighbour, so every value (ignore, partial) survives."""
    if tuple(labels.shape) == tuple(grid):
        return labels
    tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=grid, mode="nearest-exact")[0, 0].numpy().astype(labels.dtype)
