"""How much a grader changed the model's prediction, per slice: the edit statistics recorded with an export.

They tell a reader of a training set how far each corrected slice is from what the model produced (a slice
accepted unchanged is weak evidence; a heavily corrected one is where the model fails), and they let a
grader see at a glance which B-scans they actually touched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reseg.classes import IGNORE_INDEX


def slice_edit_statistics(prediction: np.ndarray, corrected: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Edit statistics of one (H, W) slice: the model's ``prediction`` against the grader's ``corrected``.

    Returns a JSON-serialisable dict:

    - ``pixels_changed`` / ``fraction_changed``: pixels whose label differs (of all pixels in the slice);
    - ``removed`` / ``added``: ``{class index: pixels}`` for every class, pixels that left / joined it;
    - ``dice``: ``{class index: Dice}`` between prediction and correction, counted directly (the overlap of
      a class is its unchanged pixels), ``None`` for a class absent from both, 0 for a class only one has;
    - ``mean_dice``: the mean of the non-``None`` Dice values (all classes, background included), or ``None``.

    Pixels the correction sets to ``IGNORE_INDEX`` count as changed and as removed from their predicted
    class, but join no class and take no part in the Dice. ``prediction`` must hold classes below
    ``num_classes``, ``corrected`` those or ``IGNORE_INDEX``. Dict keys are ints; ``json.dumps`` writes them
    as strings.
    """
    prediction = np.asarray(prediction)
    corrected = np.asarray(corrected)
    if prediction.ndim != 2 or prediction.shape != corrected.shape:
        raise ValueError(f"expected two (H, W) label maps of one shape, got {prediction.shape} and {corrected.shape}")

    def count(values: np.ndarray) -> np.ndarray:
        return np.bincount(values.ravel(), minlength=num_classes)[:num_classes]

    known = corrected != IGNORE_INDEX
    changed = prediction != corrected
    pixels_changed = int(np.count_nonzero(changed))
    removed, added = count(prediction[changed]), count(corrected[changed])
    # Dice_k = 2 |P_k and C_k| / (|P_k| + |C_k|) over known pixels; the overlap is the unchanged pixels of k.
    overlap = count(prediction[known & ~changed])
    sizes = count(prediction[known]) + count(corrected[known])
    dice = [2 * float(overlap[k]) / sizes[k] if sizes[k] else None for k in range(num_classes)]
    scored = [d for d in dice if d is not None]
    return {
        "pixels_changed": pixels_changed,
        "fraction_changed": pixels_changed / prediction.size,
        "removed": {k: int(removed[k]) for k in range(num_classes)},
        "added": {k: int(added[k]) for k in range(num_classes)},
        "dice": dict(enumerate(dice)),
        "mean_dice": float(np.mean(scored)) if scored else None,
    }


def volume_edit_statistics(prediction: np.ndarray, corrected: np.ndarray, num_classes: int) -> list[dict[str, Any]]:
    """:func:`slice_edit_statistics` for every slice of two (Z, H, W) volumes, each dict with its ``slice``.

    Counting is a few bincounts per slice, so a 49-B-scan volume costs a fraction of a second.
    """
    prediction = np.asarray(prediction)
    corrected = np.asarray(corrected)
    if prediction.ndim != 3 or prediction.shape != corrected.shape:
        raise ValueError(f"expected two (Z, H, W) volumes of one shape, got {prediction.shape} and {corrected.shape}")
    return [
        {"slice": z, **slice_edit_statistics(prediction[z], corrected[z], num_classes)} for z in range(len(prediction))
    ]
