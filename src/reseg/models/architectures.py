"""Architectures by name: model cards name an architecture by a string; this maps it to its class."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from reseg.models.base import SegmentationNetwork

ARCHITECTURES: dict[str, type[SegmentationNetwork]] = {}

T = TypeVar("T", bound=type[SegmentationNetwork])


def register_architecture(name: str) -> Callable[[T], T]:
    """Class decorator that makes an architecture buildable from a model card."""

    def decorate(cls: T) -> T:
        if name in ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is already defined")
        ARCHITECTURES[name] = cls
        return cls

    return decorate


def build_network(architecture: str, arguments: dict[str, Any]) -> SegmentationNetwork:
    """Instantiate a named architecture with the keyword arguments recorded in a model card."""
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES)) or "none"
        raise ValueError(f"unknown architecture {architecture!r} (known: {known})") from None
    return cls(**arguments)


def count_parameters(network: SegmentationNetwork) -> int:
    return sum(p.numel() for p in network.parameters())
