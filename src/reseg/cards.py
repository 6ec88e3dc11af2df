"""Model cards: the JSON file beside every weights file saying what the network is and how to feed it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .classes import SegmentationClass
from .errors import CheckpointError

CARD_FIELDS_REQUIRED = ("name", "architecture", "arguments", "classes", "modality", "normalization")


@dataclass
class ModelCard:
    """Everything needed to rebuild, feed and trust a network, stored as `<name>.json` beside its weights."""

    name: str
    architecture: str
    arguments: dict[str, Any]
    classes: list[SegmentationClass]
    modality: str
    normalization: dict[str, Any]
    description: str = ""
    version: str = "1"
    input_spacing: list[float] | None = None
    parameters: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str | None = None
    terms: str = ""
    deviations: list[str] = field(default_factory=list)
    parent: str | None = None
    # Steps applied to the labels after the argmax (reseg.postprocessing), e.g. ["confine_to_retina"].
    postprocessing: list[str] = field(default_factory=list)
    # The network's freezable parts and their parameter counts, so a user interface lists them without torch.
    parts: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["classes"] = [c.to_dict() for c in self.classes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path = "<card>") -> "ModelCard":
        missing = [key for key in CARD_FIELDS_REQUIRED if key not in data]
        if missing:
            raise CheckpointError(source, f"model card lacks the field(s) {', '.join(missing)}")
        known = {f for f in cls.__dataclass_fields__}
        try:
            values = {key: value for key, value in data.items() if key in known}
            values["classes"] = [SegmentationClass.from_dict(entry) for entry in data["classes"]]
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointError(source, f"model card has malformed classes ({error})") from None
        card = cls(**values)
        declared = card.arguments.get("num_classes")
        if declared is not None and declared != card.num_classes:
            raise CheckpointError(
                source, f"model card lists {card.num_classes} classes but its arguments say num_classes={declared}"
            )
        from .postprocessing import check_postprocessing  # topology, numpy only; imported late against cycles

        check_postprocessing(card.postprocessing, card.class_names, source)
        return card


def read_card(path: str | Path) -> ModelCard:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(path, "model card not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(path, f"model card is not readable JSON ({error})") from None
    if not isinstance(data, dict):
        raise CheckpointError(path, "model card must be a JSON object")
    return ModelCard.from_dict(data, source=path)


def write_card(card: ModelCard, path: str | Path) -> None:
    Path(path).write_text(json.dumps(card.to_dict(), indent=2) + "\n", encoding="utf-8")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
