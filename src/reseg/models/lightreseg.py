"""LightReSeg: a lightweight U-shaped retinal layer segmenter with Transformer global reasoning.

Reference: X. He, W. Song, Y. Wang, F. Poiesi, J. Yi, M. Desai, Q. Xu, K. Yang, Y. Wan,
"Lightweight Retinal Layer Segmentation With Global Reasoning", IEEE Transactions on Instrumentation and
Measurement 73 (2024), art. 2520214, doi:10.1109/TIM.2024.3400305, arXiv:2404.16346.

Written from the architecture description in ``shared/design/models.md``. Differences from the authors' code:

* The positional table is interpolated to the actual token grid, so any input size works (the original only
  runs at the one size its table and reshape were fixed for).
* The head is a plain 1x1 convolution; the original's ReLU + BatchNorm on the logits would fight cross-entropy.
* The channel-attention energies are computed in float32 even under autocast: they are sums over every pixel
  and overflow float16.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn

from reseg.models.architectures import register_architecture
from reseg.models.base import SegmentationNetwork
from reseg.models.folding import merge_channel_scales

ENCODER_WIDTHS = (16, 32, 64, 128)
BOTTLENECK_WIDTH = 256
POSITION_GRID = 38
"""Side of the learnable positional table (38 x 38 = 1444 tokens plus one for the class token), as in the
original. The table is bicubically resampled to the real token grid (a 496 x 768 B-scan gives 31 x 48); keeping
the original base size keeps the parameter count at the published ~3.3 M (3.30 M at 7 classes)."""
SKIP_ATTENTION_WEIGHT = 0.8


def _conv_relu_bn(in_channels: int, out_channels: int) -> list[nn.Module]:
    # The paper's order: activation before normalisation.
    return [
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(out_channels),
    ]


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(*_conv_relu_bn(in_channels, out_channels), *_conv_relu_bn(out_channels, out_channels))


def _separable_downsample(channels: int) -> nn.Sequential:
    """Halve the resolution with two depthwise-separable convolutions instead of pooling (learned, cheap)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, 3, stride=2, padding=1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, 1, groups=channels, bias=False),
        nn.Conv2d(channels, channels, 1, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(inplace=True),
    )


def _depthwise(channels: int, kernel: tuple[int, int]) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=channels)


class ChannelAttention(nn.Module):
    """Channel self-attention with inverted energies (DANet style); starts as the identity (gamma = 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.float().reshape(n, c, h * w)
            attended = self.weights(flat) @ flat
        return x + self.gamma * attended.reshape(n, c, h, w).to(x.dtype)

    @staticmethod
    def weights(flat: torch.Tensor) -> torch.Tensor:
        """The (N, C, C) attention of float32 (N, C, H*W) maps: softmax of the inverted channel energies."""
        energy = flat @ flat.transpose(1, 2)
        return torch.softmax(energy.amax(dim=-1, keepdim=True) - energy, dim=-1)


class MultiScaleAsymmetricAttention(nn.Module):
    """MAA: a 5x5 local context plus three strip-convolution branches (7, 11, 3), each refined by channel
    attention, fused by a 1x1 convolution into a gate that multiplies the input."""

    strip_lengths = (7, 11, 3)

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.local = _depthwise(channels, (5, 5))
        self.strips = nn.ModuleList(
            nn.Sequential(_depthwise(channels, (1, k)), _depthwise(channels, (k, 1))) for k in self.strip_lengths
        )
        self.channel_attention = nn.ModuleList(ChannelAttention() for _ in range(1 + len(self.strip_lengths)))
        self.fuse = nn.Conv2d(channels * (1 + len(self.strip_lengths)), channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.local(x)
        maps = [local, *(strip(local) for strip in self.strips)]
        attended = [attention(m) for attention, m in zip(self.channel_attention, maps, strict=True)]
        return self.fuse(torch.cat(attended, dim=1)) * x


class FoldedAsymmetricAttention(nn.Module):
    """MAA for inference with each branch's channel attention folded into the fuse convolution.

    With W_i the fuse weights of branch i and A_i its attention, fuse(cat(m_i + g_i A_i m_i)) equals
    sum_i (W_i + g_i W_i A_i) m_i + b: a small (C x C) matrix per image and branch replaces an attended copy of
    every full-resolution map and their concatenation. Exact up to float rounding.
    """

    def __init__(self, attention: MultiScaleAsymmetricAttention) -> None:
        super().__init__()
        self.local, self.strips = attention.local, attention.strips
        gammas = tuple(a.gamma for a in attention.channel_attention if isinstance(a, ChannelAttention))
        self.gammas = nn.Parameter(torch.cat(gammas).detach(), requires_grad=False)
        fuse = attention.fuse
        branches = len(attention.channel_attention)
        weight = fuse.weight.detach()[:, :, 0, 0].reshape(fuse.out_channels, branches, -1).transpose(0, 1)
        self.branch_weights = nn.Parameter(weight.contiguous(), requires_grad=False)  # (branches, C, C)
        bias = fuse.bias.detach() if fuse.bias is not None else torch.zeros(fuse.out_channels)
        self.bias = nn.Parameter(bias[:, None].clone(), requires_grad=False)  # (C, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        local = self.local(x)
        maps = [local, *(strip(local) for strip in self.strips)]
        with torch.autocast(device_type=x.device.type, enabled=False):
            fused = self.bias
            for weight, gamma, branch in zip(self.branch_weights, self.gammas, maps, strict=True):
                flat = branch.float().reshape(n, c, h * w)
                folded = weight + gamma * (weight @ ChannelAttention.weights(flat))
                fused = fused + folded @ flat
        return fused.reshape(n, c, h, w).to(x.dtype) * x


class _SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * heads * head_dim, bias=False)
        self.to_out = nn.Linear(heads * head_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.to_qkv(x).reshape(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class _TransformerLayer(nn.Module):
    """Pre-norm Transformer layer: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = _SelfAttention(dim, heads, head_dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attention_norm(x))
        return x + self.mlp(self.mlp_norm(x))


