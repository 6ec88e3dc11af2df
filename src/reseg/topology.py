"""Anatomical plausibility of OCT layer labels: the retinal layers are stacked in a fixed order in every A-scan.

A model (or a hurried brush stroke) can produce labels no retina has, such as INL below ONL or a patch of
choroid in the vitreous. They are easy to miss by eye across 49 B-scans and poison a training set, so the
Review widget lists them and offers a one-click fix.

Rules, per A-scan (one column of one B-scan), with the classes of :data:`reseg.classes.OCT_CLASSES`:

- **Order.** Read top to bottom, skipping fluid (9) and ``IGNORE_INDEX`` pixels, the labels never decrease:
  vitreous (0) above every layer, the retinal layers 1..7 in order, choroid/sclera (8) below every layer. A
  layer may be missing (e.g. RNFL and GCL+IPL in the foveal pit); it may not come back after a deeper one.
- **Fluid inside the retina.** The retina of an A-scan spans from its ILM (first retinal-layer pixel) to its
  BM (last retinal-layer pixel, normally the bottom of OS+RPE). Intraretinal fluid above the ILM or below
  the BM, or in an A-scan without any retinal layer, is misplaced. Fluid between the photoreceptors and the
  RPE is accepted: subretinal fluid is common in DME and has no class of its own here.
- ``IGNORE_INDEX`` pixels (unknown, not reviewed) are neither checked nor changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reseg.classes import IGNORE_INDEX, OCT_CLASSES, OCT_FLUID, OCT_RETINAL_LAYERS

_FIRST_LAYER, _LAST_LAYER = OCT_RETINAL_LAYERS[0], OCT_RETINAL_LAYERS[-1]
_VITREOUS = 0
_CHOROID = _LAST_LAYER + 1


@dataclass(eq=False)
class TopologyReport:
    """Where a label volume breaks the rules of this module.

    ``broken`` holds the (slice, column) pairs of A-scans whose order is broken, shape (N, 2);
    ``misplaced_fluid`` the (slice, column) pairs of A-scans with fluid outside the retina, shape (M, 2), and
    ``misplaced_fluid_pixels`` how many such pixels each has, shape (M,). ``broken_per_slice`` and
    ``misplaced_fluid_per_slice`` count broken A-scans and misplaced fluid pixels per slice. A 2-D input is
    reported as slice 0 of a one-slice volume.
    """

    broken: np.ndarray
    misplaced_fluid: np.ndarray
    misplaced_fluid_pixels: np.ndarray
    broken_per_slice: np.ndarray
    misplaced_fluid_per_slice: np.ndarray

    @property
    def ok(self) -> bool:
        return len(self.broken) == 0 and len(self.misplaced_fluid) == 0

    @property
    def problem_slices(self) -> list[int]:
        """Slices with a broken A-scan or misplaced fluid, in order: what the Review widget lists."""
        return np.flatnonzero((self.broken_per_slice > 0) | (self.misplaced_fluid_per_slice > 0)).tolist()


def _as_volume(labels: np.ndarray) -> np.ndarray:
    """A (Z, H, W) uint8 view or copy of (H, W) or (Z, H, W) OCT labels, refusing values that are no class."""
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"OCT labels must be (H, W) or (Z, H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"OCT labels must be integers, got dtype {labels.dtype}")
    bad = ((labels < 0) | (labels >= len(OCT_CLASSES))) & (labels != IGNORE_INDEX)
    if bad.any():
        raise ValueError(f"OCT labels hold values that are no class: {np.unique(labels[bad])[:10].tolist()}")
    return labels.reshape((-1, *labels.shape[-2:])).astype(np.uint8, copy=False)


def _broken_ascans(labels: np.ndarray) -> np.ndarray:
    """True where an A-scan's class labels (fluid and ignore skipped) decrease somewhere down axis 1."""
    ordered = labels < OCT_FLUID  # classes 0..8: the ones with a place in the order
    running_max = np.maximum.accumulate(np.where(ordered, labels, _VITREOUS), axis=1)
    return np.asarray((ordered & (labels < running_max)).any(axis=1))


def _misplaced_fluid(labels: np.ndarray) -> np.ndarray:
    """True at fluid pixels above the first or below the last retinal-layer pixel of their A-scan (axis 1)."""
    height = labels.shape[1]
    layer = (labels >= _FIRST_LAYER) & (labels <= _LAST_LAYER)
    has_layer = layer.any(axis=1, keepdims=True)
    ilm = np.argmax(layer, axis=1, keepdims=True)
    bm = height - 1 - np.argmax(np.flip(layer, axis=1), axis=1, keepdims=True)
    rows = np.arange(height).reshape((height,) + (1,) * (labels.ndim - 2))
    return (labels == OCT_FLUID) & (~has_layer | (rows < ilm) | (rows > bm))


