"""Export a review session's slices for retraining, in our training-set format or nnU-Net v2's raw format.

The point is a training set that says exactly what was checked: only reviewed slices go out by default,
each with its provenance (scan and its sha256, slice index, spacing, review status, reviewer and time, the
model that made the prediction and how much the grader changed it). Unreviewed slices can be added with
every label pixel set to the ignore value, so that losses and metrics skip them.

Our format (`reseg train` reads it): `images/<scan stem>_s<slice:04d>.tif` and the same name under
`labels/`, 2-D TIFFs with the spacing, and `dataset.json` = {"format": "reseg-dataset", "version": 1,
"modality", "source", "classes" (index, name, colour), "ignore_index": 255, "items": [{"image", "label",
"scan", "source", "source_sha256", "slice", "spacing", "status", "reviewer", "reviewed_at", "exported_at",
"model": {"name", "weights_sha256"}, "edit_statistics"}]}. Items with the same "scan" are one scan for
train/validation splits.

OCT layer sessions (the classes of `reseg.classes.OCT_CLASSES`) also get, per exported B-scan,
`boundaries/<scan stem>_s<slice:04d>.json`, named by the item's "boundaries": the 8 boundaries
(`OCT_BOUNDARIES`) of each A-scan as the row from the top of the first pixel below them, derived from the
exported labels by `reseg.evaluation.evaluate.boundary_rows` (null where an A-scan has none), in the JSON of
`reseg export --format boundaries` with shape [1, W] (`reseg.io.write_boundaries`): "boundaries", "shape",
"axial_spacing_mm" (null when the scan did not record it), "source", "source_sha256", "slice", "image", "label"
(the item's files), "model", "from", "review_status": [status], "heights": {name: [[W rows]]}. One small file per
B-scan, beside its image and labels, so a layer-regression trainer reads the item's image and target heights without
the label map, and a re-export replaces one B-scan's file like its image. An unreviewed slice (exported only on
request, labels all ignore) gets its file too, every height null and its status "unreviewed": the heights are always
those of the exported labels, so a trainer masks them as the segmentation loss masks ignore pixels, and the model's
unchecked boundaries never pass for a target. CT sessions have no boundaries. Manifests without the key (older
exports, CT) stay valid and readers pass over keys they do not use, so the version stays 1.

nnU-Net v2 (documentation/dataset_format.md): `DatasetNNN_Name/imagesTr/<case>_0000.nii.gz` and
`labelsTr/<case>.nii.gz`, one case per slice, written as 2-D NIfTI with the in-plane spacing (nnU-Net reads
2-D files natively with SimpleITKIO, named in dataset.json because NibabelIO takes only 3-D files), and
dataset.json with channel_names, labels (class name -> index, "ignore" -> number of classes, since nnU-Net
wants the ignore label to be the highest), numTraining, file_ending; our item list is kept under "reseg".
OCT boundaries go to `DatasetNNN_Name/boundaries/<case>.json` as above, outside imagesTr/labelsTr, which are
all nnU-Net reads, so one export serves a segmentation and a layer-regression trainer.

Both: exporting the same scan again adds new slices and replaces re-exported ones (key: scan sha256 + slice
index), never duplicates. A folder that is not such an export, a different export (other classes or
modality), or a file name taken by another scan is refused unless `overwrite=True`; with it the export
replaces what it clashes with, and the image/label/boundaries folders end up holding exactly what
dataset.json lists.
All files of an export land together or not at all (`reseg.io._staged`): an export killed or stopped by a
full disk leaves the folder as it was, or, killed after every file was complete, is finished by the next
export there. Every path written is inside the folder, whatever an existing dataset.json lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg.classes import IGNORE_INDEX, OCT_BOUNDARIES, OCT_CLASSES
from reseg.data.manifest import DATASET_FILE, DATASET_FORMAT, read_manifest
from reseg.errors import ExportClash, InputError, OutputError, ResegError
from reseg.evaluation.evaluate import boundary_rows
from reseg.io import Volume, extension, read_volume, write_boundaries, write_image, write_labels
from reseg.io._atomic import output_error
from reseg.io._staged import StagedFolder, recover
from reseg.review.edits import slice_edit_statistics
from reseg.review.session import Session, scan_sha256
from reseg.review.state import SliceStatus, now_iso

NNUNET_FORMAT = "reseg-nnunet"
NNUNET_READER = "SimpleITKIO"
_DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
BOUNDARY_FILE = "boundaries/{case}.json"  # every format's, for OCT layer sessions


@dataclass
class ExportResult:
    """What an export did: the dataset folder, the slices it added or replaced, and the dataset's size after."""

    folder: Path
    added: list[int]
    updated: list[int]
    total: int


