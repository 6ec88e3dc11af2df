"""The end-of-epoch state of a training run, so that a long run (a CPU-only one above all) can be done in parts.

`<output_dir>/<name>.checkpoint.pt` holds what the next epoch needs and the kept model does not: the network
as it is after the epoch (the kept one may be older), optimiser and learning-rate schedule, the global torch
random state (dropout) and the best score so far. Crops, augmentation and sampling are reseeded from the run's
seed at the start of every epoch, so a run resumed after epoch k goes on exactly as if it had not stopped.
The file is written atomically after each epoch and removed when the run completes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reseg.errors import InputError
from reseg.io import replace_atomically

# The settings a resumed run must share with the one that wrote the checkpoint (others, like the device or
# the number of epochs still to come, may change between parts).
_SAME_SETTINGS = (
    "architecture",
    "arguments",
    "batch_size",
    "learning_rate",
    "weight_decay",
    "crop_size",
    "steps_per_epoch",
    "seed",
    "base_model",
    "freeze",
    "epochs",
)


def checkpoint_path(output_dir: str | Path, name: str) -> Path:
    return Path(output_dir) / f"{name}.checkpoint.pt"


@dataclass
class Checkpoint:
    """Where a run stands after `epoch` (1-based) of its epochs."""

    epoch: int
    settings: dict[str, Any]
    train_scans: list[str]
    network: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_random_state: torch.Tensor
    best_score: float
    card: dict[str, Any]  # the kept model's card (validation record included) as saved so far

    def save(self, path: Path) -> None:
        state = {key: getattr(self, key) for key in self.__dataclass_fields__}
        replace_atomically(path, lambda temporary: torch.save(state, temporary))

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
            return cls(**state)
        except (OSError, RuntimeError, TypeError, EOFError) as error:
            raise InputError(path, f"is not a training checkpoint this version can resume ({error})") from error

    def check_matches(self, path: Path, settings: dict[str, Any], train_scans: list[str]) -> None:
        """Raise InputError (naming the checkpoint) when the new run is not the one this checkpoint belongs to."""
        differ = [
            f"{key} {self.settings.get(key)!r} -> {settings.get(key)!r}"
            for key in _SAME_SETTINGS
            if _comparable(self.settings.get(key)) != _comparable(settings.get(key))
        ]
        if differ:
            raise InputError(path, f"was written by a run with other settings: {'; '.join(differ)}")
        if self.train_scans != train_scans:
            raise InputError(path, "was written by a run on other training scans")
        if self.epoch >= settings["epochs"]:
            raise InputError(path, f"is of a run that already finished its {settings['epochs']} epochs")


def _comparable(value: Any) -> Any:
    """Tuples and lists compare equal (settings pass through JSON-like records on one side)."""
    return list(value) if isinstance(value, tuple) else value
