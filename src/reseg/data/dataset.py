"""Training sets on disk: a folder with `images/`, `labels/` (same file names) and an optional `dataset.json`.

Files may be single slices (PNG/TIFF) or volumes (TIFF stacks, NIfTI); every slice of a volume is a sample.
Scans are kept whole so that train/validation splits are made by scan, never by slice: dataset.json items
that name the same "scan" (the slices `reseg export` writes one file each) are stacked into one scan.
Each folder's "ignore_index" is mapped to IGNORE_INDEX, so folders with different conventions mix.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reseg.classes import CT_CLASSES, IGNORE_INDEX, OCT_CLASSES, SegmentationClass
from reseg.data.manifest import DATASET_FILE, DATASET_FORMAT, read_manifest
from reseg.errors import InputError, OutputError
from reseg.io import Volume, read_volume, write_image, write_labels
from reseg.io._atomic import output_error
from reseg.io._staged import StagedFolder, recover


@dataclass
class Scan:
    """One scan's slices (Z, H, W) and labels; `name` identifies the scan for splitting."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    spacing_known: bool = True  # False when the files did not record the in-plane spacing
    folder: str = ""  # the training-set folder it was read from
    slice_spacing_known: bool = False  # True when the file also recorded the spacing between slices

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        """In-plane (y, x) spacing in mm, None when unknown (then no resampling may rely on it)."""
        return (self.spacing[1], self.spacing[2]) if self.spacing_known else None

    @property
    def voxel_spacing(self) -> tuple[float, float, float] | None:
        """(z, y, x) spacing in mm when all three are known (what organ volumes are measured in)."""
        return self.spacing if self.spacing_known and self.slice_spacing_known else None


@dataclass
class TrainingSet:
    scans: list[Scan]
    classes: list[SegmentationClass] | None = None
    modality: str = "unknown"
    ignore_index: int = IGNORE_INDEX
    sources: list[dict[str, str]] = field(default_factory=list)  # folder + its dataset.json "source", per folder
    # Partial labels: label value -> the classes it allows (dataset.json "label_sets"), e.g. "not fluid".
    label_sets: dict[int, list[int]] = field(default_factory=dict)

    @property
    def num_slices(self) -> int:
        return sum(len(scan.image) for scan in self.scans)


def _file_stem(path: Path) -> str:
    return path.name.removesuffix(".gz").rsplit(".", 1)[0]


def _pairs_from_manifest(folder: Path, manifest: dict[str, Any]) -> list[tuple[Path, Path, str]]:
    """(image, label, scan name) per item; an item without a "scan" is a scan of its own."""
    return [
        (folder / item["image"], folder / item["label"], item.get("scan") or _file_stem(Path(item["image"])))
        for item in manifest.get("items", [])
    ]


def _pairs_by_name(folder: Path) -> list[tuple[Path, Path, str]]:
    images_dir, labels_dir = folder / "images", folder / "labels"
    if not images_dir.is_dir() or not labels_dir.is_dir():
        raise InputError(folder, "is not a training set: expected the sub-folders images/ and labels/")
    pairs = []
    for image in sorted(p for p in images_dir.iterdir() if not p.name.startswith(".")):
        label = labels_dir / image.name
        if not label.exists():
            raise InputError(image, f"has no label file {label.relative_to(folder)}")
        pairs.append((image, label, _file_stem(image)))
    return pairs


