"""Post-processing a model card can ask for: what turns a network's class probabilities into labels.

A card lists step names under `postprocessing`; inference applies them unless the caller asks for the raw
argmax. A probability step (`layer_surfaces`) replaces the argmax: it reads the class probabilities and gives
labels and the surfaces they come from. Label steps then run in the card's order on the labels (and, for
image steps such as `confine_to_body`, the image they came from), batch by batch. Volume steps
(`drop_organ_fragments`) need the whole stack and its voxel size: they run once every slice is done. Names are
checked when the model loads, so a card naming an unknown step fails at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reseg.classes import CT_CLASSES, OCT_CLASSES
from reseg.errors import CheckpointError
from reseg.inference.body import confine_to_body
from reseg.inference.organs import drop_organ_fragments
from reseg.inference.surfaces import surface_labels
from reseg.topology import confine_to_retina

POSTPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "confine_to_retina": confine_to_retina,  # OCT: vitreous above, choroid below the retina's envelope
}
# (labels, the image they were computed from) -> labels
IMAGE_STEPS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "confine_to_body": confine_to_body,  # CT: no organ outside the patient's body outline
}
# (Z, H, W) labels of a whole stack, its (z, y, x) spacing in mm -> labels
VOLUME_STEPS: dict[str, Callable[[np.ndarray, Sequence[float]], np.ndarray]] = {
    "drop_organ_fragments": drop_organ_fragments,  # CT: no organ as a speck apart from its body
}
# (N, C, H, W) probabilities, the in-plane (y, x) spacing in mm if known -> (N, H, W) labels and the
# (8, N, W) surfaces they are filled from
ProbabilityStep = Callable[[np.ndarray, Sequence[float] | None], tuple[np.ndarray, np.ndarray]]
PROBABILITY_STEPS: dict[str, ProbabilityStep] = {
    "layer_surfaces": surface_labels,  # OCT: the most probable ordered boundaries per A-scan
}
# The classes a step's rules are written for; a card with other classes cannot use it.
REQUIRED_CLASSES: dict[str, list[str]] = {
    "confine_to_retina": [c.name for c in OCT_CLASSES],
    "layer_surfaces": [c.name for c in OCT_CLASSES],
    "confine_to_body": [c.name for c in CT_CLASSES],
    "drop_organ_fragments": [c.name for c in CT_CLASSES],
}


def check_postprocessing(names: Sequence[str], class_names: Sequence[str], card_path: str | Path) -> None:
    known = [*PROBABILITY_STEPS, *POSTPROCESSING, *IMAGE_STEPS, *VOLUME_STEPS]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CheckpointError(
            card_path, f"names unknown post-processing {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    if len([name for name in names if name in PROBABILITY_STEPS]) > 1:
        raise CheckpointError(card_path, "names more than one step that replaces the argmax")
    for name in names:
        required = REQUIRED_CLASSES.get(name)
        if required is not None and list(class_names) != required:
            raise CheckpointError(
                card_path,
                f"post-processing {name!r} works on the classes "
                f"{', '.join(required)}, not on this card's {', '.join(class_names)}",
            )


def probability_step(names: Sequence[str]) -> ProbabilityStep | None:
    """The step among `names` that replaces the argmax, if any."""
    return next((PROBABILITY_STEPS[name] for name in names if name in PROBABILITY_STEPS), None)


def postprocess(names: Sequence[str], labels: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`labels` ((H, W) or (Z, H, W)) after each named label step in turn; `image` is what they were computed
    from, as read (CT in Hounsfield units)."""
    for name in names:
        if name in POSTPROCESSING:
            labels = POSTPROCESSING[name](labels)
        elif name in IMAGE_STEPS:
            labels = IMAGE_STEPS[name](labels, image)
    return labels


def volume_steps(names: Sequence[str]) -> list[str]:
    """The steps among `names` that need the whole stack."""
    return [name for name in names if name in VOLUME_STEPS]


def postprocess_volume(names: Sequence[str], labels: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """A whole (Z, H, W) stack's `labels` after each named volume step in turn; `spacing` (z, y, x) in mm."""
    for name in volume_steps(names):
        labels = VOLUME_STEPS[name](labels, spacing)
    return labels
