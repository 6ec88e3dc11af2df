"""Segmentation metrics on label maps (MONAI), reduced per class over a set of slices.

torch and MONAI are imported on first use: the review widget imports this module, and MONAI alone takes
seconds to import, which a grader would otherwise wait for when opening the widget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .classes import IGNORE_INDEX

if TYPE_CHECKING:
    import torch


def _one_hot(labels: np.ndarray, num_classes: int) -> "torch.Tensor":
    import torch
    from monai.networks.utils import one_hot

    tensor = torch.from_numpy(np.ascontiguousarray(labels, dtype=np.int64))[:, None]
    return one_hot(tensor, num_classes=num_classes, dim=1)


def per_class_scores(
    prediction: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> dict[str, list[float]]:
    """Dice and IoU per class (mean over slices where the class is present in the target; NaN if never)
    and pixel accuracy per class, for (N, H, W) label maps. Pixels whose target is `ignore_index` are skipped.
    """
    import torch
    from monai.metrics import compute_dice, compute_iou

    prediction = np.asarray(prediction).reshape(-1, *prediction.shape[-2:])
    target = np.asarray(target).reshape(-1, *target.shape[-2:])
    known = target != ignore_index
    # Ignored pixels are zeroed in both one-hot maps, so they count as neither a hit nor a miss of any class.
    mask = torch.from_numpy(known)[:, None]
    pred_hot = _one_hot(prediction, num_classes) * mask
    truth_hot = _one_hot(np.where(known, target, 0), num_classes) * mask
    dice = compute_dice(pred_hot, truth_hot, include_background=True, ignore_empty=True)
    iou = compute_iou(pred_hot, truth_hot, include_background=True, ignore_empty=True)
    accuracy = []
    for k in range(num_classes):
        in_class = (target == k) & known
        accuracy.append(float((prediction[in_class] == k).mean()) if in_class.any() else float("nan"))
    return {
        "dice": torch.nanmean(dice, dim=0).tolist(),
        "iou": torch.nanmean(iou, dim=0).tolist(),
        "pixel_accuracy": accuracy,
    }


def summarize(scores: dict[str, list[float]], skip_classes: tuple[int, ...] = ()) -> dict[str, float]:
    """Mean Dice / mIoU / mPA over classes, skipping NaN (absent) classes and any listed (e.g. background)."""

    def mean(values: list[float]) -> float:
        kept = [v for k, v in enumerate(values) if k not in skip_classes and not np.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")

    return {"mean_dice": mean(scores["dice"]), "miou": mean(scores["iou"]), "mpa": mean(scores["pixel_accuracy"])}
