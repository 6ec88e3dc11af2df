"""Evaluate a model (or saved predictions) on a labelled training-set folder.

Per class: Dice, IoU and pixel accuracy (their means: mean Dice, mIoU, mPA) and HD95 in mm (MONAI). For OCT
also the mean absolute error of each layer boundary per A-scan, in pixels and micrometres, where a boundary
is the first row (top to bottom) whose non-fluid label is at least the class below it: ILM = top of RNFL,
BM = top of choroid (bottom of OS+RPE).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reseg.classes import IGNORE_INDEX, OCT_BOUNDARIES, OCT_CLASSES, OCT_FLUID
from reseg.data.dataset import Scan, TrainingSet, load_training_set
from reseg.errors import InputError
from reseg.evaluation.metrics import per_class_scores, summarize
from reseg.io import Volume, as_stack, read_volume
from reseg.topology import check_oct_topology

if TYPE_CHECKING:
    from reseg.zoo.weights import LoadedModel

# Device boundaries (reseg.io metadata "boundaries") and the boundary of ours they mean. Spectralis' "RNFL" line
# is the outer edge of the nerve fibre layer (its RNFL thickness is ILM to this line): our RNFL-GCL.
DEVICE_BOUNDARIES = {"ILM": "ILM", "RNFL": "RNFL-GCL", "BM": "BM"}


def boundary_rows(labels: np.ndarray) -> np.ndarray:
    """(8, Z, W) float row of each OCT boundary per A-scan; NaN where the column has no such class."""
    stack = as_stack(labels)
    rows = np.full((len(OCT_BOUNDARIES), stack.shape[0], stack.shape[2]), np.nan)
    layered = (stack != OCT_FLUID) & (stack != IGNORE_INDEX) & (stack < OCT_FLUID)
    for k in range(1, len(OCT_BOUNDARIES) + 1):
        below = layered & (stack >= k)
        found = below.any(axis=1)
        rows[k - 1][found] = below.argmax(axis=1)[found]
    return rows


def _absolute_errors(predicted: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|predicted - reference| boundary rows at the A-scans where both have the boundary."""
    return np.abs(predicted - reference)[np.isfinite(predicted) & np.isfinite(reference)]


def _boundary_entry(errors: np.ndarray, axial_mm: float | None) -> dict[str, float | None]:
    error = float(errors.mean())
    return {"mae_px": error, "mae_um": error * axial_mm * 1000 if axial_mm else None, "a_scans": int(errors.size)}


def boundary_errors(
    predictions: list[np.ndarray], truths: list[np.ndarray], axial_mm: float | None
) -> dict[str, dict[str, float | None]]:
    """Mean absolute boundary error per OCT boundary over all A-scans (of all scans) where both maps have it."""
    report = {}
    pairs = [(boundary_rows(p), boundary_rows(t)) for p, t in zip(predictions, truths, strict=True)]
    for index, name in enumerate(OCT_BOUNDARIES):
        errors = np.concatenate([_absolute_errors(p[index], t[index]) for p, t in pairs])
        if errors.size:
            report[name] = _boundary_entry(errors, axial_mm)
    return report