@dataclass
class _Case:
    index: int
    item: dict[str, Any]  # the dataset.json entry
    labels: np.ndarray  # (Y, X) as exported: the corrections, or all IGNORE_INDEX for an unreviewed slice


@dataclass(frozen=True)
class _Layout:
    """What sets one export format apart; `_export` does the rest the same way for every format."""

    image_file: str  # path of a case's image inside the folder, with {case} = <scan stem>_s<slice:04d>
    label_file: str
    mismatch: Callable[[dict[str, Any]], str | None]  # why a folder's dataset.json is not this kind of export
    items_of: Callable[[dict[str, Any]], list[dict[str, Any]]]  # the item list inside an existing dataset.json
    manifest: Callable[[dict[str, Any], list[dict[str, Any]]], dict[str, Any]]  # dataset.json after the export
    remap: Callable[[np.ndarray], np.ndarray]  # exported labels (ignore = IGNORE_INDEX) to the format's values

    def names(self, stem: str, index: int, boundaries: bool) -> tuple[str, str, str | None]:
        """A case's image, label and (for an OCT layer session, else None) boundaries file."""
        case = f"{stem}_s{index:04d}"
        boundary_name = BOUNDARY_FILE.format(case=case) if boundaries else None
        return self.image_file.format(case=case), self.label_file.format(case=case), boundary_name

    @property
    def subfolders(self) -> tuple[str, str, str]:
        """Every folder whose files an export owns, boundaries too: an overwrite by a CT export clears them."""
        return self.image_file.split("/")[0], self.label_file.split("/")[0], BOUNDARY_FILE.split("/")[0]


def export_training_set(
    session: Session,
    folder: str | Path,
    *,
    volume: Volume | None = None,
    include_unreviewed: bool = False,
    overwrite: bool = False,
) -> ExportResult:
    """Export to our training-set format in `folder` (created, or added to if it is an export of ours).

    `volume` is the scan's image; without it the session's source file is read (and must be unchanged).
    """
    names = [c.name for c in session.classes]

    def mismatch(manifest: dict[str, Any]) -> str | None:
        if manifest.get("format") != DATASET_FORMAT:
            return f"is not empty and holds no reseg training set ({DATASET_FILE} with format '{DATASET_FORMAT}')"
        if [c["name"] for c in manifest.get("classes", [])] != names:
            return "holds a training set with other classes"
        if manifest.get("modality") != session.modality:
            return f"holds a {manifest.get('modality')} training set, this session is {session.modality}"
        if int(manifest.get("ignore_index", IGNORE_INDEX)) != IGNORE_INDEX:
            return f"holds a training set whose ignore value is {manifest['ignore_index']}, not {IGNORE_INDEX}"
        return None

    def manifest(previous: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **previous,
            "format": DATASET_FORMAT,
            "version": 1,
            "modality": session.modality,
            "source": "reseg export",
            "classes": [c.to_dict() for c in session.classes],
            "ignore_index": IGNORE_INDEX,
            "items": items,
        }

    layout = _Layout(
        "images/{case}.tif",
        "labels/{case}.tif",
        mismatch,
        items_of=lambda previous: previous.get("items", []),
        manifest=manifest,
        remap=lambda labels: labels,
    )
    return _export(session, Path(folder), layout, volume, include_unreviewed, overwrite)


