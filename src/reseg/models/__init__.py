"""Segmentation networks (LightReSeg, L2GNet) and the table of architectures model cards name."""

from reseg.models.base import SegmentationNetwork
from reseg.models.architectures import ARCHITECTURES, build_network, count_parameters, register_architecture
from reseg.models import lightreseg, l2gnet  # noqa: F401  (defines the architectures)

__all__ = [
    "ARCHITECTURES",
    "SegmentationNetwork",
    "build_network",
    "count_parameters",
    "register_architecture",
]