def load_training_set(folders: Sequence[str | Path]) -> TrainingSet:
    """Read one or more training-set folders into memory; their classes and modality must agree."""
    scans: list[Scan] = []
    classes: list[SegmentationClass] | None = None
    modality = "unknown"
    sources = []
    label_sets: dict[int, list[int]] = {}
    for folder in map(Path, folders):
        manifest = read_manifest(folder)
        sources.append({"folder": str(folder.resolve()), "source": str(manifest.get("source", "unknown"))})
        pairs = _pairs_from_manifest(folder, manifest) if manifest.get("items") else _pairs_by_name(folder)
        if not pairs:
            raise InputError(folder, "contains no image/label pairs")
        if "classes" in manifest:
            folder_classes = [SegmentationClass.from_dict(c) for c in manifest["classes"]]
            if classes is not None and [c.name for c in classes] != [c.name for c in folder_classes]:
                raise InputError(folder, "its classes differ from those of the other training sets")
            classes = folder_classes
        modality = manifest.get("modality", modality)
        ignore_index = int(manifest.get("ignore_index", IGNORE_INDEX))
        for value, allowed in manifest.get("label_sets", {}).items():
            if label_sets.get(int(value), allowed) != allowed:
                raise InputError(
                    folder / DATASET_FILE,
                    f"label value {value} means {allowed} here but {label_sets[int(value)]} in another training set",
                )
            label_sets[int(value)] = [int(k) for k in allowed]
        pieces: dict[str, list[Scan]] = {}
        for image_path, label_path, scan_name in pairs:
            image, labels = read_volume(image_path), read_volume(label_path)
            if image.data.shape != labels.data.shape:
                raise InputError(
                    label_path, f"has shape {labels.data.shape} but its image {image_path.name} has {image.data.shape}"
                )
            label_data = labels.data.astype(np.uint8)
            if ignore_index != IGNORE_INDEX:
                label_data[labels.data == ignore_index] = IGNORE_INDEX
            name = f"{folder.name}/{scan_name}"
            pieces.setdefault(name, []).append(
                Scan(
                    name,
                    image.data,
                    label_data,
                    image.spacing,
                    image.pixel_spacing is not None,
                    str(folder),
                    image.voxel_spacing is not None,
                )
            )
        scans.extend(_stack(folder, parts) for parts in pieces.values())
    return TrainingSet(scans, classes, modality, IGNORE_INDEX, sources, label_sets)


def _stack(folder: Path, parts: list[Scan]) -> Scan:
    """One scan from the files that hold its slices, which must share their size."""
    if len(parts) == 1:
        return parts[0]
    sizes = {part.image.shape[1:] for part in parts}
    if len(sizes) > 1:
        raise InputError(folder, f"the slices of scan {parts[0].name} differ in size ({sorted(sizes)})")
    return Scan(
        parts[0].name,
        np.concatenate([p.image for p in parts]),
        np.concatenate([p.labels for p in parts]),
        parts[0].spacing,
        parts[0].spacing_known,
        parts[0].folder,
        False,  # 2-D files stacked: the spacing between them is nowhere recorded
    )


def split_by_scan(scans: list[Scan], validation_fraction: float, seed: int = 0) -> tuple[list[Scan], list[Scan]]:
    """Hold out a fixed share of whole scans (at least one when there are two or more) for validation."""
    if not 0 <= validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    order = sorted(scans, key=lambda scan: scan.name)
    random.Random(seed).shuffle(order)
    count = round(len(order) * validation_fraction)
    if validation_fraction > 0 and len(order) > 1:
        count = min(max(count, 1), len(order) - 1)
    return order[count:], order[:count]


def write_training_set(
    folder: str | Path,
    scans: Iterable[tuple[str, np.ndarray, np.ndarray, tuple[float, float, float]]],
    modality: str,
    source: str,
    classes: Sequence[SegmentationClass] | None = None,
    label_sets: dict[int, list[int]] | None = None,
) -> Path:
    """Write (name, image, labels, spacing) scans as TIFF stacks under images/ and labels/ plus dataset.json.

    `label_sets` declares partial label values (value -> the classes it allows), see `TrainingSet`.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is a file; a training set needs a folder")
    recover(folder)  # a write killed here before: roll it back
    if folder.exists() and any(folder.iterdir()):
        raise InputError(folder, "already exists and is not empty; choose a new folder")
    classes = list(classes or (CT_CLASSES if modality == "CT" else OCT_CLASSES))
    # Every file lands together or not at all (`StagedFolder`): a scan that cannot be made, a full disk or a
    # kill leaves no half-written training set behind.
    try:
        with StagedFolder(folder) as staged:
            items = []
            for name, image, labels, spacing in scans:
                volume = Volume(
                    np.asarray(image), spacing=spacing, modality=modality, metadata={"spacing_known": (True,) * 3}
                )
                write_image(staged.path(f"images/{name}.tif"), volume)
                write_labels(staged.path(f"labels/{name}.tif"), labels, like=volume)
                items.append({"image": f"images/{name}.tif", "label": f"labels/{name}.tif", "spacing": list(spacing)})
            manifest = {
                "format": DATASET_FORMAT,
                "version": 1,
                "modality": modality,
                "source": source,
                "classes": [c.to_dict() for c in classes],
                "ignore_index": IGNORE_INDEX,
                "items": items,
            }
            if label_sets:
                manifest["label_sets"] = {str(value): sorted(allowed) for value, allowed in label_sets.items()}
            staged.path(DATASET_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
            staged.commit()
    except OutputError as error:  # a full disk: one line naming the folder
        raise OutputError(folder, error.problem) from None
    except OSError as error:
        raise output_error(folder, error) from error
    return folder
