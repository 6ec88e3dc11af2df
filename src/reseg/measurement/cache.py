"""Thickness kept up to date while a grader edits labels: after an edit only the B-scans that changed have
their boundaries found again (finding them for a whole 49-B-scan volume takes about 30 times as long as for
one, `benchmarks/bench_measure.py`), so a live view stays within its 200 ms.

The cache keeps a copy of the labels it measured: an edit that does not say where it happened (napari's undo
only asks for a redraw) is found by comparing each B-scan with that copy.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from reseg.evaluation.evaluate import boundary_rows
from reseg.measurement.thickness import layer_thickness


class ThicknessCache:
    """Boundary heights and layer thickness of a (Z, H, W) OCT label volume, updated B-scan by B-scan."""

    def __init__(self, labels: np.ndarray, axial_mm: float) -> None:
        stack = np.asarray(labels)
        if stack.ndim != 3:
            raise ValueError(f"expected (Z, H, W) labels, got shape {stack.shape}")
        self.axial_mm = float(axial_mm)
        self._measured = stack.copy()
        self.heights = boundary_rows(stack)  # (8, Z, W) rows
        self._thickness: dict[str, np.ndarray] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        z, h, w = self._measured.shape
        return z, h, w

    def changed_slices(self, labels: np.ndarray, among: Iterable[int] | None = None) -> list[int]:
        """The B-scans (of `among`, default all) whose labels differ from those last measured."""
        stack = np.asarray(labels)
        if stack.shape != self._measured.shape:
            raise ValueError(f"the labels now have shape {stack.shape}, measured were {self._measured.shape}")
        candidates = range(len(stack)) if among is None else sorted(set(among))
        return [z for z in candidates if not np.array_equal(stack[z], self._measured[z])]

    def update(self, labels: np.ndarray, slices: Iterable[int] | None = None) -> list[int]:
        """Measure again the B-scans of `slices` that changed (default: look at all); returns those updated."""
        changed = self.changed_slices(labels, slices)
        if changed:
            stack = np.asarray(labels)
            self.heights[:, changed] = boundary_rows(stack[changed])
            self._measured[changed] = stack[changed]
            self._thickness = None
        return changed

    @property
    def thickness(self) -> dict[str, np.ndarray]:
        """(Z, W) um of each layer and the total retina (`reseg.measurement.thickness.layer_thickness`)."""
        if self._thickness is None:
            self._thickness = layer_thickness(self.heights, self.axial_mm)
        return self._thickness
