"""Segmentation networks (LightReSeg, L2GNet) and the table of architectures model cards name."""

from reseg.models import l2gnet, lightreseg  # noqa: F401  (defines the architectures)
from reseg.models.architectures import ARCHITECTURES, build_network, count_parameters, register_architecture
from reseg.models.base import SegmentationNetwork

__all__ = [
    "ARCHITECTURES",
    "SegmentationNetwork",
    "build_network",
    "count_parameters",
    "register_architecture",
]
