"""What napari-reseg knows about a layer: one typed record in `layer.metadata["reseg"]`, read and written only
through the helpers here.

napari hands a plugin widget a viewer proxy whose layers are fresh proxy objects on every lookup, so widgets
never compare layers by identity: a scan is known by `ScanRecord.key` (its resolved file path, or an id given
to an array that came from no file), and its labels layer by the scan key it records. The records hold no
layer objects, only what widgets share about the layer (the scan's pixel-free geometry, the model's card and
prediction, the review session).
"""

from __future__ import annotations

import copy
import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

import numpy as np
from napari.layers import Image, Labels, Layer

from reseg.classes import SegmentationClass

if TYPE_CHECKING:
    from reseg.io import Volume
    from reseg.review.session import Session
    from reseg.zoo.cards import ModelCard

METADATA_KEY = "reseg"
T = TypeVar("T")
# Intensities below this occur only in Hounsfield units (the engine's rule, reseg.io), so the layer is CT.
_HU_MIN = -500


@dataclass(frozen=True)
class ScanRecord:
    """An image layer as a scan: its identity, modality and the geometry the engine and the writer need."""

    key: str
    modality: str
    geometry: Volume  # pixel-free (zero-stride) Volume: true spacing, affine, orientation, 2-D/3-D on disk
    from_file: bool

    @property
    def source(self) -> Path:
        return self.geometry.source

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        """In-plane (y, x) spacing in mm when the file recorded it: what models trained at a spacing need."""
        return self.geometry.pixel_spacing


@dataclass
class LabelsRecord:
    """A labels layer of a scan: classes, the scan's geometry, and what the model and the review added."""

    scan_key: str
    classes: tuple[SegmentationClass, ...]
    geometry: Volume  # the scan's pixel-free geometry, so that saving puts the labels back in register
    modality: str = "unknown"
    reference: bool = False  # ground truth or a copy kept for comparison: never the target of a run
    card: ModelCard | None = None  # the model of the last run
    prediction: np.ndarray | None = None  # uint8 (Z, Y, X): the labels as the last run left them
    slice_confidence: np.ndarray | None = None  # float32 (Z,): the model's mean confidence per slice
    session: Session | None = None

    @property
    def reviewable(self) -> bool:
        return self.session is not None or self.prediction is not None

    def __deepcopy__(self, memo: dict) -> LabelsRecord:
        """napari duplicates a layer by deep-copying its metadata: the copy is a reference for comparison,
        neither the scan's run target nor part of its review."""
        return dataclasses.replace(
            self,
            classes=tuple(self.classes),
            reference=True,
            prediction=None,
            slice_confidence=None,
            session=None,
            geometry=copy.copy(self.geometry),
        )


def pixel_free(volume: Volume) -> Volume:
    """The volume without its pixels (a zero-stride view of its shape): all a layer needs to keep of it."""
    return dataclasses.replace(volume, data=np.broadcast_to(np.uint8(0), volume.data.shape))


def scan_record_for_volume(volume: Volume) -> ScanRecord:
    """The record of a scan read from a file (by `reseg.io`)."""
    return ScanRecord(
        key=str(volume.source.resolve()),
        modality=volume.modality,
        geometry=pixel_free(volume),
        from_file=volume.source.exists(),
    )


def scan_record(layer: Image) -> ScanRecord:
    """The layer's scan record; an image layer from elsewhere (a script, another plugin) gets one on first
    use: a new id, the modality from its values, its scale as an unknown spacing."""
    record = layer.metadata.get(METADATA_KEY)
    if isinstance(record, ScanRecord):
        return record
    from reseg.io import Volume, three_spacings

    data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
    shape = (1, *data.shape) if data.ndim == 2 else data.shape
    modality = "CT" if data.dtype.kind in "if" and data.size and data.min() < _HU_MIN else "unknown"
    spacing = ((1.0,) * 3 + tuple(float(s) for s in layer.scale))[-3:]
    geometry = Volume(
        np.broadcast_to(np.uint8(0), shape),
        three_spacings(abs(s) for s in spacing),
        modality,
        Path(f"<{layer.name}>"),
        ndim_on_disk=2 if layer.ndim == 2 else 3,
        metadata={"spacing_known": (False, False, False)},
    )
    record = ScanRecord(key=f"array:{uuid.uuid4().hex}", modality=modality, geometry=geometry, from_file=False)
    set_record(layer, record)
    return record


