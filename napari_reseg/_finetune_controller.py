"""What the Fine-tune widget decides and remembers, without Qt or a viewer: which base model fits the exported
folders, whether the inputs can start a run, where the new model is staged, and keeping or discarding it.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from reseg.data.manifest import read_manifest
from reseg.errors import ResegError
from reseg.zoo.catalogue import keep_model, model_paths, remove_model, resolve_card, user_model_dir

if TYPE_CHECKING:
    from ._engine_process import TrainingResult

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Phase(Enum):
    IDLE = "idle"
    TRAINING = "training"
    DECIDING = "deciding"  # a new model is staged: keep it or discard it


class FinetuneController:
    def __init__(self) -> None:
        self.phase = Phase.IDLE
        self.staging: Path | None = None
        self.result: TrainingResult | None = None

    @staticmethod
    def base_models() -> list[str]:
        return sorted(model_paths())

    @staticmethod
    def own_models() -> list[str]:
        return sorted(name for name, path in model_paths().items() if path.parent == user_model_dir())

    @staticmethod
    def parts(model: str) -> dict[str, int]:
        """The freezable parts of a model and their parameter counts, as its card lists them ({} if it does not)."""
        try:
            return dict(resolve_card(model)[0].parts)
        except ResegError:
            return {}

    @staticmethod
    def base_for(folder: Path, current: str) -> str | None:
        """A base model whose classes are the export's (from its dataset.json); `current` if it fits already."""
        try:
            classes = [entry["name"] for entry in read_manifest(folder).get("classes", [])]
        except (ResegError, KeyError, TypeError):
            return None  # the run reports a broken folder with its cause
        matching = [name for name in sorted(model_paths()) if resolve_card(name)[0].class_names == classes]
        if not classes or not matching:
            return None
        return current if current in matching else matching[0]

    @staticmethod
    def free_name(stem: str) -> str:
        """`stem`, or `stem-2`, `stem-3`... the first that is not a model yet."""
        taken, name, number = set(model_paths()), stem, 2
        while name in taken:
            name, number = f"{stem}-{number}", number + 1
        return name

    @staticmethod
    def problem_with_inputs(folders: list[str], name: str) -> str | None:
        if not folders:
            return "add at least one exported corrections folder"
        if not MODEL_NAME.match(name):
            return f"{name!r} is not a usable model name (letters, digits, '.', '_' and '-')"
        if name in model_paths():
            return f"a model named {name!r} exists already; choose another name"
        return None

    def start(self) -> Path:
        """Begin a run: any staged model is discarded; returns the new staging folder (in the model folder)."""
        if self.phase is Phase.TRAINING:
            raise ResegError("fine-tuning is already running")
        self.discard()
        user_model_dir().mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".finetune-", dir=user_model_dir()))
        self.phase = Phase.TRAINING
        return self.staging

    def trained(self, result: TrainingResult) -> None:
        self.result, self.phase = result, Phase.DECIDING

    def stopped(self) -> None:
        """Training ended without a result (cancelled or failed): nothing stays behind."""
        if self.result is None:
            self._remove_staging()
            self.phase = Phase.IDLE

    def keep(self) -> str:
        """Move the staged model into the user model folder; returns its name."""
        if self.result is None:
            raise ResegError("there is no new model to keep")
        keep_model(self.result.card_path)
        name = self.result.name
        self.discard()
        return name

    def discard(self) -> None:
        self.result = None
        self._remove_staging()
        self.phase = Phase.IDLE

    def _remove_staging(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None

    @staticmethod
    def remove(name: str) -> None:
        remove_model(name)