def export_nnunet(
    session: Session,
    raw_folder: str | Path,
    dataset_id: int,
    dataset_name: str,
    *,
    volume: Volume | None = None,
    include_unreviewed: bool = False,
    overwrite: bool = False,
) -> ExportResult:
    """Export to `raw_folder/DatasetNNN_Name` in nnU-Net v2's raw format, unreviewed pixels as its ignore label."""
    if not 1 <= dataset_id <= 999:
        raise ResegError(f"nnU-Net dataset ids are 1..999, got {dataset_id}")
    if not _DATASET_NAME.fullmatch(dataset_name):
        raise ResegError(f"nnU-Net dataset name {dataset_name!r} must be letters, digits, '_' or '-'")
    num_classes = session.num_classes
    if [c.index for c in session.classes] != list(range(num_classes)) or "ignore" in {c.name for c in session.classes}:
        raise InputError(session.source, "nnU-Net needs classes numbered 0, 1, 2, ... and none named 'ignore'")
    raw = Path(raw_folder)
    folder = raw / f"Dataset{dataset_id:03d}_{dataset_name}"
    namesakes = sorted(p.name for p in raw.glob(f"Dataset{dataset_id:03d}_*") if p != folder) if raw.is_dir() else []
    if namesakes:
        raise InputError(
            raw,
            f"already holds {namesakes[0]} with dataset id {dataset_id}; nnU-Net finds datasets "
            "by id, so choose another id",
        )
    labels = {c.name: c.index for c in session.classes} | {"ignore": num_classes}
    channels = {"0": session.modality}

    def mismatch(manifest: dict[str, Any]) -> str | None:
        ours = manifest.get("reseg")
        if not isinstance(ours, dict) or ours.get("format") != NNUNET_FORMAT:
            return "is not empty and holds no nnU-Net dataset exported by reseg"
        if manifest.get("labels") != labels:
            return f"holds an nnU-Net dataset with other labels ({manifest.get('labels')})"
        if manifest.get("channel_names") != channels:
            return f"holds an nnU-Net dataset with other channels ({manifest.get('channel_names')})"
        return None

    def manifest(previous: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            **previous,
            "channel_names": channels,
            "labels": labels,
            "numTraining": len(items),
            "file_ending": ".nii.gz",
            "overwrite_image_reader_writer": NNUNET_READER,
            "name": dataset_name,
            "description": "corrected slices exported by napari-reseg; 'ignore' marks unreviewed pixels",
            "reseg": {
                "format": NNUNET_FORMAT,
                "version": 1,
                "classes": [c.to_dict() for c in session.classes],
                "items": items,
            },
        }

    layout = _Layout(
        "imagesTr/{case}_0000.nii.gz",
        "labelsTr/{case}.nii.gz",
        mismatch,
        items_of=lambda previous: previous.get("reseg", {}).get("items", []),
        manifest=manifest,
        remap=lambda labels: np.where(labels == IGNORE_INDEX, num_classes, labels).astype(np.uint8),
    )
    return _export(session, folder, layout, volume, include_unreviewed, overwrite)


def _export(
    session: Session, folder: Path, layout: _Layout, volume: Volume | None, include_unreviewed: bool, overwrite: bool
) -> ExportResult:
    """Every export, whatever its format: check the scan and the folder, plan every file, then write them all."""
    image = _scan_image(session, volume)
    previous = _previous_manifest(folder, layout.mismatch, overwrite)
    stem = _scan_stem(session.source)
    boundaries = [c.name for c in session.classes] == [c.name for c in OCT_CLASSES]
    items, cases, added, updated = _plan(
        folder,
        layout.items_of(previous),
        session,
        include_unreviewed,
        overwrite,
        lambda index: layout.names(stem, index, boundaries),
    )
    remove = _unlisted(folder, layout.subfolders, items) if overwrite else []
    _write_export(folder, image, session, cases, layout.manifest(previous, items), remove, layout.remap)
    return ExportResult(folder, added, updated, len(items))