def labels_record(layer: Labels) -> LabelsRecord | None:
    record = layer.metadata.get(METADATA_KEY)
    return record if isinstance(record, LabelsRecord) else None


def set_record(layer: Layer, record: ScanRecord | LabelsRecord | DerivedImageRecord) -> None:
    """Store the record by assigning the metadata, so napari announces it (`layer.events.metadata`): a widget
    following a layer learns that a run finished or a session started."""
    layer.metadata = {**layer.metadata, METADATA_KEY: record}


def is_scan(layer: object) -> bool:
    """An image layer one can segment: greyscale, 2-D or 3-D, and not a map made by this plugin (doubt)."""
    return (
        isinstance(layer, Image)
        and not layer.rgb
        and layer.ndim in (2, 3)
        and not isinstance(layer.metadata.get(METADATA_KEY), DerivedImageRecord)
    )


@dataclass(frozen=True)
class DerivedImageRecord:
    """A layer this plugin computed from a scan (the model's confidence, the boundary lines): shown, never
    segmented."""

    scan_key: str
    kind: str


def find_scan(layers: Iterable[object], key: str) -> Image | None:
    return next(
        (
            layer
            for layer in layers
            if isinstance(layer, Image)
            and isinstance(layer.metadata.get(METADATA_KEY), ScanRecord)
            and layer.metadata[METADATA_KEY].key == key
        ),
        None,
    )


def find_run_target(layers: Iterable[object], scan_key: str, classes: Iterable[SegmentationClass]) -> Labels | None:
    """The labels layer a run on the scan writes to: the scan's own (not a reference) with the same classes."""
    names = [c.name for c in classes]
    for layer in layers:
        record = labels_record(layer) if isinstance(layer, Labels) else None
        if (
            record
            and not record.reference
            and record.scan_key == scan_key
            and [c.name for c in record.classes] == names
        ):
            return layer
    return None


@overload
def find_derived(layers: Iterable[object], scan_key: str, kind: str) -> Image | None: ...
@overload
def find_derived(layers: Iterable[object], scan_key: str, kind: str, layer_type: type[T]) -> T | None: ...
def find_derived(layers: Iterable[object], scan_key: str, kind: str, layer_type: type = Image) -> Any:
    """The layer of `layer_type` this plugin derived from the scan as `kind` (a confidence map, boundary lines)."""
    wanted = DerivedImageRecord(scan_key, kind)
    return next(
        (
            layer
            for layer in layers
            if isinstance(layer, layer_type) and getattr(layer, "metadata", {}).get(METADATA_KEY) == wanted
        ),
        None,
    )


def labels_identity(record: LabelsRecord) -> str:
    """A labels layer's stable identity: its scan and classes (layer objects differ on every lookup)."""
    return f"{record.scan_key}|{','.join(c.name for c in record.classes)}"


def reviewable_labels(layer: object) -> LabelsRecord | None:
    """The record of a labels layer a grader reviews and corrects: a model's output or a session's labels,
    not a reference copy."""
    record = labels_record(layer) if isinstance(layer, Labels) else None
    return record if record is not None and record.reviewable and not record.reference else None


def find_labels(layers: Iterable[object], identity: str | None) -> Labels | None:
    """The reviewable labels layer with this identity (`labels_identity`), looked up afresh."""
    return next(
        (
            layer
            for layer in layers
            if (record := reviewable_labels(layer)) is not None and labels_identity(record) == identity
        ),
        None,
    )