def check_oct_topology(labels: np.ndarray) -> TopologyReport:
    """Check (H, W) or (Z, H, W) OCT labels against the rules of this module (vectorised, no column loop)."""
    volume = _as_volume(labels)
    broken = _broken_ascans(volume)  # (Z, W)
    fluid_counts = _misplaced_fluid(volume).sum(axis=1)  # (Z, W)
    fluid_where = np.argwhere(fluid_counts > 0)
    return TopologyReport(
        broken=np.argwhere(broken),
        misplaced_fluid=fluid_where,
        misplaced_fluid_pixels=fluid_counts[tuple(fluid_where.T)],
        broken_per_slice=broken.sum(axis=1),
        misplaced_fluid_per_slice=fluid_counts.sum(axis=1),
    )


def _reorder(columns: np.ndarray) -> np.ndarray:
    """Sort the class pixels (0..8) of each row of (N, H) ``columns`` in place, fluid and ignore staying put.

    The k-th class pixel from the top receives the k-th smallest class value of its row, so every class keeps
    its pixel count in the A-scan.
    """
    movable = columns < OCT_FLUID
    ranked = np.sort(np.where(movable, columns, IGNORE_INDEX), axis=1)  # a row's classes first, ascending
    rank = np.cumsum(movable, axis=1) - 1
    rows = np.broadcast_to(np.arange(len(columns))[:, None], columns.shape)
    columns[movable] = ranked[rows[movable], rank[movable]]
    return columns


def _fill_from_nearest_class(columns: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Give the ``where`` pixels of (N, H) ``columns`` the class (0..8) of the nearest class pixel in their row.

    On a tie the pixel above wins; a row without any class pixel falls back to vitreous.
    """
    height = columns.shape[1]
    index = np.arange(height)
    is_class = columns < OCT_FLUID
    above = np.maximum.accumulate(np.where(is_class, index, -height), axis=1)
    below = np.flip(np.minimum.accumulate(np.flip(np.where(is_class, index, 2 * height), axis=1), axis=1), axis=1)
    source = np.where(index - above <= below - index, above, below)
    found = (source >= 0) & (source < height)
    rows = np.broadcast_to(np.arange(len(columns))[:, None], columns.shape)
    filled = np.where(found, columns[rows, np.clip(source, 0, height - 1)], _VITREOUS)
    columns[where] = filled[where]
    return columns


def fix_oct_topology(labels: np.ndarray) -> np.ndarray:
    """A copy of ``labels`` (same shape and dtype) that :func:`check_oct_topology` passes.

    Only the A-scans the check flags change. In each, the class pixels (everything but fluid and ignore) are
    re-ordered by class index, keeping every class's pixel count in the A-scan; fluid and ignore pixels stay
    where they are. Fluid then outside the retina (the re-ordering can move the ILM or BM past it) becomes the
    class of its nearest class pixel in the A-scan, which keeps the order intact. Unflagged A-scans and all
    ``IGNORE_INDEX`` pixels are returned bit-identical.
    """
    volume = _as_volume(labels)
    flagged = _broken_ascans(volume) | _misplaced_fluid(volume).any(axis=1)
    z, x = np.nonzero(flagged)
    columns = volume[z, :, x]  # (N, H): advanced indices first, then the row axis
    columns = _reorder(columns)
    columns = _fill_from_nearest_class(columns, _misplaced_fluid(columns))
    fixed = np.array(labels, copy=True)
    fixed.reshape(volume.shape)[z, :, x] = columns
    return fixed


def confine_to_retina(labels: np.ndarray, keep_fraction: float = 0.25) -> np.ndarray:
    """A copy of predicted ``labels`` with everything outside the retina's envelope set to vitreous or choroid.

    A model that meets a device or a noise floor it has not seen can label specks of the vitreous as fluid or
    as a layer, far from any retina. Per slice, the retina is the largest connected region of retinal-layer
    pixels (classes 1..7), plus any other region at least ``keep_fraction`` of its size (a retina cut in
    pieces by vessel shadows); per A-scan, every pixel above the retina's first pixel becomes vitreous and
    every pixel below its last pixel choroid/sclera. A-scans without retina and ``IGNORE_INDEX`` pixels are
    left alone. Fluid above the ILM or below the BM goes too: the check above counts it misplaced anyway.
    """
    from scipy import ndimage

    volume = _as_volume(labels)
    confined = volume.copy()
    rows = np.arange(volume.shape[1])[:, None]
    for index, labels_2d in enumerate(volume):
        regions, count = ndimage.label((labels_2d >= _FIRST_LAYER) & (labels_2d <= _LAST_LAYER))
        if count == 0:
            continue
        sizes = np.bincount(regions.ravel())[1:]
        kept = np.flatnonzero(sizes >= keep_fraction * sizes.max()) + 1
        retina = np.isin(regions, kept)
        has_retina = retina.any(axis=0)
        top = np.argmax(retina, axis=0)
        bottom = len(rows) - 1 - np.argmax(retina[::-1], axis=0)
        known = labels_2d != IGNORE_INDEX
        confined[index][(rows < top) & has_retina & known] = _VITREOUS
        confined[index][(rows > bottom) & has_retina & known] = _CHOROID
    return confined.reshape(np.shape(labels))
