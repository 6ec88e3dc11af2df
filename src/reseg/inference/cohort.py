"""Segmenting a cohort: many scans with one model loaded once, resumable after a kill, shared across processes.

`reseg segment a.vol b.vol ... -o FOLDER` (or a folder of scans, or a glob) comes here. Each scan's labels are
written atomically to FOLDER/<scan>_labels.<ext>, then a small record beside them (<scan>_labels.json: the
summary row, with the model and the sha256 of its weights). A scan whose labels and record are both there,
from the same weights, is complete: a run started again after a kill skips it and redoes the one that was in
progress. A scan that cannot be read is recorded as failed with the file's message, and the others go on.

Under `torchrun` (or any launcher that sets RANK and WORLD_SIZE) each process takes every WORLD_SIZE-th scan
from its RANK on, on its own GPU (LOCAL_RANK) where there are GPUs; no process group is needed. Each rank
leaves its rows in a partial summary in FOLDER, and rank 0 merges them into summary.csv and summary.json.
torch is imported only to segment, so that inputs and outputs are checked in a fraction of a second.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reseg.classes import OCT_CLASSES
from reseg.errors import InputError, ResegError
from reseg.io import Volume, is_supported, open_volume, replace_atomically, write_labels
from reseg.io._common import extension, natural_key
from reseg.io._dicom import is_dicom_file
from reseg.io._formats import NIFTI_EXTENSIONS
from reseg.zoo.cards import sha256_of
from reseg.zoo.catalogue import modality_warning

if TYPE_CHECKING:
    from reseg.zoo.weights import LoadedModel

SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SEGMENTED, ALREADY_DONE, FAILED = "segmented", "already done", "failed"
_PARTIAL = ".summary-rank{rank}-of-{world}.json"
_GLOB_CHARACTERS = frozenset("*?[")
_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class Shard:
    """This process's share of a cohort: every `world_size`-th scan from `rank` on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_environment(cls) -> Shard:
        """The share `torchrun` gives this process (RANK, WORLD_SIZE, LOCAL_RANK); the whole cohort without them."""
        try:
            rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
            local = int(os.environ.get("LOCAL_RANK", "0"))
        except ValueError:
            raise ResegError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (as torchrun sets them)") from None
        if world < 1 or not 0 <= rank < world:
            raise ResegError(f"RANK {rank} is not one of the WORLD_SIZE {world} processes (0..{world - 1})")
        return cls(rank, world, local)

    def take(self, scans: Sequence[Path]) -> list[Path]:
        return list(scans[self.rank :: self.world_size])

    def device(self, choice: str) -> str:
        """The device this process runs on: its own GPU (LOCAL_RANK) when several share a machine's GPUs, taken
        in turn when there are more processes than GPUs."""
        import torch

        from reseg.devices import resolve_device

        device = resolve_device(choice)
        if self.world_size > 1 and device.type == "cuda" and device.index is None:
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return str(device)


@dataclass
class ScanRecord:
    """One scan's row of the summary. Volumes in mm3 and thickness in um are None where the scan does not
    record its voxel or pixel size."""

    input: str
    output: str
    status: str
    model: str
    weights_sha256: str
    device: str
    raw: bool = False
    seconds: float | None = None
    slices: int | None = None
    class_mm3: dict[str, float | None] = field(default_factory=dict)
    thickness_um: dict[str, float | None] = field(default_factory=dict)
    warning: str = ""
    error: str = ""


@dataclass(frozen=True)
class SlicesDone:
    """After each batch: slices segmented so far by this process, and the whole share's expected count (it is
    exact once every scan has been opened; until then unopened scans count as the mean of those opened)."""

    done: int
    total: int


@dataclass(frozen=True)
class ScanDone:
    record: ScanRecord


def cohort_scans(inputs: Sequence[str | Path], output_folder: Path) -> list[Path]:
    """The scans the inputs name, in order, each once: files, the scans in a folder (files a reader takes and
    folders of slices or DICOM files), and the matches of a glob the shell left unexpanded. The output folder
    and what is in it are never scans. A name that matches nothing is an InputError naming it."""
    scans: list[Path] = []
    seen: set[Path] = set()
    outputs = output_folder.resolve()
    for entry in inputs:
        for scan in _expand(Path(entry), str(entry), outputs):
            resolved = scan.resolve()
            if resolved not in seen and outputs not in (resolved, *resolved.parents):
                seen.add(resolved)
                scans.append(scan)
    if not scans:
        raise InputError(", ".join(map(str, inputs)), "holds no scans to segment")
    return scans


