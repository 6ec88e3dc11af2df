"""A training set's `dataset.json` (classes, modality, items with their provenance): the file's name, format tag
and reader. JSON only, so the Fine-tune widget can look into an export folder without the imaging libraries.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError

DATASET_FILE = "dataset.json"
DATASET_FORMAT = "reseg-dataset"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's dataset.json as a dict; {} when there is none; unreadable JSON is an InputError naming it."""
    path = folder / DATASET_FILE
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(path, f"is not readable JSON ({error})") from None
