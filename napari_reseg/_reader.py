"""File > Open and drag-and-drop: scans read by `reseg.io` become image layers, label maps written by this
plugin become labels layers (class names, colours), both in register and displayed as `_display` says."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from napari.utils.notifications import show_error

from ._display import scan_transform
from ._layer_state import LabelsRecord, pixel_free, scan_record_for_volume
from ._layers import CT_WINDOW, labels_layer_kwargs
from ._settings import preferences

if TYPE_CHECKING:
    from reseg.io import Volume

NULL_LAYER = [(None,)]  # napari's "read, but nothing to add" sentinel: no second error dialog


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[tuple]] | None:
    """Offer to read one supported scan (file or folder); decline anything else so other readers can try."""
    from reseg.io import is_supported

    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_scan if is_supported(path) else None


def layer_data(volume: Volume, name: str | None = None) -> tuple:
    """LayerData for a volume: an image layer for a scan, a labels layer for a label map of ours."""
    data = volume.data[0] if volume.ndim_on_disk == 2 else volume.data
    transform = scan_transform(volume, volume.modality, preferences()).last(data.ndim)
    name = name or volume.source.name
    if volume.label_classes is not None:
        scan = volume.metadata.get("labelled_scan")
        record = LabelsRecord(
            scan_key=scan or str(volume.source.resolve()),
            classes=volume.label_classes,
            geometry=pixel_free(volume),
            modality=volume.modality,
        )
        kwargs = labels_layer_kwargs(volume.label_classes, transform, name)
        kwargs["metadata"] = {"reseg": record}
        return data, kwargs, "labels"
    kwargs = {
        "name": name,
        **transform.kwargs(),
        "colormap": "gray",
        "metadata": {"reseg": scan_record_for_volume(volume)},
    }
    if volume.modality == "CT":
        kwargs["contrast_limits"] = CT_WINDOW
    return data, kwargs, "image"


def read_scan(path: str | list[str]) -> list[tuple]:
    from reseg.errors import InputError
    from reseg.io import read_volume

    source = Path(path[0] if isinstance(path, list) else path)
    try:
        volume = read_volume(source)
    except InputError as error:
        show_error(f"napari-reseg could not open {error}")
        return NULL_LAYER
    return [layer_data(volume)]
