"""Checks of single fields that the validators of our JSON files share (model cards, session headers,
export manifests). Each raises `FieldProblem` naming the field; the validator that called it adds the file's
name and raises the error type of its file, so a user reads e.g. "unet.json: field 'input_spacing': ...".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal, overload

from reseg.classes import IGNORE_INDEX

MAX_CLASSES = IGNORE_INDEX  # labels are uint8, and 255 is kept for unreviewed pixels


class FieldProblem(ValueError):
    """A field of a JSON document that is missing, of the wrong type or out of range."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"field '{field}' {problem}")


def require_mapping(data: object, field: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise FieldProblem(field, f"must be a JSON object, not {_kind(data)}")
    return data


@overload
def require_text(
    data: Mapping[str, Any], field: str, *, optional: Literal[False] = False, where: str | None = None
) -> str: ...
@overload
def require_text(data: Mapping[str, Any], field: str, *, optional: bool, where: str | None = None) -> str | None: ...
def require_text(
    data: Mapping[str, Any], field: str, *, optional: bool = False, where: str | None = None
) -> str | None:
    """`data[field]` as non-empty text (or None when `optional`); `where` names it in a nested document."""
    value = data.get(field)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise FieldProblem(where or field, f"must be non-empty text, not {_kind(value)}")
    return value


def require_number(
    value: object,
    field: str,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    integer: bool = False,
) -> float:
    """A finite JSON number (booleans are not numbers), within [low, high] and > above where given."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldProblem(field, f"must be a number, not {_kind(value)}")
    if not math.isfinite(value):
        raise FieldProblem(field, f"must be finite, not {value}")
    if integer and value != int(value):
        raise FieldProblem(field, f"must be a whole number, not {value}")
    if above is not None and not value > above:
        raise FieldProblem(field, f"must be above {above:g}, not {value:g}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"{low:g}..{high:g}"
            if low is not None and high is not None
            else (f">= {low:g}" if low is not None else f"<= {high:g}")
        )
        raise FieldProblem(field, f"must be {bounds}, not {value:g}")
    return value


def require_numbers(value: object, field: str, *, lengths: tuple[int, ...], **bounds: Any) -> list[float]:
    """A JSON list of `lengths` numbers, each checked as `require_number` with `bounds`."""
    if not isinstance(value, list) or len(value) not in lengths:
        wanted = " or ".join(str(n) for n in lengths)
        raise FieldProblem(field, f"must be a list of {wanted} numbers, not {_kind(value)}")
    return [require_number(item, f"{field}[{i}]", **bounds) for i, item in enumerate(value)]


def require_classes(value: object, field: str) -> list[Mapping[str, Any]]:
    """A list of classes {index, name, color}: labels are uint8 with 255 kept for unreviewed pixels."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_CLASSES:
        raise FieldProblem(field, f"must be a list of 1..{MAX_CLASSES} classes, not {_kind(value)}")
    classes = [require_mapping(entry, f"{field}[{i}]") for i, entry in enumerate(value)]
    for i, entry in enumerate(classes):
        require_number(entry.get("index"), f"{field}[{i}].index", low=0, high=MAX_CLASSES - 1, integer=True)
        require_text(entry, "name", where=f"{field}[{i}].name")
        require_numbers(entry.get("color"), f"{field}[{i}].color", lengths=(3,), low=0, high=255, integer=True)
    indices = [entry["index"] for entry in classes]
    if len(set(indices)) != len(indices):
        raise FieldProblem(field, f"has repeated indices {sorted(indices)}")
    return classes


def _kind(value: object) -> str:
    if value is None:
        return "missing"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"
