"""The one place that reads napari's Labels paint events, whose history format changed between versions.

A paint event's `value` is a list of history atoms. napari 0.7 stores each atom as a 3-tuple
`(indices, old_values, new_values)` (a numpy multi-index); napari >= 0.8 stores mask-based edits as a named
tuple with a `slice_key` bounding box (and still uses the 3-tuple for `data_setitem`). All the review logic
needs is which slices an edit touched; the pixels themselves are compared against the model prediction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def _atom_slices(atom: Any, n_slices: int) -> set[int]:
    slice_key = getattr(atom, "slice_key", None)
    if slice_key is not None:  # napari >= 0.8 mask-based atom: a bounding box of slices
        return set(range(*slice_key[0].indices(n_slices)))
    indices = atom[0]  # napari 0.7 (and data_setitem) 3-tuple: a numpy multi-index
    first = indices[0] if isinstance(indices, tuple) else indices
    if isinstance(first, slice):
        return set(range(*first.indices(n_slices)))
    return {int(z) for z in np.unique(np.asarray(first))}


def touched_slices(atoms: Iterable[Any], layer_ndim: int, n_slices: int) -> set[int]:
    """Indices along the first axis that the edit touched (always {0} for a 2-D layer)."""
    if layer_ndim == 2:
        return {0}
    touched: set[int] = set()
    for atom in atoms:
        touched |= _atom_slices(atom, n_slices)
    return touched
