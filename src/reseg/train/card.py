"""The card a trained model gets: what it was trained on and how (written after the first epoch), and the
validation scores of the epoch whose weights are kept."""

from __future__ import annotations

import math
from typing import Any

from reseg.classes import SegmentationClass
from reseg.zoo.cards import ModelCard


def _json_number(value: float) -> float | None:
    """Metrics rounded for the card; NaN (class absent from the validation data) becomes JSON null."""
    return None if math.isnan(value) else round(value, 4)


def record_validation(
    card: ModelCard,
    epoch: int,
    keep_best: bool,
    summary: dict[str, float],
    scores: dict[str, list[float]],
    classes: list[SegmentationClass],
) -> None:
    """Write the kept epoch and its validation scores into the card (in place)."""
    card.training["best_epoch" if keep_best else "last_epoch"] = epoch
    card.metrics = {
        "validation": {
            **{key: _json_number(value) for key, value in summary.items()},
            "per_class_dice": {c.name: _json_number(d) for c, d in zip(classes, scores["dice"], strict=True)},
            "per_class_iou": {c.name: _json_number(d) for c, d in zip(classes, scores["iou"], strict=True)},
            "note": "mean over classes 1..K-1 (class 0 excluded); slices of the validation scans; "
            "null: class absent from the validation labels",
        }
    }


def training_record(
    sources: Any,
    validation_sources: Any,
    train_scans: list[str],
    validation_scans: list[str],
    train_slices: int,
    validation_slices: int,
    label_sets: dict[int, list[int]],
    config: dict[str, Any],
    processes: int,
) -> dict[str, Any]:
    """The card's `training` section: the data (by scan), the label sets and every setting of the run."""
    return {
        "data": sources,
        "validation_data": validation_sources,
        "train_scans": train_scans,
        "validation_scans": validation_scans,
        "train_slices": train_slices,
        "validation_slices": validation_slices,
        "label_sets": {str(value): classes for value, classes in label_sets.items()},
        "config": config,
        "processes": processes,
    }
