"""How much a model's scores depend on the device look: the same labelled OCT set, rendered in several styles.

The anatomy and labels stay the same in every style (:mod:`reseg.data.device_styles`), so any change of Dice
is the model's sensitivity to appearance alone, the failure that made models trained on one device miss the
inner retina on another.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reseg.classes import OCT_FLUID
from reseg.data.dataset import Scan, TrainingSet, load_training_set
from reseg.data.device_styles import DEVICE_STYLES, DeviceStyle, render_style
from reseg.errors import InputError
from reseg.evaluation.evaluate import Evaluation, evaluate_model

if TYPE_CHECKING:
    from reseg.zoo.weights import LoadedModel

TOLERANCE = 0.03  # the largest acceptable drop of mean Dice from the first (reference) style


@dataclass
class RobustnessReport:
    """Mean Dice (and fluid Dice) of one model per device style; the first style is the reference."""

    styles: list[str]
    evaluations: list[Evaluation]

    @property
    def mean_dice(self) -> list[float]:
        return [float(e.summary["mean_dice"]) for e in self.evaluations]

    @property
    def largest_drop(self) -> float:
        """How far the worst style falls below the reference style (negative: every style scores higher)."""
        reference, *others = self.mean_dice
        return reference - min(others) if others else 0.0

    def to_dict(self) -> dict[str, Any]:
        fluid = [e.scores["dice_pooled"][OCT_FLUID] if e.num_classes > OCT_FLUID else None for e in self.evaluations]
        return {
            "reference_style": self.styles[0],
            "tolerance": TOLERANCE,
            "largest_drop": round(self.largest_drop, 4),
            "within_tolerance": bool(self.largest_drop <= TOLERANCE),
            "styles": {
                name: {
                    "mean_dice": round(dice, 4),
                    "fluid_dice_pooled": None if f is None or not np.isfinite(f) else round(float(f), 4),
                    "drop": round(self.mean_dice[0] - dice, 4),
                }
                for name, dice, f in zip(self.styles, self.mean_dice, fluid, strict=True)
            },
        }

    def table(self) -> str:
        lines = [f"{'device style':<18}{'mean Dice':>10}{'drop':>8}"]
        for name, dice in zip(self.styles, self.mean_dice, strict=True):
            lines.append(f"{name:<18}{dice:>10.3f}{self.mean_dice[0] - dice:>8.3f}")
        verdict = "within" if self.largest_drop <= TOLERANCE else "NOT within"
        lines.append(f"largest drop {self.largest_drop:.3f}: {verdict} {TOLERANCE} of {self.styles[0]}")
        return "\n".join(lines)


def styled_set(training_set: TrainingSet, style: DeviceStyle) -> TrainingSet:
    """The training set with every slice shown in `style`; the speckle is seeded by scan and style, so a
    report can be repeated exactly."""
    return replace(training_set, scans=[_styled_scan(scan, style) for scan in training_set.scans])


def _styled_scan(scan: Scan, style: DeviceStyle) -> Scan:
    if scan.image.min() < 0 or scan.image.max() > 255:
        raise InputError(
            scan.folder or scan.name,
            f"scan {scan.name} is not a 0-255 display image (values {scan.image.min()}..{scan.image.max()}); "
            "device styles re-render display images",
        )
    rng = np.random.default_rng(zlib.crc32(f"{scan.name}/{style.name}".encode()))
    image = np.stack([render_style(s, style, rng) for s in scan.image])
    return replace(scan, image=np.rint(image).astype(np.uint8))


def robustness(
    model: LoadedModel,
    training_set: TrainingSet,
    styles: Sequence[DeviceStyle] = DEVICE_STYLES,
    batch_size: int = 4,
    raw: bool = False,
) -> RobustnessReport:
    """Score `model` on `training_set` (an OCT set with display images) once per style."""
    if training_set.modality != "OCT":
        raise InputError(
            training_set.sources[0]["folder"] if training_set.sources else "the dataset",
            f"device styles are defined for OCT, the dataset is {training_set.modality}",
        )
    evaluations = [evaluate_model(model, styled_set(training_set, style), batch_size, raw) for style in styles]
    return RobustnessReport([style.name for style in styles], evaluations)


def robustness_of(
    model_name: str, dataset: str | Path, device: str = "auto", batch_size: int = 4, raw: bool = False
) -> RobustnessReport:
    """`reseg evaluate --robustness`: a model name or checkpoint on a labelled OCT training-set folder."""
    from reseg.zoo.weights import load_model

    if not Path(dataset).is_dir():
        raise InputError(dataset, "the robustness report needs a labelled training-set folder (images/ + labels/)")
    model = load_model(model_name, device=device)
    return robustness(model, load_training_set([dataset]), batch_size=batch_size, raw=raw)
