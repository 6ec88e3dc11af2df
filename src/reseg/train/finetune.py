"""Fine-tune a model on exported corrections and show, class by class, whether it got better.

Users retrain only if they can see the new model beat the old one on their own data, so a fixed share of the
reviewed scans (whole scans, never single slices: neighbouring slices of one scan look alike) is held out.
Training never selects on them either: the last epoch is kept, and both models are then scored on those scans.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reseg.data.dataset import TrainingSet, load_training_set, split_by_scan
from reseg.errors import ResegError
from reseg.evaluation.evaluate import Evaluation, evaluate_model
from reseg.train import distributed
from reseg.train.loop import EpochReport, StepReport, TrainingConfig, iter_train
from reseg.zoo.cards import ModelCard, read_card, write_card
from reseg.zoo.catalogue import resolve_card
from reseg.zoo.weights import load_model

DEFAULT_HELD_OUT = 0.2


@dataclass(frozen=True)
class Comparison:
    """The base and the fine-tuned model scored on the same held-out scans."""

    base_name: str
    new_name: str
    base: Evaluation
    new: Evaluation
    held_out_scans: list[str]

    def rows(self) -> list[tuple[str, float, float]]:
        """(class, base Dice, new Dice) for every class the held-out labels contain."""
        names = self.base.class_names
        return [
            (name, self.base.scores["dice"][k], self.new.scores["dice"][k])
            for k, name in enumerate(names)
            if not math.isnan(self.new.scores["dice"][k])
        ]

    @property
    def mean_dice_change(self) -> float:
        """New minus base mean Dice on the held-out scans: what keeping the new model is decided on."""
        return self.new.summary["mean_dice"] - self.base.summary["mean_dice"]

    def table(self) -> str:
        width = max(len(self.base_name), len(self.new_name), 8) + 2
        lines = [
            f"Dice on {len(self.held_out_scans)} held-out scan(s), {self.new.slices} slice(s):",
            f"{'class':<22}{self.base_name:>{width}}{self.new_name:>{width}}{'change':>9}",
        ]
        for name, old, new in self.rows():
            lines.append(f"{name:<22}{old:>{width}.3f}{new:>{width}.3f}{new - old:>+9.3f}")
        for key, label in (("mean_dice", "mean Dice"), ("miou", "mIoU"), ("mpa", "mPA")):
            old, new = self.base.summary[key], self.new.summary[key]
            lines.append(f"{label:<22}{old:>{width}.3f}{new:>{width}.3f}{new - old:>+9.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"held_out_scans": self.held_out_scans, "base": self.base.to_dict(), "new": self.new.to_dict()}


@dataclass(frozen=True)
class FinetuneResult:
    """Where the fine-tuned model was written (not yet kept anywhere the model picker looks) and how it did."""

    weights: Path
    card: ModelCard
    comparison: Comparison


def split_held_out(training_set: TrainingSet, fraction: float, seed: int = 0) -> tuple[TrainingSet, TrainingSet]:
    """The training part and the held-out part of a training set, split by whole scans."""
    if len(training_set.scans) < 2:
        folders = ", ".join(source["folder"] for source in training_set.sources)
        raise ResegError(
            f"fine-tuning holds out whole scans to compare the models on, but {folders} holds "
            f"{len(training_set.scans)} scan; export the corrections of at least two scans"
        )
    train, held_out = split_by_scan(training_set.scans, fraction, seed)
    if not held_out:
        raise ResegError(f"a held-out share of {fraction} leaves no scan to compare on; use a share above 0")
    return dataclasses.replace(training_set, scans=train), dataclasses.replace(training_set, scans=held_out)


def iter_finetune(
    base: str,
    data: Sequence[str | Path],
    name: str,
    output_dir: str | Path,
    config: TrainingConfig,
    held_out_fraction: float = DEFAULT_HELD_OUT,
) -> Iterator[StepReport | EpochReport | FinetuneResult]:
    """Train `name` from `base` on `data` minus a held-out share; end with a FinetuneResult comparing both.

    The events of `iter_train` pass through (the held-out scans are its validation curve); the new card's
    metrics gain the comparison, so a kept model carries the evidence it was kept on.
    """
    if name == base:
        raise ResegError(f"the fine-tuned model needs a name of its own, not that of its base {base!r}")
    training_set = load_training_set(data)
    train, held_out = split_held_out(training_set, held_out_fraction, config.seed)
    config = dataclasses.replace(config, base_model=base, keep_best=False)
    description = f"{base} fine-tuned on {', '.join(Path(folder).name for folder in data)}"
    terms = resolve_card(base)[0].terms  # the weights derive from the base model's
    yield from iter_train(train, name, output_dir, config, description, terms, validation_set=held_out)
    if not distributed.is_main_process():
        return
    card_path = Path(output_dir) / f"{name}.json"
    base_model = load_model(base, device=config.device)
    new_model = load_model(card_path, device=config.device)
    comparison = Comparison(
        base,
        name,
        evaluate_model(base_model, held_out),
        evaluate_model(new_model, held_out),
        [scan.name for scan in held_out.scans],
    )
    card = read_card(card_path)
    card.metrics["held_out_comparison"] = comparison.to_dict()
    card.training["held_out_fraction"] = held_out_fraction
    write_card(card, card_path)
    yield FinetuneResult(card_path.with_suffix(".safetensors"), card, comparison)