def hd95_per_class(
    prediction: np.ndarray, truth: np.ndarray, num_classes: int, spacing: tuple[float, float]
) -> list[float]:
    """95th-percentile Hausdorff distance (mm) per class, averaged over slices where both maps have it."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    known = truth != IGNORE_INDEX
    pred = torch.from_numpy(np.where(known, prediction, 0).astype(np.int64))
    true = torch.from_numpy(np.where(known, truth, 0).astype(np.int64))
    hot = lambda x: torch.nn.functional.one_hot(x, num_classes).permute(0, 3, 1, 2)  # noqa: E731
    with warnings.catch_warnings():  # MONAI warns per absent class; absent classes are skipped below anyway
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        distances = compute_hausdorff_distance(
            hot(pred), hot(true), include_background=True, percentile=95, spacing=list(spacing)
        )
    finite = torch.where(torch.isfinite(distances), distances, torch.nan)
    return torch.nanmean(finite, dim=0).tolist()


@dataclass
class Evaluation:
    num_classes: int
    class_names: list[str]
    scores: dict[str, list[float]]
    summary: dict[str, float]
    hd95_mm: list[float]
    boundaries: dict[str, dict[str, float | None]] = field(default_factory=dict)
    slices: int = 0
    out_of_order_a_scans: int | None = None  # OCT: A-scans whose predicted layers break the order (topology)
    misplaced_organs: dict[str, dict[str, int]] | None = None  # CT: see `misplaced_organs`
    fluid_pixels: int | None = None  # OCT: predicted fluid pixels (a healthy scan should have none)

    def to_dict(self) -> dict[str, Any]:
        def clean(value: float | None) -> float | None:
            return None if value is None or not np.isfinite(value) else round(float(value), 4)

        return {
            "slices": self.slices,
            **{key: clean(value) for key, value in self.summary.items()},
            "per_class": {
                name: {
                    "dice": clean(self.scores["dice"][k]),
                    "dice_pooled": clean(self.scores["dice_pooled"][k]),
                    "iou": clean(self.scores["iou"][k]),
                    "pixel_accuracy": clean(self.scores["pixel_accuracy"][k]),
                    "hd95_mm": clean(self.hd95_mm[k]),
                }
                for k, name in enumerate(self.class_names if self.scores else [])
            },
            "boundaries": {
                name: {key: clean(value) if key != "a_scans" else value for key, value in entry.items()}
                for name, entry in self.boundaries.items()
            },
            "out_of_order_a_scans": self.out_of_order_a_scans,
            "misplaced_organs": self.misplaced_organs,
            "fluid_pixels": self.fluid_pixels,
        }

    def table(self) -> str:
        columns = ("dice", "dice_pooled", "iou", "pixel_accuracy")
        lines = [f"{'class':<22}{'Dice':>8}{'Dice all':>10}{'IoU':>8}{'PA':>8}{'HD95 mm':>10}"] if self.scores else []
        for k, name in enumerate(self.class_names if self.scores else []):
            dice, pooled, iou, accuracy = (self.scores[key][k] for key in columns)
            lines.append(f"{name:<22}{dice:>8.3f}{pooled:>10.3f}{iou:>8.3f}{accuracy:>8.3f}{self.hd95_mm[k]:>10.3f}")
        if self.scores:
            lines.append(
                f"mean Dice {self.summary['mean_dice']:.3f}, mIoU {self.summary['miou']:.3f}, "
                f"mPA {self.summary['mpa']:.3f} (classes 1..{self.num_classes - 1}; {self.slices} slices)"
            )
        for name, entry in self.boundaries.items():
            um = f" = {entry['mae_um']:.1f} um" if entry.get("mae_um") else ""
            lines.append(f"boundary {name:<9} MAE {entry['mae_px']:.2f} px{um} over {entry['a_scans']} A-scans")
        if self.out_of_order_a_scans is not None:
            lines.append(f"A-scans out of layer order: {self.out_of_order_a_scans}")
        if self.fluid_pixels is not None:
            lines.append(f"fluid pixels predicted: {self.fluid_pixels}")
        for organ, counts in (self.misplaced_organs or {}).items():
            lines.append(
                f"{organ}: {counts['pixels_outside_body']} px outside the body, predicted in "
                f"{counts['slices_predicted_without_it']} of {counts['slices_without_it']} slices that hold none"
            )
        return "\n".join(lines)


def evaluate(
    prediction_source: str | Path, dataset: str | Path, device: str = "auto", batch_size: int = 4, raw: bool = False
) -> Evaluation:
    """Score a model name / checkpoint, or a folder of predicted label files named as the dataset's labels.

    `dataset` is a training-set folder, or an OCT file whose reader found device boundaries (a Spectralis
    .vol): then only the boundary errors against those are measured. `raw` scores a model's argmax without
    the post-processing its card lists.
    """
    source = Path(prediction_source)
    model = None
    if not source.is_dir():
        from reseg.zoo.weights import load_model

        model = load_model(prediction_source, device=device)
    if Path(dataset).is_file():
        if model is None:
            raise InputError(dataset, "a file with device boundaries is scored against a model, not a folder")
        return evaluate_device_boundaries(model, read_volume(dataset), batch_size, raw)
    training_set = load_training_set([dataset])
    if model is not None:
        return evaluate_model(model, training_set, batch_size, raw)
    names = [c.name for c in training_set.classes or []]
    return score(training_set, lambda scan: read_volume(source / f"{scan.name.split('/', 1)[1]}.tif").data, names)


def evaluate_model(model: LoadedModel, training_set: TrainingSet, batch_size: int = 4, raw: bool = False) -> Evaluation:
    """Score a loaded model on the scans of a training set held in memory."""
    from reseg.inference.segmentation import segment

    return score(
        training_set,
        lambda scan: (
            segment(
                model,
                scan.image,
                batch_size=batch_size,
                raw=raw,
                pixel_spacing=scan.pixel_spacing,
                voxel_spacing=scan.voxel_spacing,
            ).labels
        ),
        model.card.class_names,
    )


def score(training_set: TrainingSet, predict: Callable[[Scan], np.ndarray], names: list[str]) -> Evaluation:
    """Per-class region metrics (and OCT boundary errors) of `predict(scan)` against every scan's labels."""
    num_classes = len(names)
    predictions, truths, per_scan, hd95, weights = [], [], [], [], []
    for scan in training_set.scans:
        predicted = predict(scan)
        truth = np.where(scan.labels < num_classes, scan.labels, IGNORE_INDEX)  # the pixels of one known class
        predictions.append(predicted)
        truths.append(truth)
        per_scan.append(
            per_class_scores(predicted, scan.labels, num_classes, training_set.ignore_index, training_set.label_sets)
        )
        hd95.append(hd95_per_class(predicted, truth, num_classes, scan.spacing[1:]))
        weights.append(len(predicted))
    scores = {key: _weighted_nanmean([s[key] for s in per_scan], weights) for key in per_scan[0]}
    boundaries, out_of_order, misplaced, fluid = {}, None, None, None
    if training_set.modality == "CT":
        misplaced = misplaced_organs(training_set.scans, predictions, names)
    if training_set.modality == "OCT":
        axial = training_set.scans[0].spacing[1]
        boundaries = boundary_errors(predictions, truths, axial if axial != 1.0 else None)
        if names == [c.name for c in OCT_CLASSES]:  # the layer order is defined for these classes
            out_of_order = sum(len(check_oct_topology(predicted).broken) for predicted in predictions)
            fluid = sum(int((predicted == OCT_FLUID).sum()) for predicted in predictions)
    return Evaluation(
        num_classes,
        names,
        scores,
        summarize(scores, skip_classes=(0,)),
        _weighted_nanmean(hd95, weights),
        boundaries,
        sum(weights),
        out_of_order,
        misplaced,
        fluid,
    )