class GlobalReasoning(nn.Module):
    """Every pixel of the 1/16 map is a token; a small ViT relates them all and the result is added back."""

    def __init__(self, dim: int = 128, depth: int = 3, heads: int = 8, head_dim: int = 64, mlp_dim: int = 768) -> None:
        super().__init__()
        self.embed = nn.Linear(dim, dim)
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.position = nn.Parameter(torch.zeros(1, 1 + POSITION_GRID * POSITION_GRID, dim))
        self.dropout = nn.Dropout(0.5)
        self.layers = nn.Sequential(*(_TransformerLayer(dim, heads, head_dim, mlp_dim) for _ in range(depth)))
        for parameter in (self.class_token, self.position):
            nn.init.trunc_normal_(parameter, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _position_for(self, height: int, width: int) -> torch.Tensor:
        """The learned table resampled to a height x width grid (antialiased when shrinking)."""
        class_position, grid = self.position[:, :1], self.position[:, 1:]
        if (height, width) != (POSITION_GRID, POSITION_GRID):
            grid = grid.reshape(1, POSITION_GRID, POSITION_GRID, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(height, width), mode="bicubic", align_corners=False, antialias=True)
            grid = grid.flatten(2).transpose(1, 2)
        return torch.cat([class_position, grid], dim=1)

    def forward(self, x: torch.Tensor, position: torch.Tensor | None = None) -> torch.Tensor:
        """`position`: the table `_position_for` gives for this token grid, when the caller has it already."""
        b, c, h, w = x.shape
        tokens = self.embed(x.flatten(2).transpose(1, 2))
        tokens = torch.cat([self.class_token.expand(b, -1, -1), tokens], dim=1)
        tokens = self.dropout(tokens + (self._position_for(h, w) if position is None else position))
        tokens = self.layers(tokens)[:, 1:]
        return x + tokens.transpose(1, 2).reshape(b, c, h, w)


class _DecoderStep(nn.Module):
    """Upsample x2 with a transposed conv (halving channels) and add the MAA-refined skip."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        out_channels = in_channels // 2
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
        self.skip_attention: nn.Module = MultiScaleAsymmetricAttention(out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        skip = skip + SKIP_ATTENTION_WEIGHT * self.skip_attention(skip)
        return self.up(x) + skip


@register_architecture("lightreseg")
class LightReSeg(SegmentationNetwork):
    """LightReSeg (He et al., IEEE TIM 2024); about 3.30 M parameters at 7 classes, any input size."""

    attention_heads = 8  # the global reasoning's, as in the original
    card_notes = (
        "Head is a plain 1x1 convolution: the original's ReLU + BatchNorm on the logits is dropped (it fights "
        "cross-entropy).",
        "The learned 38x38 positional table is resampled bicubically to the token grid, so any input size runs "
        "(the original runs at one size only).",
    )

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        super().__init__(in_channels, num_classes)
        widths = (in_channels, *ENCODER_WIDTHS)
        self.encoder = nn.ModuleList(_double_conv(a, b) for a, b in itertools.pairwise(widths))
        self.downsample = nn.ModuleList(_separable_downsample(c) for c in ENCODER_WIDTHS)
        self.global_reasoning = GlobalReasoning(ENCODER_WIDTHS[-1], heads=self.attention_heads)
        self.bottleneck = _double_conv(ENCODER_WIDTHS[-1], BOTTLENECK_WIDTH)
        self.decoder = nn.ModuleList(_DecoderStep(2 * c) for c in reversed(ENCODER_WIDTHS))
        self.head = nn.Conv2d(ENCODER_WIDTHS[0], num_classes, 1)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_padded(self, x: torch.Tensor, **grid_inputs: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage, down in zip(self.encoder, self.downsample, strict=True):
            x = stage(x)
            skips.append(x)
            x = down(x)
        x = self.bottleneck(self.global_reasoning(x, grid_inputs.get("position")))
        for step, skip in zip(self.decoder, reversed(skips), strict=True):
            x = step(x, skip)
        return self.head(x)

    def grid_inputs(self, height: int, width: int) -> dict[str, torch.Tensor]:
        """The positional table resampled to the token grid of a padded height x width input: computed once per
        size at inference (and an input of an exported graph, which has no antialiased bicubic resize)."""
        tokens = (height // self.size_multiple, width // self.size_multiple)
        return {"position": self.global_reasoning._position_for(*tokens).detach()}

    def folded_for_inference(self) -> SegmentationNetwork:
        """Besides batch norm: each downsample's depthwise 1x1 into the 1x1 after it, each decoder step's channel
        attention into its fuse convolution (`FoldedAsymmetricAttention`)."""
        folded = super().folded_for_inference()
        assert isinstance(folded, LightReSeg)  # a copy of this network
        merge_channel_scales(folded)
        for step in folded.decoder:
            assert isinstance(step, _DecoderStep) and isinstance(step.skip_attention, MultiScaleAsymmetricAttention)
            step.skip_attention = FoldedAsymmetricAttention(step.skip_attention)
        return folded.requires_grad_(False)