def _expand(path: Path, text: str, outputs: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        if path.resolve() == outputs:
            return []
        try:
            entries = sorted(path.iterdir(), key=lambda p: natural_key(p.name))
        except OSError as error:
            raise InputError(path, f"cannot list the folder ({error.strerror})") from None
        found = [e for e in entries if not e.name.startswith(".") and is_supported(e)]
        if not found:
            raise InputError(path, "folder holds no scans (files or folders a reader takes)")
        return found
    if _GLOB_CHARACTERS & set(text):
        matches = sorted(glob.glob(text), key=natural_key)
        if not matches:
            raise InputError(text, "matches no file or folder")
        return [Path(m) for m in matches]
    raise InputError(path, "no such file or folder")


def output_path(scan: Path, folder: Path) -> Path:
    """Where a scan's labels go: `<name>_labels.nii.gz` for NIfTI and DICOM (they keep the scan's affine),
    `<name>_labels.tif` for the rest."""
    name = "" if scan.is_dir() else extension(scan)
    stem = scan.name[: len(scan.name) - len(name)]
    dicom = name == ".dcm" or (scan.is_dir() and any(is_dicom_file(f) for f in scan.iterdir()))
    suffix = ".nii.gz" if name in NIFTI_EXTENSIONS or dicom else ".tif"
    return folder / f"{stem}_labels{suffix}"


def record_path(output: Path) -> Path:
    """The record beside a scan's labels that says they are complete and how they were made."""
    name = output.name
    return output.with_name(name[: len(name) - len(extension(output))] + ".json")


def check_outputs(scans: Sequence[Path], folder: Path) -> list[Path]:
    """Each scan's output path; two scans whose outputs would share a name are refused before any work."""
    outputs: dict[Path, Path] = {}
    for scan in scans:
        output = output_path(scan, folder)
        if output in outputs:
            raise InputError(scan, f"would write {output.name}, as {outputs[output]} would; rename one of them")
        outputs[output] = scan
    return list(outputs)


@dataclass(frozen=True)
class Cohort:
    """Scans to segment into `folder` with one model, and this process's share of them."""

    model: LoadedModel
    scans: tuple[Path, ...]
    folder: Path
    shard: Shard
    weights_sha256: str  # of the weights file itself: a borrowed card's hash would not tell two checkpoints apart

    @classmethod
    def of(cls, model: LoadedModel, scans: Sequence[Path], folder: Path, shard: Shard = Shard()) -> Cohort:
        """Refuses, before any work, scans whose outputs would share a name."""
        check_outputs(scans, folder)
        return cls(model, tuple(scans), folder, shard, sha256_of(model.weights_path))

    def run(self, *, batch_size: int | None = None, raw: bool = False) -> Iterator[SlicesDone | ScanDone]:
        """Segment this process's share, skipping complete scans; yield progress after each batch and the
        record of each scan. A scan that fails with a ResegError (an unreadable file) is recorded as failed
        and the next one is taken."""
        from reseg.inference.segmentation import iter_segment  # torch: here, after the inputs have been checked

        model, mine = self.model, self.shard.take(self.scans)
        done, opened = 0, []
        for position, scan in enumerate(mine):
            output = output_path(scan, self.folder)
            previous = completed_record(output, model.card.name, self.weights_sha256, raw)
            if previous is not None:
                yield ScanDone(replace(previous, status=ALREADY_DONE))
                continue
            started = time.perf_counter()
            device = str(model.device)
            base = ScanRecord(str(scan), str(output), FAILED, model.card.name, self.weights_sha256, device, raw)
            try:
                volume = _scan_volume(scan)
                slices, remaining = len(volume.data), len(mine) - position - 1
                opened.append(slices)
                labels = np.zeros(volume.data.shape, np.uint8)
                for progress in iter_segment(
                    model,
                    volume.data,
                    labels,
                    batch_size=batch_size,
                    pixel_spacing=volume.pixel_spacing,
                    raw=raw,
                    voxel_spacing=volume.voxel_spacing,
                ):
                    expected = done + slices + round(remaining * float(np.mean(opened)))
                    yield SlicesDone(done + min(progress.done, slices), expected)
                done += slices
                write_labels(output, labels, like=volume, classes=model.card.classes)
                record = replace(
                    base,
                    status=SEGMENTED,
                    seconds=round(time.perf_counter() - started, 3),
                    slices=slices,
                    class_mm3=class_volumes(model, labels, volume),
                    thickness_um=_thickness(model, labels, volume),
                    warning=modality_warning(model.card, volume.modality, scan.name) or "",
                )
                _write_json(record_path(output), asdict(record))
            except ResegError as error:
                record = replace(base, seconds=round(time.perf_counter() - started, 3), error=str(error))
            yield ScanDone(record)

    def finish(self, records: list[ScanRecord], wait_seconds: float) -> list[ScanRecord] | None:
        """Rank 0: the summary of every scan (its own rows and the other ranks' partial summaries, waited for
        up to `wait_seconds`), written as summary.csv and summary.json; other ranks leave their partial."""
        shard, folder = self.shard, self.folder
        key = {
            "scans": [str(scan) for scan in self.scans],
            "world_size": shard.world_size,
            "run": os.environ.get("TORCHELASTIC_RUN_ID", ""),  # one per torchrun launch
            "model": [self.model.card.name, self.weights_sha256],
        }
        if shard.rank != 0:
            partial = {"key": key, "rows": [asdict(row) for row in records]}
            _write_json(folder / _PARTIAL.format(rank=shard.rank, world=shard.world_size), partial)
            return None
        rows = list(records)
        waiting = {r: folder / _PARTIAL.format(rank=r, world=shard.world_size) for r in range(1, shard.world_size)}
        merged = list(waiting.values())
        deadline = time.monotonic() + wait_seconds
        while waiting:
            for rank, path in list(waiting.items()):
                partial_rows = _read_partial(path, key)
                if partial_rows is not None:
                    rows += partial_rows
                    del waiting[rank]
            if waiting and time.monotonic() > deadline:
                raise ResegError(
                    f"rank 0 waited {wait_seconds:g} s for the summaries of rank(s) {', '.join(map(str, waiting))} "
                    f"({', '.join(p.name for p in waiting.values())} in {folder}) and wrote none; their labels "
                    "stay: run the same command again (complete scans are skipped) to write the summary"
                )
            if waiting:
                time.sleep(_POLL_SECONDS)
        order = {str(scan): index for index, scan in enumerate(self.scans)}
        rows.sort(key=lambda row: order.get(row.input, len(order)))
        write_summary(folder, rows)
        for path in merged:
            path.unlink(missing_ok=True)
        return rows


def _scan_volume(scan: Path) -> Volume:
    volume = open_volume(scan)
    if volume.label_classes is not None:
        raise InputError(scan, "is a label map written by napari-reseg (it records its classes), not a scan to segment")
    return volume


def completed_record(output: Path, model: str, weights: str, raw: bool) -> ScanRecord | None:
    """The record of labels already made by these weights (with `raw` as asked), if they and it are there."""
    try:
        data = json.loads(record_path(output).read_text(encoding="utf-8"))
        record = ScanRecord(**data)
    except (OSError, ValueError, TypeError):
        return None  # no record (a run killed before it), or one of another version: the scan is done again
    same = record.status == SEGMENTED and record.model == model and record.weights_sha256 == weights
    return record if same and data.get("raw", False) == raw and output.is_file() else None


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Voxels per class value, slice by slice: a whole-stack bincount would copy the labels to int64 first."""
    counts = np.zeros(max(num_classes, 256), np.int64)
    for plane in labels.reshape(-1, *labels.shape[-2:]):
        counts += np.bincount(plane.ravel(), minlength=len(counts))
    return counts[:num_classes]


def class_volumes(model: LoadedModel, labels: np.ndarray, volume: Volume) -> dict[str, float | None]:
    """Each class's volume in mm3, None for every class when the scan does not record its voxel size."""
    counts = label_counts(labels, model.card.num_classes)
    voxel = float(np.prod(volume.voxel_spacing)) if volume.voxel_spacing is not None else None
    return {c.name: (round(float(counts[c.index]) * voxel, 3) if voxel else None) for c in model.card.classes}


def _thickness(model: LoadedModel, labels: np.ndarray, volume: Volume) -> dict[str, float | None]:
    """OCT: each layer's mean thickness over all A-scans, as `reseg measure` measures it (needs the pixel size)."""
    if [c.name for c in model.card.classes] != [c.name for c in OCT_CLASSES] or volume.pixel_spacing is None:
        return {}
    from reseg.measurement.report import measure

    result = measure(volume, labels, model.card.name)
    means = {}
    for layer in result.layers:
        counts = np.array([row["a_scans"][layer] for row in result.bscans], np.float64)
        values = np.array([row["mean_um"][layer] or 0.0 for row in result.bscans], np.float64)
        means[layer] = round(float((counts * values).sum() / counts.sum()), 2) if counts.sum() else None
    return means


def _read_partial(path: Path, key: dict[str, Any]) -> list[ScanRecord] | None:
    """A partial summary's rows, if it is there and from this run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if key != data["key"]:
            return None  # left by another run
        return [ScanRecord(**row) for row in data["rows"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not there yet


def _write_json(path: Path, data: dict[str, Any]) -> None:
    text = json.dumps(data, indent=1) + "\n"
    replace_atomically(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def write_summary(folder: Path, rows: Sequence[ScanRecord]) -> None:
    """summary.csv (one row per scan, a column per class volume and per layer thickness) and summary.json."""
    classes = list(dict.fromkeys(name for row in rows for name in row.class_mm3))
    layers = list(dict.fromkeys(name for row in rows for name in row.thickness_um))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    fixed = ["input", "output", "status", "model", "weights_sha256", "device", "raw", "seconds", "slices"]
    writer.writerow([*fixed, *(f"{c}_mm3" for c in classes), *(f"{layer}_um" for layer in layers), "warning", "error"])
    for row in rows:
        values = [getattr(row, name) for name in fixed]
        values += [row.class_mm3.get(c) for c in classes] + [row.thickness_um.get(layer) for layer in layers]
        writer.writerow(["" if value is None else value for value in [*values, row.warning, row.error]])
    text = out.getvalue()
    replace_atomically(folder / SUMMARY_CSV, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    _write_json(folder / SUMMARY_JSON, {"scans": [asdict(row) for row in rows]})