def misplaced_organs(scans: list[Scan], predictions: list[np.ndarray], names: list[str]) -> dict[str, dict[str, int]]:
    """Per organ (CT): predicted pixels outside the body, and slices predicted to hold it whose labels hold none
    (only fully labelled slices count). Both should be 0: an organ in a slice without it, a pelvic liver, is
    the error a reviewer notices first."""
    from reseg.inference.body import body_mask

    outside_body = [~body_mask(scan.image) for scan in scans]  # once per scan, not per organ
    labelled = [np.all(scan.labels < len(names), axis=(1, 2)) for scan in scans]  # no ignored or partial pixel
    report = {}
    for k, name in enumerate(names[1:], start=1):
        outside, without, predicted_without = 0, 0, 0
        for scan, predicted, scan_outside, scan_labelled in zip(
            scans, predictions, outside_body, labelled, strict=True
        ):
            hit = predicted == k
            outside += int((hit & scan_outside).sum())
            empty = scan_labelled & ~np.any(scan.labels == k, axis=(1, 2))
            without += int(empty.sum())
            predicted_without += int((empty & hit.any(axis=(1, 2))).sum())
        report[name] = {
            "pixels_outside_body": outside,
            "slices_without_it": without,
            "slices_predicted_without_it": predicted_without,
        }
    return report


def device_boundaries(volume: Volume) -> dict[str, np.ndarray]:
    """The (Z, W) boundary heights an OCT device stored in the file, under our boundary names (may be empty)."""
    device = volume.metadata.get("boundaries", {})
    return {ours: device[theirs] for theirs, ours in DEVICE_BOUNDARIES.items() if theirs in device}


def evaluate_device_boundaries(
    model: LoadedModel, volume: Volume, batch_size: int = 4, raw: bool = False
) -> Evaluation:
    """Boundary errors (ILM, RNFL-GCL, BM, those the file has) of a model's labels against the heights an OCT
    device stored in the file; reported under our boundary names."""
    from reseg.inference.segmentation import segment

    known = device_boundaries(volume)
    if not known:
        raise InputError(volume.source, f"holds no device boundaries ({', '.join(DEVICE_BOUNDARIES)}) to score against")
    labels = segment(
        model,
        volume.data,
        batch_size=batch_size,
        pixel_spacing=volume.pixel_spacing,
        raw=raw,
        voxel_spacing=volume.voxel_spacing,
    ).labels
    rows = boundary_rows(labels)
    report = {}
    for name, heights in known.items():
        errors = _absolute_errors(rows[OCT_BOUNDARIES.index(name)], heights)
        if errors.size:
            report[name] = _boundary_entry(errors, volume.spacing[1])
    out_of_order = len(check_oct_topology(labels).broken)
    fluid = int((labels == OCT_FLUID).sum()) if model.card.class_names == [c.name for c in OCT_CLASSES] else None
    return Evaluation(
        model.card.num_classes,
        model.card.class_names,
        {},
        {},
        [],
        report,
        len(volume.data),
        out_of_order,
        fluid_pixels=fluid,
    )


def _weighted_nanmean(rows: list[list[float]], weights: list[int]) -> list[float]:
    """Per-class mean over scans weighted by their slice count, skipping scans where a class is NaN."""
    values = np.array(rows, dtype=float)
    w = np.where(np.isfinite(values), np.array(weights, dtype=float)[:, None], 0.0)
    with np.errstate(invalid="ignore"):
        return list(np.where(w.sum(0) > 0, np.nansum(values * w, axis=0) / w.sum(0), np.nan))
