"""A training set's `dataset.json` (classes, modality, items with their provenance): the file's name, format tag,
reader and validator. JSON only, so the Fine-tune widget can look into an export folder without the imaging
libraries.

The validator is the one place that decides whether a manifest can be trusted: every file an item names must
lie inside the dataset's folder (a manifest is data from disk, and exports write to the names it lists).
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from reseg.errors import InputError
from reseg.fields import FieldProblem, require_classes, require_mapping, require_number, require_text

DATASET_FILE = "dataset.json"
DATASET_FORMAT = "reseg-dataset"


def read_manifest(folder: Path) -> dict[str, Any]:
    """The folder's dataset.json as a dict, validated; {} when there is none. An unreadable or invalid file is
    an InputError naming it and the field."""
    path = folder / DATASET_FILE
    if not path.exists():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(path, f"is not readable JSON ({error})") from None
    try:
        _check_manifest(require_mapping(manifest, DATASET_FILE), folder)
    except FieldProblem as problem:
        raise InputError(path, f"is not a valid training-set manifest: {problem}") from None
    return manifest


def item_path(folder: Path, name: str, field: str) -> Path:
    """Where the file an item's `field` names is; a FieldProblem for any name that leads outside `folder`."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or "\\" in name or ".." in relative.parts or not relative.parts:
        raise FieldProblem(field, f"{name!r} must be a path inside the dataset folder (no '..', not absolute)")
    path = folder / relative
    root = folder.resolve()
    if not path.resolve().is_relative_to(root):  # e.g. through a symbolic link
        raise FieldProblem(field, f"{name!r} leads outside the dataset folder {root}")
    return path


def _check_manifest(manifest: Any, folder: Path) -> None:
    """Our training-set manifest (top-level items) or an nnU-Net one exported by us (items under "reseg")."""
    if "classes" in manifest:
        require_classes(manifest["classes"], "classes")
    require_text(manifest, "modality", optional=True)
    if "ignore_index" in manifest:
        require_number(manifest["ignore_index"], "ignore_index", low=0, high=255, integer=True)
    _check_items(manifest.get("items", []), "items", folder)
    for value, allowed in require_mapping(manifest.get("label_sets", {}), "label_sets").items():
        if not value.isdigit() or not isinstance(allowed, list):
            raise FieldProblem(f"label_sets.{value}", "must map a label value to a list of class indices")
        for i, index in enumerate(allowed):
            require_number(index, f"label_sets.{value}[{i}]", low=0, high=254, integer=True)
    if isinstance(manifest.get("reseg"), dict):
        ours = manifest["reseg"]
        require_classes(ours.get("classes"), "reseg.classes")
        _check_items(ours.get("items", []), "reseg.items", folder)


def _check_items(items: Any, field: str, folder: Path) -> None:
    if not isinstance(items, list):
        raise FieldProblem(field, "must be a list of items")
    for i, item in enumerate(items):
        item = require_mapping(item, f"{field}[{i}]")
        for key in ("image", "label", *(("boundaries",) if "boundaries" in item else ())):  # boundaries: OCT only
            where = f"{field}[{i}].{key}"
            item_path(folder, require_text(item, key, where=where), where)
        if "slice" in item:
            require_number(item["slice"], f"{field}[{i}].slice", low=0, integer=True)
