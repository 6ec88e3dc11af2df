"""Turn engine results (classes, spacing) into napari layer keyword arguments."""

from __future__ import annotations

from typing import Sequence

from napari.utils.colormaps import DirectLabelColormap

from reseg.classes import SegmentationClass


def labels_colormap(classes: Sequence[SegmentationClass]) -> DirectLabelColormap:
    """Each class in its card colour; class 0 (vitreous / background) and unknown values transparent."""
    colors: dict[int | None, tuple[float, float, float, float]] = {None: (0.0, 0.0, 0.0, 0.0)}
    for segmentation_class in classes:
        alpha = 0.0 if segmentation_class.index == 0 else 1.0
        colors[segmentation_class.index] = (*(c / 255 for c in segmentation_class.color), alpha)
    return DirectLabelColormap(color_dict=colors)


def labels_layer_kwargs(
    classes: Sequence[SegmentationClass], scale: Sequence[float], name: str, units: Sequence[str] | str = "mm"
) -> dict:
    """Labels layer arguments: class names as `features`, card colours, and the image's scale and units."""
    return {
        "name": name,
        "scale": tuple(scale),
        "units": units,
        "colormap": labels_colormap(classes),
        "features": {"index": [c.index for c in classes], "class": [c.name for c in classes]},
        "opacity": 0.5,
    }
