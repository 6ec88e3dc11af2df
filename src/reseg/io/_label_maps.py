"""What a label map written by `write_labels` says about itself: its classes (names, colours), the modality
and the scan it belongs to, stored inside the file (an ImageJ property of a TIFF, a comment extension of a
NIfTI whose intent is "label"), so that reopening it anywhere gives labels with names, not a grey image.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reseg.classes import SegmentationClass
from reseg.errors import InputError

LABEL_MAP_FORMAT = "reseg-labels"
LABEL_MAP_VERSION = 1
# The ImageJ property (TIFF) that holds the description; NIfTI files hold the same JSON in a comment extension.
TIFF_PROPERTY = "reseg_labels"


@dataclass(frozen=True)
class LabelMapDescription:
    classes: tuple[SegmentationClass, ...]
    modality: str
    scan: str | None  # the path of the scan the labels were made for, when it came from a file
    ndim: int = 3  # the scan's dimensions on disk: a one-slice stack stays 3-D (a TIFF page cannot tell)

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": LABEL_MAP_FORMAT,
                "version": LABEL_MAP_VERSION,
                "modality": self.modality,
                "scan": self.scan,
                "ndim": self.ndim,
                "classes": [c.to_dict() for c in self.classes],
            }
        )


def describe(classes: Sequence[SegmentationClass], modality: str, scan: Path, ndim: int) -> LabelMapDescription:
    """The description of labels made for `scan` (a path that does not exist, like "<array>", is not kept)."""
    return LabelMapDescription(tuple(classes), modality, str(scan.resolve()) if scan.exists() else None, ndim)


def parse(source: Path, text: str) -> LabelMapDescription | None:
    """The description in `text` if it is one of ours, else None; ours but malformed is an InputError."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    if not isinstance(data, dict) or data.get("format") != LABEL_MAP_FORMAT:
        return None
    version = data.get("version")
    if not isinstance(version, int) or version > LABEL_MAP_VERSION:
        raise InputError(
            source,
            f"its label description has version {version!r}; this napari-reseg reads up to "
            f"{LABEL_MAP_VERSION} (update napari-reseg)",
        )
    try:
        classes = tuple(SegmentationClass.from_dict(entry) for entry in data["classes"])
        modality, scan, ndim = str(data["modality"]), data.get("scan"), int(data.get("ndim", 3))
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(source, f"its label description is malformed ({error!r} in 'classes' or 'modality')") from None
    if not classes or len({c.index for c in classes}) != len(classes):
        raise InputError(source, "its label description lists no classes or the same class value twice")
    if ndim not in (2, 3):
        raise InputError(source, f"its label description says the labels are {ndim}-D; expected 2 or 3")
    return LabelMapDescription(classes, modality, scan if isinstance(scan, str) else None, ndim)
