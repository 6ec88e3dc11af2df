"""The `Volume` every reader returns and every writer takes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reseg.classes import SegmentationClass

MODALITIES = ("OCT", "CT", "unknown")


@dataclass
class Volume:
    """An image or stack as the engine sees it, with what is needed to write results back in register.

    `data` is (Z, Y, X): slices along axis 0 (OCT B-scans, CT axial slices); a 2-D image has Z = 1 and
    `ndim_on_disk` = 2 so that it is written back 2-D. `spacing` is (z, y, x) in millimetres, 1.0 where the
    file does not say (`metadata["spacing_known"]` tells which). `affine` maps the array as it lies on disk
    to RAS millimetres: the NIfTI affine, or for DICOM the one built from the patient geometry. NIfTI and
    DICOM volumes are turned into nibabel's closest canonical (RAS+) orientation on reading, so that models
    see one orientation whatever the file's; `metadata["to_canonical"]` records the turn (a nibabel
    orientation) and the NIfTI writer undoes it.

    `label_classes` is set when the file is a label map that `write_labels` wrote (it records the class names
    and colours in the file): such a file is a segmentation to show or compare, never a scan to segment.
    """

    data: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    modality: str = "unknown"
    source: Path = Path("<array>")
    affine: np.ndarray | None = None
    ndim_on_disk: int = 3
    metadata: dict = field(default_factory=dict)
    label_classes: tuple[SegmentationClass, ...] | None = None

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        """In-plane (y, x) spacing in mm when the file records it, else None."""
        known = self.metadata.get("spacing_known", (False, False, False))
        return self.spacing[1:] if all(known[1:]) else None

    @property
    def voxel_spacing(self) -> tuple[float, float, float] | None:
        """(z, y, x) spacing in mm when the file records all three (what organ volumes are measured in)."""
        return self.spacing if all(self.metadata.get("spacing_known", (False, False, False))) else None

    def __post_init__(self) -> None:
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3-D (Z, Y, X), got shape {self.data.shape}")
        if self.ndim_on_disk not in (2, 3):
            raise ValueError(f"ndim_on_disk must be 2 or 3, got {self.ndim_on_disk}")
        if self.ndim_on_disk == 2 and self.data.shape[0] != 1:
            raise ValueError(f"a volume that is 2-D on disk has one slice, got shape {self.data.shape}")
        self.spacing = three_spacings(self.spacing)
        self.modality = normalize_modality(self.modality)
        self.source = Path(self.source)
        if self.affine is not None:
            self.affine = np.asarray(self.affine, dtype=np.float64)
            if self.affine.shape != (4, 4):
                raise ValueError(f"affine must be 4x4, got shape {self.affine.shape}")


def three_spacings(values: Iterable[float]) -> tuple[float, float, float]:
    """(z, y, x) spacing in mm as three positive floats, or a ValueError saying what it got."""
    spacing = tuple(float(s) for s in values)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (z, y, x) in mm, got {spacing}")
    return spacing[0], spacing[1], spacing[2]


def normalize_modality(value: str) -> str:
    """One of MODALITIES, whatever the case the caller wrote it in."""
    for name in MODALITIES:
        if value.lower() == name.lower():
            return name
    raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {value!r}")


def as_stack(array: np.ndarray) -> np.ndarray:
    """A (Z, Y, X) view of a 2-D image (Z = 1) or 3-D stack: the one shape the engine works on."""
    if array.ndim == 2:
        return array[None]
    if array.ndim != 3:
        raise ValueError(f"expected a 2-D image or a 3-D stack of slices, got an array of shape {array.shape}")
    return array
