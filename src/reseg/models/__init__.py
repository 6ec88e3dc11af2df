"""Segmentation networks (LightReSeg, L2GNet), the architecture registry and the model zoo."""

from .base import SegmentationNetwork
from .registry import ARCHITECTURES, build_network, count_parameters, register_architecture
from . import lightreseg, l2gnet  # noqa: F401  (registers the architectures)

__all__ = [
    "ARCHITECTURES",
    "SegmentationNetwork",
    "build_network",
    "count_parameters",
    "register_architecture",
]
