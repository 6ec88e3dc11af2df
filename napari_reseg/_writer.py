"""File > Save Selected Layers for labels: .tif or .nii.gz in register with the scan they were made for, with
their class names and colours recorded in the file, so that they reopen as labels."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.utils.notifications import show_error

from ._layer_state import METADATA_KEY, LabelsRecord

if TYPE_CHECKING:
    from reseg.classes import SegmentationClass
    from reseg.io import Volume


def _geometry(array: np.ndarray, meta: dict[str, Any]) -> tuple[Volume, tuple[SegmentationClass, ...] | None]:
    """The scan's geometry and the classes when the layer is one of ours, else the layer's own scale."""
    from reseg.io import Volume, as_stack, three_spacings

    stack = as_stack(array)
    record = meta.get("metadata", {}).get(METADATA_KEY)
    if isinstance(record, LabelsRecord) and record.geometry.data.shape == stack.shape:
        return dataclasses.replace(record.geometry, data=stack, modality=record.modality), record.classes
    scale = tuple(abs(float(s)) for s in meta.get("scale", (1.0,) * stack.ndim))
    spacing = three_spacings(((1.0,) * 3 + scale)[-3:])
    return Volume(stack, spacing=spacing, ndim_on_disk=array.ndim, metadata={"spacing_known": (True,) * 3}), None


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: atomic, same geometry (NIfTI keeps the source's affine and orientation)."""
    from reseg.errors import ResegError
    from reseg.io import write_labels

    try:
        like, classes = _geometry(np.asarray(data), meta)
        written = write_labels(path, like.data, like=like, classes=classes)
    except (ResegError, ValueError, OSError) as error:
        show_error(f"napari-reseg could not save {meta.get('name', 'labels')!r} to {path}: {error}")
        return []
    return [str(written)]
