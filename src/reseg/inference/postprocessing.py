"""Label post-processing a model card can ask for: steps applied to a model's labels after the argmax.

A card lists step names under `postprocessing`; inference applies them in order unless the caller asks for
the raw labels. Names are checked when the model loads, so a card naming an unknown step fails at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from reseg.classes import OCT_CLASSES
from reseg.errors import CheckpointError
from reseg.topology import confine_to_retina

POSTPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "confine_to_retina": confine_to_retina,  # OCT: vitreous above, choroid below the retina's envelope
}
# The classes a step's rules are written for; a card with other classes cannot use it.
REQUIRED_CLASSES: dict[str, list[str]] = {"confine_to_retina": [c.name for c in OCT_CLASSES]}


def check_postprocessing(names: Sequence[str], class_names: Sequence[str], card_path: str | Path) -> None:
    unknown = [name for name in names if name not in POSTPROCESSING]
    if unknown:
        raise CheckpointError(
            card_path,
            f"names unknown post-processing {', '.join(map(repr, unknown))}; known: {', '.join(POSTPROCESSING)}",
        )
    for name in names:
        required = REQUIRED_CLASSES.get(name)
        if required is not None and list(class_names) != required:
            raise CheckpointError(
                card_path,
                f"post-processing {name!r} works on the classes "
                f"{', '.join(required)}, not on this card's {', '.join(class_names)}",
            )


def postprocess(names: Sequence[str], labels: np.ndarray) -> np.ndarray:
    """`labels` ((H, W) or (Z, H, W)) after each named step in turn."""
    for name in names:
        labels = POSTPROCESSING[name](labels)
    return labels
