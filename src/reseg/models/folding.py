"""Exact inference folds: layers that are affine in eval mode merged into the convolution they follow.

A folded network computes the same function up to float rounding with fewer passes over memory, which is
what limits these small-channel networks on a CPU. Only folds that are exact everywhere, borders included,
are made: a batch norm *after* a ReLU feeding a zero-padded convolution is left alone, since its shift would
reach the padded border differently.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import skip_init
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norms(module: nn.Module) -> None:
    """In place: each BatchNorm2d directly after a Conv2d in a Sequential goes into that convolution."""
    for sequence in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for index in range(len(sequence) - 1):
            conv, norm = sequence[index], sequence[index + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                sequence[index] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                sequence[index + 1] = nn.Identity()


def _is_channel_scale(conv: nn.Module) -> bool:
    """A depthwise 1x1 convolution: one multiplier (and offset) per channel."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.groups == conv.in_channels == conv.out_channels
    )


def _is_pointwise(conv: nn.Module) -> bool:
    return isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1


@torch.no_grad()
def merge_channel_scales(module: nn.Module) -> None:
    """In place: a depthwise 1x1 convolution followed by a 1x1 convolution becomes that one convolution,
    W (d x + c) + b = (W diag d) x + (W c + b)."""
    for sequence in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        for index in range(len(sequence) - 1):
            scale, pointwise = sequence[index], sequence[index + 1]
            if not (_is_channel_scale(scale) and _is_pointwise(pointwise)):
                continue
            assert isinstance(scale, nn.Conv2d) and isinstance(pointwise, nn.Conv2d)  # checked just above
            weight = pointwise.weight[:, :, 0, 0]
            bias = pointwise.bias if pointwise.bias is not None else torch.zeros_like(weight[:, 0])
            if scale.bias is not None:
                bias = bias + weight @ scale.bias
            merged = skip_init(nn.Conv2d, pointwise.in_channels, pointwise.out_channels, 1)  # no random draws
            merged.weight = nn.Parameter((weight * scale.weight[:, 0, 0, 0])[:, :, None, None].clone())
            merged.bias = nn.Parameter(bias.clone())
            sequence[index] = nn.Identity()
            sequence[index + 1] = merged.to(pointwise.weight)