def _scan_image(session: Session, volume: Volume | None) -> np.ndarray:
    """The scan's pixels, read from the session's source unless given; checked against the session."""
    if volume is None:
        if not session.source.exists():
            raise InputError(session.source, "the scan this session reviews is no longer there")
        if scan_sha256(session.source) != session.source_sha256:
            raise InputError(
                session.source,
                "has changed since the session was started (its sha256 differs), "
                "so the session's labels no longer fit it",
            )
        volume = read_volume(session.source)
    if volume.data.shape != session.labels.shape:
        raise InputError(
            volume.source, f"holds {volume.data.shape} pixels but the session's labels are {session.labels.shape}"
        )
    out_of_range = np.unique(session.labels[(session.labels >= session.num_classes) & (session.labels != IGNORE_INDEX)])
    if out_of_range.size:
        raise InputError(
            session.source,
            f"the session's labels hold values {out_of_range.tolist()} beyond its {session.num_classes} classes",
        )
    return volume.data


def _previous_manifest(
    folder: Path, mismatch: Callable[[dict[str, Any]], str | None], overwrite: bool
) -> dict[str, Any]:
    """The dataset.json of the export already in `folder` (kept, with any keys others added), {} for a new
    folder or one being overwritten, or a refusal to touch the folder."""
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is a file; the export needs a folder")
    recover(folder)  # an export killed here before: finish it or roll it back, whichever it had reached
    if not folder.exists() or not any(folder.iterdir()):
        return {}
    manifest = read_manifest(folder)
    problem = mismatch(manifest)
    if problem is None:
        return manifest
    if overwrite:
        return {}
    raise ExportClash(folder, f"{problem}; choose another folder, or overwrite (--overwrite) to replace it")


def _plan(
    folder: Path,
    existing: list[dict[str, Any]],
    session: Session,
    include_unreviewed: bool,
    overwrite: bool,
    names: Callable[[int], tuple[str, str, str | None]],
) -> tuple[list[dict[str, Any]], list[_Case], list[int], list[int]]:
    """Decide every file before writing any: the dataset's items after the export, the cases to write, and
    which slices are new or replace an earlier export of themselves. A clash raises before anything is written.
    """
    by_key = {(item.get("source_sha256"), item.get("slice")): item for item in existing}
    by_file = {name: item for item in existing for name in _files_of(item)}
    replaced: set[int] = set()
    cases, added, updated = [], [], []
    exported_at = now_iso()
    for index in _exported_slices(session, include_unreviewed):
        image_name, label_name, boundary_name = names(index)
        previous = by_key.get((session.source_sha256, index))
        if previous is not None:  # the same slice of the same scan: replace it under its earlier names
            image_name, label_name = previous["image"], previous["label"]
            boundary_name = previous.get("boundaries", boundary_name) if boundary_name else None
            replaced.add(id(previous))
            updated.append(index)
        else:
            added.append(index)
        for name in filter(None, (image_name, label_name, boundary_name)):
            other = by_file.get(name)
            if other is None or other is previous:
                continue
            if not overwrite:
                raise ExportClash(
                    folder / name,
                    f"already holds slice {other.get('slice')} of "
                    f"{other.get('source', 'another scan')}; overwrite "
                    "(--overwrite) to replace it",
                )
            replaced.add(id(other))
        reviewed = session.review.slices[index].status is SliceStatus.REVIEWED
        labels = session.labels[index] if reviewed else np.full_like(session.labels[index], IGNORE_INDEX)
        files = {"image": image_name, "label": label_name} | ({"boundaries": boundary_name} if boundary_name else {})
        cases.append(_Case(index, files | _provenance(session, index, exported_at), labels))
    items = [item for item in existing if id(item) not in replaced] + [case.item for case in cases]
    return sorted(items, key=lambda item: item["image"]), cases, added, updated


def _files_of(item: dict[str, Any]) -> list[str]:
    """The files a dataset.json item names: its image and label, and its boundaries where it has them."""
    return [item["image"], item["label"], *([item["boundaries"]] if item.get("boundaries") else [])]


