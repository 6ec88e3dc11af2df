"""Segmentation metrics on label maps (MONAI), reduced per class over a set of slices.

torch and MONAI are imported on first use: the review widget imports this module, and MONAI alone takes
seconds to import, which a grader would otherwise wait for when opening the widget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from reseg.classes import IGNORE_INDEX

if TYPE_CHECKING:
    import torch


def _one_hot(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    import torch
    from monai.networks.utils import one_hot

    tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[:, None]
    return one_hot(tensor, num_classes=num_classes, dim=1)


def _scored_pixels(
    target: np.ndarray, num_classes: int, ignore_index: int, label_sets: Mapping[int, Sequence[int]] | None
) -> np.ndarray:
    """(N, C, H, W) bool: where each class is scored. A pixel of a class is scored for every class; a partial
    label ("one of S") is a known miss for the classes outside S and unknown for those in S; anything else
    (the ignore value, undeclared values) is scored for none."""
    definite = target < num_classes
    scored = np.repeat(definite[:, None], num_classes, axis=1)
    for value, allowed in (label_sets or {}).items():
        if value == ignore_index:
            continue
        outside = np.setdiff1d(np.arange(num_classes), np.asarray(allowed, dtype=int))
        scored[:, outside] |= (target == value)[:, None]
    return scored


def per_class_scores(
    prediction: np.ndarray,
    target: np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    label_sets: Mapping[int, Sequence[int]] | None = None,
) -> dict[str, list[float]]:
    """Per class, for (N, H, W) label maps: Dice and IoU (mean over slices where the class is present in the
    target; NaN if never), Dice pooled over all slices (which also counts false positives on slices without
    the class), and pixel accuracy. Pixels whose target is `ignore_index` are skipped; partial labels
    (`label_sets`, value -> the classes it allows) count only for the classes they rule out.
    """
    import torch
    from monai.metrics import compute_dice, compute_iou

    prediction = np.asarray(prediction).reshape(-1, *prediction.shape[-2:])
    target = np.asarray(target).reshape(-1, *target.shape[-2:])
    definite = target < num_classes
    # Unscored pixels are zeroed in both one-hot maps, so they count as neither a hit nor a miss of the class.
    mask = torch.from_numpy(_scored_pixels(target, num_classes, ignore_index, label_sets))
    pred_hot = _one_hot(prediction, num_classes) * mask
    truth_hot = _one_hot(np.where(definite, target, 0), num_classes) * torch.from_numpy(definite)[:, None]
    dice = compute_dice(pred_hot, truth_hot, include_background=True, ignore_empty=True)
    iou = compute_iou(pred_hot, truth_hot, include_background=True, ignore_empty=True)
    overlap = (pred_hot * truth_hot).sum(dim=(0, 2, 3)).double()
    sizes = (pred_hot.sum(dim=(0, 2, 3)) + truth_hot.sum(dim=(0, 2, 3))).double()
    pooled = torch.where(truth_hot.sum(dim=(0, 2, 3)) > 0, 2 * overlap / sizes.clamp(min=1), float("nan"))
    accuracy = []
    for k in range(num_classes):
        in_class = target == k
        accuracy.append(float((prediction[in_class] == k).mean()) if in_class.any() else float("nan"))
    return {
        "dice": torch.nanmean(dice, dim=0).tolist(),
        "dice_pooled": pooled.tolist(),
        "iou": torch.nanmean(iou, dim=0).tolist(),
        "pixel_accuracy": accuracy,
    }


def summarize(scores: dict[str, list[float]], skip_classes: tuple[int, ...] = ()) -> dict[str, float]:
    """Mean Dice / mIoU / mPA over classes, skipping NaN (absent) classes and any listed (e.g. background)."""

    def mean(values: list[float]) -> float:
        kept = [v for k, v in enumerate(values) if k not in skip_classes and not np.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")

    return {"mean_dice": mean(scores["dice"]), "miou": mean(scores["iou"]), "mpa": mean(scores["pixel_accuracy"])}
