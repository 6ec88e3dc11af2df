"""Turn engine results (classes, display transform) into napari layer keyword arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from napari.utils.colormaps import DirectLabelColormap

from reseg.classes import SegmentationClass

if TYPE_CHECKING:
    from ._display import LayerTransform

# The soft-tissue abdominal window (level 37.5, width 425 HU), the one the bundled CT model normalises with.
CT_WINDOW = (-175, 250)


def labels_colormap(classes: Sequence[SegmentationClass]) -> DirectLabelColormap:
    """Each class in its card colour; class 0 (vitreous / background) and unknown values transparent."""
    colors: dict[int | None, tuple[float, float, float, float]] = {None: (0.0, 0.0, 0.0, 0.0)}
    for segmentation_class in classes:
        alpha = 0.0 if segmentation_class.index == 0 else 1.0
        red, green, blue = segmentation_class.color
        colors[segmentation_class.index] = (red / 255, green / 255, blue / 255, alpha)
    return DirectLabelColormap(color_dict=colors)


def class_features(classes: Sequence[SegmentationClass]) -> dict:
    """Class names as layer `features`: napari's status bar then names the class under the cursor."""
    return {"index": [c.index for c in classes], "class": [c.name for c in classes]}


def labels_layer_kwargs(classes: Sequence[SegmentationClass], transform: LayerTransform, name: str) -> dict:
    """Labels layer arguments: class names as `features`, card colours, and the scan's display transform."""
    return {
        "name": name,
        **transform.kwargs(),
        "colormap": labels_colormap(classes),
        "features": class_features(classes),
        "opacity": 0.5,
    }