def _exported_slices(session: Session, include_unreviewed: bool) -> list[int]:
    """Reviewed slices, plus unreviewed ones if asked; skipped slices never (the grader set them aside)."""
    wanted = {SliceStatus.REVIEWED} | ({SliceStatus.UNREVIEWED} if include_unreviewed else set())
    indices = [i for i, review in enumerate(session.review.slices) if review.status in wanted]
    if not indices:
        raise InputError(
            session.source,
            f"nothing to export: {session.review.progress_text()}; mark slices reviewed or include unreviewed ones",
        )
    return indices


def _provenance(session: Session, index: int, exported_at: str) -> dict[str, Any]:
    review = session.review.slices[index]
    statistics = (
        slice_edit_statistics(session.prediction[index], session.labels[index], session.num_classes)
        if review.status is SliceStatus.REVIEWED
        else None
    )
    return {
        "scan": _scan_stem(session.source),
        "source": str(session.source),
        "source_sha256": session.source_sha256,
        "slice": index,
        "spacing": list(session.spacing),
        "status": review.status.value,
        "reviewer": review.reviewer,
        "reviewed_at": review.timestamp,
        "exported_at": exported_at,
        "model": {"name": session.model_name, "weights_sha256": session.weights_sha256},
        "edit_statistics": statistics,
    }


def _scan_stem(source: Path) -> str:
    suffix = "" if source.is_dir() else extension(source)
    return source.name[: len(source.name) - len(suffix)] or source.name


def _slice_volume(image_slice: np.ndarray, session: Session) -> Volume:
    """One slice as a 2-D volume with the scan's spacing, so that the writers store the geometry."""
    return Volume(
        image_slice[None],
        spacing=session.spacing,
        modality=session.modality,
        source=session.source,
        ndim_on_disk=2,
        metadata={"spacing_known": (True, True, True)},
    )


def _write_export(
    folder: Path,
    image: np.ndarray,
    session: Session,
    cases: list[_Case],
    manifest: dict[str, Any],
    remove: list[str],
    remap: Callable[[np.ndarray], np.ndarray],
) -> None:
    """Write the cases' files and the manifest so that they land together or not at all (`StagedFolder`)."""
    try:
        with StagedFolder(folder) as staged:
            for case in cases:
                like = _slice_volume(image[case.index], session)
                write_image(staged.path(case.item["image"]), like)
                write_labels(staged.path(case.item["label"]), remap(case.labels)[None], like)
                if "boundaries" in case.item:
                    _write_case_boundaries(staged.path(case.item["boundaries"]), case, session)
            text = json.dumps(manifest, indent=2) + "\n"
            staged.path(DATASET_FILE).write_text(text, encoding="utf-8")
            staged.commit(remove)
    except OutputError as error:
        raise OutputError(folder, f"the export {error.problem}") from None
    except OSError as error:
        raise output_error(folder, error) from error


def _write_case_boundaries(path: Path, case: _Case, session: Session) -> None:
    """The B-scan's boundary heights as exported: those of its exported labels, with status and provenance."""
    item = case.item
    write_boundaries(
        path,
        boundary_rows(case.labels),
        OCT_BOUNDARIES,
        session.axial_spacing_mm,
        item["source"],
        {
            "source_sha256": item["source_sha256"],
            "slice": item["slice"],
            "image": item["image"],
            "label": item["label"],
            "model": item["model"]["name"],
            "from": "the exported labels (the grader's; all ignore for an unreviewed slice)",
        },
        {"review_status": [item["status"]]},
    )


def _unlisted(folder: Path, subfolders: tuple[str, ...], items: list[dict[str, Any]]) -> list[str]:
    """For an overwrite: the files of the export's folders that dataset.json will no longer list."""
    listed = {name for item in items for name in _files_of(item)}
    return [
        f"{subfolder}/{file.name}"
        for subfolder in subfolders
        if (folder / subfolder).is_dir()
        for file in (folder / subfolder).iterdir()
        if file.is_file() and f"{subfolder}/{file.name}" not in listed
    ]
