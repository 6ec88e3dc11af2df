"""File > Save Selected Layers for labels: .tif or .nii.gz in register with the scan they were made for."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from napari.utils.notifications import show_error

from reseg.errors import ResegError
from reseg.io import Volume, as_stack, write_labels


def _geometry(data: np.ndarray, meta: dict[str, Any]) -> Volume:
    """The source scan's geometry when the labels came from one of our readers, else the layer's own scale."""
    image = meta.get("metadata", {}).get("reseg", {}).get("image")
    geometry = getattr(image, "metadata", {}).get("reseg", {}).get("geometry") if image is not None else None
    stack = as_stack(data)
    if isinstance(geometry, Volume) and geometry.data.shape == stack.shape:
        return dataclasses.replace(geometry, data=stack)
    scale = tuple(float(s) for s in meta.get("scale", (1.0,) * data.ndim))
    spacing = ((1.0,) * 3 + scale)[-3:]
    return Volume(stack, spacing=spacing, ndim_on_disk=data.ndim, metadata={"spacing_known": (True,) * 3})


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: atomic, same geometry (NIfTI keeps the source's affine and orientation)."""
    array = np.asarray(data)
    try:
        like = _geometry(array, meta)
        written = write_labels(path, like.data, like=like)
    except (ResegError, ValueError, OSError) as error:
        show_error(f"napari-reseg could not save {meta.get('name', 'labels')!r} to {path}: {error}")
        return []
    return [str(written)]
