"""File > Open and drag-and-drop: scans read by `reseg.io`, shown with their physical spacing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
from napari.utils.notifications import show_error

from reseg.errors import InputError
from reseg.io import Volume, is_supported, read_volume

NULL_LAYER = [(None,)]  # napari's "read, but nothing to add" sentinel: no second error dialog


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[tuple]] | None:
    """Offer to read one supported scan (file or folder); decline anything else so other readers can try."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_scan if is_supported(path) else None


def image_layer_data(volume: Volume, name: str | None = None) -> tuple:
    """LayerData for a volume: its spacing becomes the layer scale (mm), so B-scans keep their aspect."""
    data = volume.data[0] if volume.ndim_on_disk == 2 else volume.data
    scale = volume.spacing[-data.ndim :]
    kwargs = {
        "name": name or volume.source.name,
        "scale": scale,
        "units": "mm",
        "colormap": "gray",
        "metadata": {"reseg": {"source": str(volume.source), "modality": volume.modality,
                                "spacing_known": volume.metadata.get("spacing_known"),
                                "geometry": geometry_of(volume)}},
    }
    return data, kwargs, "image"


def geometry_of(volume: Volume) -> Volume:
    """The volume without its pixels (a zero-stride view): what a writer needs to put labels back in register."""
    return dataclasses.replace(volume, data=np.broadcast_to(np.uint8(0), volume.data.shape))


def read_scan(path: str | list[str]) -> list[tuple]:
    source = Path(path[0] if isinstance(path, list) else path)
    try:
        volume = read_volume(source)
    except InputError as error:
        show_error(f"napari-reseg could not open {error}")
        return NULL_LAYER
    return [image_layer_data(volume)]
