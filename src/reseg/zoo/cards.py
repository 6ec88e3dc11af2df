"""Model cards: the JSON file beside every weights file saying what the network is and how to feed it."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reseg.classes import SegmentationClass
from reseg.errors import CheckpointError
from reseg.fields import FieldProblem, require_classes, require_mapping, require_number, require_numbers, require_text
from reseg.io._atomic import replace_atomically
from reseg.preprocessing.normalization import PERCENTILE, WINDOW

CARD_FIELDS_REQUIRED = ("name", "architecture", "arguments", "classes", "modality", "normalization")
# Widths, depths and codebook sizes of real networks are far below this; a larger one would allocate gigabytes.
MAX_ARGUMENT = 65536
# The pixel sizes a model may be trained at: 1 um (beyond any OCT's axial resolution) to 50 mm. A finer one
# would resample each slice to many times its size.
MIN_INPUT_SPACING_MM = 1e-3
MAX_INPUT_SPACING_MM = 50.0
# "lateral_flip": the slice mirrored left-right as well (OCT B-scans are mirror-symmetric anatomy).
TEST_TIME_AUGMENTATIONS = ("lateral_flip",)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")


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
    # Steps applied to the labels after the argmax (reseg.inference.postprocessing), e.g. ["confine_to_retina"].
    postprocessing: list[str] = field(default_factory=list)
    # The network's freezable parts and their parameter counts, so a user interface lists them without torch.
    parts: dict[str, int] = field(default_factory=dict)
    # Test-time augmentations whose class probabilities inference averages, of TEST_TIME_AUGMENTATIONS.
    test_time_augmentation: list[str] = field(default_factory=list)

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
    def from_dict(cls, data: dict[str, Any], source: str | Path = "<card>") -> ModelCard:
        """Build a card from its JSON, validated field by field: a bad card is a CheckpointError naming the
        file and the field, before anything is built or fed from it."""
        missing = [key for key in CARD_FIELDS_REQUIRED if key not in data]
        if missing:
            raise CheckpointError(source, f"model card lacks the field(s) {', '.join(missing)}")
        try:
            _check_fields(data)
        except FieldProblem as problem:
            raise CheckpointError(source, f"model card {problem}") from None
        known = set(cls.__dataclass_fields__)
        values = {key: value for key, value in data.items() if key in known}
        values["classes"] = [SegmentationClass.from_dict(entry) for entry in data["classes"]]
        card = cls(**values)
        declared = card.arguments.get("num_classes")
        if declared is not None and declared != card.num_classes:
            raise CheckpointError(
                source, f"model card lists {card.num_classes} classes but its arguments say num_classes={declared}"
            )
        from reseg.inference.postprocessing import (
            check_postprocessing,  # topology, numpy only; imported late against cycles
        )

        check_postprocessing(card.postprocessing, card.class_names, source)
        return card


def _check_fields(data: dict[str, Any]) -> None:
    """Every field a card feeds into building or running a network, checked for type and range."""
    name = require_text(data, "name")
    if not _SAFE_NAME.fullmatch(name):
        raise FieldProblem("name", f"must be letters, digits, '.', '_' or '-' (it names files), not {name!r}")
    require_text(data, "architecture")
    require_text(data, "modality")
    arguments = require_mapping(data["arguments"], "arguments")
    for key, value in arguments.items():
        where = f"arguments.{key}"
        if isinstance(value, list):
            for i, item in enumerate(value):
                require_number(item, f"{where}[{i}]", low=1, high=MAX_ARGUMENT, integer=True)
        elif isinstance(value, int) and not isinstance(value, bool):
            require_number(value, where, low=1, high=MAX_ARGUMENT, integer=True)
        elif isinstance(value, float):
            require_number(value, where, low=0)
        elif not isinstance(value, (str, bool)):
            raise FieldProblem(where, "must be a number, a list of whole numbers, text or true/false")
    require_classes(data["classes"], "classes")
    _check_normalization(require_mapping(data["normalization"], "normalization"))
    if data.get("input_spacing") is not None:
        require_numbers(
            data["input_spacing"], "input_spacing", lengths=(2, 3), low=MIN_INPUT_SPACING_MM, high=MAX_INPUT_SPACING_MM
        )
    for key in ("postprocessing", "deviations", "test_time_augmentation"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise FieldProblem(key, "must be a list of text")
    unknown = [name for name in data.get("test_time_augmentation", []) if name not in TEST_TIME_AUGMENTATIONS]
    if unknown:
        known = ", ".join(TEST_TIME_AUGMENTATIONS)
        raise FieldProblem("test_time_augmentation", f"names {', '.join(map(repr, unknown))}; known: {known}")
    parts = require_mapping(data.get("parts", {}), "parts")
    for key, value in parts.items():
        require_number(value, f"parts.{key}", low=0, integer=True)


def _check_normalization(spec: Any) -> None:
    method = spec.get("method")
    if method == PERCENTILE:
        lower = require_number(spec.get("lower", 1.0), "normalization.lower", low=0, high=100)
        upper = require_number(spec.get("upper", 99.0), "normalization.upper", low=0, high=100)
        if not lower < upper:
            raise FieldProblem("normalization", f"needs lower < upper percentile, not {lower:g} and {upper:g}")
    elif method == WINDOW:
        low = require_number(spec.get("low"), "normalization.low")
        high = require_number(spec.get("high"), "normalization.high")
        if not low < high:
            raise FieldProblem("normalization", f"needs an intensity window with low < high, not {low:g} and {high:g}")
    else:
        raise FieldProblem("normalization.method", f"must be '{PERCENTILE}' or '{WINDOW}', not {method!r}")


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


def card_json(card: ModelCard) -> str:
    return json.dumps(card.to_dict(), indent=2) + "\n"


def write_card(card: ModelCard, path: str | Path) -> None:
    """Write a card atomically (a full disk is an OutputError naming it, and leaves the earlier card)."""
    text = card_json(card)
    replace_atomically(Path(path), lambda temporary: temporary.write_text(text, encoding="utf-8"))


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
