"""How a scan lies on screen: napari `scale`, `translate` and `units` from the scan's geometry and the user's
display preference. The pixels are never turned or resampled (the engine and the writer see them as read);
only the layer transform changes, and a scan's labels get the same transform, so they overlay.

- OCT B-scans are shown with the depth axis stretched (Preferences > Display), as graders view them: at the
  physical aspect a Spectralis B-scan (3.9 um x 11.3 um pixels) is a strip four times wider than tall. A grey
  scan of unknown modality sampled finer in depth than across (OCT exported as TIFF) is treated alike.
- CT volumes in the engine's RAS orientation (NIfTI, DICOM, the phantom) are shown in the radiological
  convention, as seen from the feet: the patient's right on the screen's left, anterior at the top (the
  table at the bottom). World coordinates are then the patient's LPS coordinates in mm, as in DICOM viewers.
- Axes whose spacing the file does not record are in pixels, not a claimed millimetre.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._settings import Preferences

if TYPE_CHECKING:
    from napari.layers import Layer

    from reseg.io import Volume


@dataclass(frozen=True)
class LayerTransform:
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str, ...]

    @classmethod
    def of(cls, layer: Layer) -> LayerTransform:
        """The transform a layer has now (a scan's labels copy their scan's, whatever the user changed)."""
        return cls(tuple(layer.scale), tuple(layer.translate), tuple(str(unit) for unit in layer.units))

    def kwargs(self) -> dict:
        return {"scale": self.scale, "translate": self.translate, "units": self.units}

    def last(self, ndim: int) -> LayerTransform:
        """The transform of the last `ndim` axes (a single B-scan is shown as a 2-D layer)."""
        return LayerTransform(self.scale[-ndim:], self.translate[-ndim:], self.units[-ndim:])


def scan_transform(geometry: Volume, modality: str, preferences: Preferences) -> LayerTransform:
    """The (z, y, x) layer transform of a scan (or of its labels), per the rules in the module docstring."""
    known = tuple(bool(k) for k in geometry.metadata.get("spacing_known", (False,) * 3))
    scale = [float(s) if k else 1.0 for s, k in zip(geometry.spacing, known, strict=True)]
    translate = [0.0, 0.0, 0.0]
    units = tuple("mm" if k else "pixel" for k in known)
    if _looks_like_bscans(modality, scale, known):
        scale[1] *= preferences.axial_display_factor
    elif modality == "CT" and geometry.metadata.get("to_canonical") is not None and all(known[1:]):
        scale[1], scale[2] = -scale[1], -scale[2]
        translate = list(_lps_origin(geometry))
    return LayerTransform(tuple(scale), tuple(translate), units)


def _lps_origin(geometry: Volume) -> tuple[float, float, float]:
    """(S, P, L) mm of the first voxel of the canonical (RAS) array: the layer's translate."""
    if geometry.affine is None:
        return (0.0, 0.0, 0.0)
    from nibabel.orientations import inv_ornt_aff

    ornt = np.asarray(geometry.metadata["to_canonical"])
    canonical_xyz = geometry.data.shape[::-1]
    on_disk_shape = [canonical_xyz[int(axis)] for axis in ornt[:, 0]]
    canonical_affine = geometry.affine @ inv_ornt_aff(ornt, on_disk_shape)
    r, a, s = canonical_affine[:3, 3]
    return (float(s), float(-a), float(-r))


def _looks_like_bscans(modality: str, scale: list[float], known: tuple[bool, ...]) -> bool:
    """OCT, or a grey scan of unknown modality sampled finer in depth than across (an OCT export as TIFF):
    the engine takes such scans for OCT too (its default model for them is the OCT model)."""
    if not known[1]:
        return False
    return modality == "OCT" or (modality == "unknown" and known[2] and scale[1] < scale[2])
