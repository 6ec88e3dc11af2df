"""The model catalogue: which models exist (bundled in `reseg_zoo`, the user's own, checkpoint files), their
cards, and which of them suit a scan's modality. Reads JSON only and never imports torch, so a user interface
or a command that runs no model can list, choose, keep and remove models without the deep-learning stack.
Loading weights is `reseg.zoo.weights`'s job.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

import platformdirs

from reseg.errors import CheckpointError, ResegError
from reseg.zoo.cards import ModelCard, read_card

USER_MODEL_DIR_ENV = "RESEG_MODEL_DIR"
FOREIGN_SUFFIXES = (".pt", ".pth")
# The model a scan of each modality gets when nobody names one; a scan of unknown modality is taken as OCT
# (grey images without Hounsfield units: `reseg.io` calls a volume CT only when its values are HU).
DEFAULT_MODEL = {"OCT": "lightreseg-oct", "CT": "l2gnet-ct", "unknown": "lightreseg-oct"}


def bundled_model_dir() -> Path:
    """The folder of models shipped inside the wheel (the repository's `models/`)."""
    return Path(str(resources.files("reseg_zoo")))


def user_model_dir() -> Path:
    """Where models the user trained or kept live; `RESEG_MODEL_DIR` overrides the platform default."""
    override = os.environ.get(USER_MODEL_DIR_ENV)
    return Path(override) if override else Path(platformdirs.user_data_dir("napari-reseg")) / "models"


def _cards_in(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {card.stem: card for card in sorted(folder.glob("*.json")) if card.with_suffix(".safetensors").exists()}


def model_paths() -> dict[str, Path]:
    """Card path of every known model by name; a user model shadows a bundled one of the same name."""
    return {**_cards_in(bundled_model_dir()), **_cards_in(user_model_dir())}


def list_models() -> list[ModelCard]:
    """Cards of all bundled and user models, sorted by name."""
    return [read_card(path) for _, path in sorted(model_paths().items())]


def resolve_card(name_or_path: str | Path, card: ModelCard | str | Path | None = None) -> tuple[ModelCard, Path]:
    """Find (card, weights path) for a catalogue name, a .json card, or a weights file with a card.

    Cheap (reads JSON only), so a user interface can show classes before the weights are loaded.
    """
    known = model_paths()
    if card is None and str(name_or_path) in known:
        card_path = known[str(name_or_path)]
        return read_card(card_path), card_path.with_suffix(".safetensors")
    path = Path(name_or_path)
    if path.suffix == ".json":
        return read_card(path), path.with_suffix(".safetensors")
    if path.suffix not in (".safetensors", *FOREIGN_SUFFIXES):
        if not path.exists():
            raise CheckpointError(path, f"no such model or file (known models: {', '.join(sorted(known)) or 'none'})")
        raise CheckpointError(
            path, "unsupported model file (use a model name, a .json card, .safetensors, .pt or .pth)"
        )
    if card is None:
        card_path = path.with_suffix(".json")
        if not card_path.exists():
            raise CheckpointError(
                path,
                f"has no model card beside it ({card_path.name}); pass the card of the model it was trained "
                "from (e.g. --card lightreseg-oct) so its classes and normalisation are known",
            )
        return read_card(card_path), path
    if isinstance(card, ModelCard):
        return card, path
    return resolve_card(card, None)[0], path


def suits(card_modality: str, scan_modality: str) -> bool:
    """Whether a model trained on `card_modality` is meant for a scan of `scan_modality`.

    A CT model needs Hounsfield units, which a scan of unknown modality does not have; an OCT model takes
    grey images of unknown origin (the engine's default for them).
    """
    if card_modality == "CT":
        return scan_modality == "CT"
    return scan_modality != "CT"


def modality_warning(card: ModelCard, scan_modality: str, scan_name: str) -> str | None:
    """The warning a user gets before running a model on a scan it was not trained for, or None."""
    if suits(card.modality, scan_modality):
        return None
    looks = (
        f"looks like {scan_modality}" if scan_modality != "unknown" else "has no Hounsfield units (it is not a CT scan)"
    )
    return f"{scan_name} {looks} but model {card.name!r} was trained on {card.modality}: its labels will mean nothing"


def preferred_model(names: list[str], modality_of: dict[str, str], scan_modality: str) -> str | None:
    """The model to preselect for a scan: the modality's default if listed, else the first that suits it.

    `modality_of` maps each name to its card's modality. None when no listed model suits the scan: then a
    picker preselects nothing rather than a model that would give meaningless labels.
    """
    default = DEFAULT_MODEL.get(scan_modality)
    if default in names and suits(modality_of[default], scan_modality):
        return default
    return next((name for name in names if suits(modality_of[name], scan_modality)), None)


def keep_model(card_path: str | Path, replace: bool = False) -> Path:
    """Move a model (card + weights written by training) into the user model folder; returns the new card path.

    Refuses a name that is already a model unless `replace` (a user model only: bundled ones never change).
    """
    card_path = Path(card_path)
    name = card_path.stem
    known = model_paths()
    if name in known and (not replace or known[name].parent == bundled_model_dir()):
        raise ResegError(f"a model named {name!r} exists already ({known[name]}); choose another name")
    target = user_model_dir()
    target.mkdir(parents=True, exist_ok=True)
    # Weights first: a card without weights is not listed, so the model appears complete or not at all.
    shutil.move(card_path.with_suffix(".safetensors"), target / f"{name}.safetensors")
    shutil.move(card_path, target / card_path.name)
    return target / card_path.name


def remove_model(name: str) -> None:
    """Delete a model from the user model folder; bundled models cannot be removed."""
    path = model_paths().get(name)
    if path is None:
        raise ResegError(f"no model named {name!r}")
    if path.parent != user_model_dir():
        raise ResegError(f"{name!r} is bundled with napari-reseg ({path}) and cannot be removed")
    path.with_suffix(".safetensors").unlink()
    path.unlink()
