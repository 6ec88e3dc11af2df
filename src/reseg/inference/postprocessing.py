"""Post-processing a model card can ask for: what turns a network's class probabilities into labels.

A card lists step names under `postprocessing`; inference applies them unless the caller asks for the raw
argmax. A probability step (`layer_surfaces`) replaces the argmax: it reads the class probabilities and gives
labels and the surfaces they come from. Label steps then run in the card's order on the labels (and, for
image steps such as `confine_to_body`, the image they came from), batch by batch. Volume steps
(`drop_organ_fragments`) need the whole stack and its voxel size: they run once every slice is done. Names are
checked when the model loads, so a card naming an unknown step fails at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reseg.classes import CT_CLASSES, OCT_CLASSES
from reseg.errors import CheckpointError

_OCT = tuple(c.name for c in OCT_CLASSES)
_CT = tuple(c.name for c in CT_CLASSES)


@dataclass(frozen=True)
class _Step:
    """A post-processing step: what it takes, where it lives (imported when it first runs, so that reading
    a card costs no scipy), and the classes its rules are written for (a card with others cannot use it)."""

    kind: str  # "probability", "labels", "image" or "volume"
    function: str  # "module:attribute"
    classes: tuple[str, ...]


STEPS = {
    # (N, C, H, W) probabilities, the in-plane (y, x) spacing in mm if known -> (N, H, W) labels and the
    # (8, N, W) surfaces they are filled from. OCT: the most probable ordered boundaries per A-scan.
    "layer_surfaces": _Step("probability", "reseg.inference.surfaces:surface_labels", _OCT),
    # labels -> labels. OCT: vitreous above, choroid below the retina's envelope.
    "confine_to_retina": _Step("labels", "reseg.topology:confine_to_retina", _OCT),
    # (labels, the image they were computed from) -> labels. CT: no organ outside the patient's body outline.
    "confine_to_body": _Step("image", "reseg.inference.body:confine_to_body", _CT),
    # (Z, H, W) labels of a whole stack, changed in place, and its (z, y, x) spacing in mm. CT: no organ as a
    # speck apart from its body.
    "drop_organ_fragments": _Step("volume", "reseg.inference.organs:drop_organ_fragments", _CT),
}
ProbabilityStep = Callable[[np.ndarray, Sequence[float] | None], tuple[np.ndarray, np.ndarray]]


def _function(name: str) -> Callable[..., Any]:
    module, attribute = STEPS[name].function.split(":")
    return getattr(importlib.import_module(module), attribute)


def _named(names: Sequence[str], kind: str) -> list[str]:
    return [name for name in names if name in STEPS and STEPS[name].kind == kind]


def check_postprocessing(names: Sequence[str], class_names: Sequence[str], card_path: str | Path) -> None:
    known = list(STEPS)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CheckpointError(
            card_path, f"names unknown post-processing {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    if len(_named(names, "probability")) > 1:
        raise CheckpointError(card_path, "names more than one step that replaces the argmax")
    for name in names:
        required = list(STEPS[name].classes)
        if list(class_names) != required:
            raise CheckpointError(
                card_path,
                f"post-processing {name!r} works on the classes "
                f"{', '.join(required)}, not on this card's {', '.join(class_names)}",
            )


def probability_step(names: Sequence[str]) -> ProbabilityStep | None:
    """The step among `names` that replaces the argmax, if any."""
    chosen = _named(names, "probability")
    return _function(chosen[0]) if chosen else None


def postprocess(names: Sequence[str], labels: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`labels` ((H, W) or (Z, H, W)) after each named label step in turn; `image` is what they were computed
    from, as read (CT in Hounsfield units)."""
    for name in names:
        kind = STEPS[name].kind if name in STEPS else None
        if kind == "labels":
            labels = _function(name)(labels)
        elif kind == "image":
            labels = _function(name)(labels, image)
    return labels


def volume_steps(names: Sequence[str]) -> list[str]:
    """The steps among `names` that need the whole stack."""
    return _named(names, "volume")


def postprocess_volume(names: Sequence[str], labels: np.ndarray, spacing: Sequence[float]) -> None:
    """Each named volume step in turn on a whole (Z, H, W) stack's `labels`, in place; `spacing` (z, y, x)
    in mm."""
    for name in volume_steps(names):
        _function(name)(labels, spacing)
