"""In-plane resampling to a model's training spacing: one rule for inference and training.

A CT model trained at 3 mm pixels sees a 0.8 mm scan's organs almost four times too large; cards with an
`input_spacing` therefore have every slice resampled to it, at inference and when such a model is trained
further, so both see the same scale and the same pixels. Images are resampled bilinearly, anti-aliased when
shrinking (the kernel widens with the scale, so a 0.8 mm scan brought to 3 mm averages its pixels instead of
picking every fourth one and keeping its noise); labels by nearest neighbour. This runs in torch, on the
model's device and on whole batches, rather than with scikit-image's `resize`, which works on one numpy
array at a time on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def spacing_grid(
    shape: tuple[int, int], pixel_spacing: Sequence[float] | None, input_spacing: Sequence[float] | None
) -> tuple[int, int]:
    """The (H, W) a slice of `shape` at `pixel_spacing` (y, x, mm) has at `input_spacing`; unchanged when
    either spacing is unknown or every side is within 10 % of it already."""
    if not input_spacing or pixel_spacing is None:
        return shape
    (height, width), (dy, dx), (want_y, want_x) = shape, pixel_spacing, input_spacing[-2:]
    size = (max(16, round(height * dy / want_y)), max(16, round(width * dx / want_x)))
    return shape if all(abs(a - b) <= 0.1 * b for a, b in zip(size, shape, strict=True)) else size


def resize_batch(batch: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """A float batch (N, C, H, W) resampled to `grid` (H, W): bilinear, anti-aliased along an axis it shrinks."""
    if tuple(batch.shape[-2:]) == tuple(grid):
        return batch
    shrinks = any(new < old for new, old in zip(grid, batch.shape[-2:], strict=True))
    return F.interpolate(batch, size=grid, mode="bilinear", align_corners=False, antialias=shrinks)


def resample_image(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A float image (H, W) resampled to `grid` by `resize_batch`."""
    if tuple(image.shape) == tuple(grid):
        return image
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return resize_batch(tensor, grid)[0, 0].numpy()


def resample_labels(labels: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A label map (H, W) resampled to `grid` by nearest neighbour, so every value (ignore, partial) survives."""
    if tuple(labels.shape) == tuple(grid):
        return labels
    tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=grid, mode="nearest-exact")[0, 0].numpy().astype(labels.dtype)
