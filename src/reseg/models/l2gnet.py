"""L2GNet: a UNet whose bottleneck is quantised and related globally by optimal transport.

Reference: V. Gorade, S. Mittal, D. Jha, U. Bagci et al., "L2GNet: Optimal Local-to-Global Representation of
Anatomical Structures for Generalized Medical Image Segmentation", arXiv:2502.05229 (PMLR 317, 2026).

No public code exists. The abstract fixes the ideas (discrete codes, optimal transport onto a trainable
reference, no attention weight matrices); every detail below is OUR READING, recorded in the model card:

* Backbone: a plain UNet, four encoder stages (two 3x3 conv -> BN -> ReLU each), max-pool downsampling,
  bottleneck at 1/16, decoder with transposed-conv upsampling and skip concatenation.
* Discrete latent: the bottleneck is projected (1x1) to ``code_dim`` and vector-quantised against a learnable
  codebook with a straight-through gradient, trained by the codebook loss ||sg(z) - e||^2 plus
  ``commitment_beta`` * ||z - sg(e)||^2 (losses rather than EMA updates, so the codebook is an ordinary
  parameter, as "the only parameters are the reference and the codebook" suggests). Dead codes are re-seeded
  from current encoder outputs; the very first training batch seeds the whole codebook this way.
* Local-to-global: the n codes of an image are transported onto a trainable reference of p slots with
  log-domain entropic Sinkhorn (uniform marginals). Codes and slots are L2-normalised for the cost
  C_ij = -cos(q_i, r_j) in [-1, 1], so epsilon = 0.1 means a temperature of a tenth of the cost range whatever
  the feature scale. G = p P^T Q gathers a global descriptor per slot (a barycentre of codes) and
  Z = n P G hands every position a mixture of them.
* Fusion: Z is projected back (1x1) to the bottleneck width, concatenated with the continuous bottleneck and
  mixed by a 1x1 conv -> BN -> ReLU before the decoder.

The quantiser and the transport run in float32 even under autocast (distances and Sinkhorn log-sums).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reseg.models.architectures import register_architecture
from reseg.models.base import SegmentationNetwork


def sinkhorn(cost: torch.Tensor, epsilon: float, iterations: int) -> torch.Tensor:
    """Entropic optimal transport with uniform marginals, solved in the log domain for stability.

    ``cost`` is (B, n, p); the returned plan is (B, n, p) with row sums 1/n and column sums 1/p (the columns
    exactly, the rows up to the convergence reached in ``iterations``). Differentiable through the unrolled loop.
    """
    n, p = cost.shape[-2:]
    log_kernel = -cost / epsilon
    log_row_mass, log_column_mass = -math.log(n), -math.log(p)
    row_potential = torch.zeros_like(cost[..., :, 0])
    column_potential = torch.zeros_like(cost[..., 0, :])
    for _ in range(iterations):
        row_potential = log_row_mass - torch.logsumexp(log_kernel + column_potential.unsqueeze(-2), dim=-1)
        column_potential = log_column_mass - torch.logsumexp(log_kernel + row_potential.unsqueeze(-1), dim=-2)
    return torch.exp(log_kernel + row_potential.unsqueeze(-1) + column_potential.unsqueeze(-2))


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser with straight-through gradients, usage tracking and dead-code re-seeding.

    A code is *dead* when no training batch selected it in the last ``dead_after`` training forwards; every
    ``dead_after`` training forwards the dead codes are replaced by randomly chosen current encoder outputs.
    Codes start out dead, so the first training batch seeds the whole codebook from data.
    """

    # Buffers (register_buffer in __init__), declared so that they are known as tensors.
    code_age: torch.Tensor
    code_frequency: torch.Tensor
    training_steps: torch.Tensor

    def __init__(
        self, num_codes: int, code_dim: int, commitment_beta: float, dead_after: int = 100, usage_decay: float = 0.99
    ) -> None:
        super().__init__()
        self.commitment_beta = commitment_beta
        self.dead_after = dead_after
        self.usage_decay = usage_decay
        self.codebook = nn.Parameter(torch.empty(num_codes, code_dim).uniform_(-1 / num_codes, 1 / num_codes))
        # Training forwards since each code was last selected; "never" is a large number.
        self.register_buffer("code_age", torch.full((num_codes,), 2**31, dtype=torch.long))
        # Exponential moving average of how often each code is selected (for the perplexity).
        self.register_buffer("code_frequency", torch.zeros(num_codes))
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Quantise z (..., D). Returns the straight-through codes and, in training, the VQ loss."""
        flat = z.reshape(-1, z.shape[-1])
        if self.training:
            self._reseed_dead_codes(flat.detach())
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ self.codebook.t() + self.codebook.square().sum(1)
        indices = distances.argmin(dim=1)
        codes = F.embedding(indices, self.codebook).reshape(z.shape)
        loss = None
        if self.training:
            loss = F.mse_loss(codes, z.detach()) + self.commitment_beta * F.mse_loss(z, codes.detach())
            self._record_usage(indices)
        return z + (codes - z).detach(), loss

    @torch.no_grad()
    def _record_usage(self, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.codebook.shape[0]).float()
        self.code_frequency.mul_(self.usage_decay).add_(counts / counts.sum(), alpha=1 - self.usage_decay)
        self.code_age.add_(1).masked_fill_(counts > 0, 0)
        self.training_steps.add_(1)

    @torch.no_grad()
    def _reseed_dead_codes(self, vectors: torch.Tensor) -> None:
        if int(self.training_steps) % self.dead_after:
            return
        dead = (self.code_age >= self.dead_after).nonzero().squeeze(1)
        if len(dead) == 0:
            return
        if len(vectors) >= len(dead):
            chosen = torch.randperm(len(vectors), device=vectors.device)[: len(dead)]
        else:
            chosen = torch.randint(len(vectors), (len(dead),), device=vectors.device)
        self.codebook[dead] = vectors[chosen].to(self.codebook.dtype)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Under DDP every rank reaches this point at the same step (the buffers deciding it are rank 0's),
            # but drew from its own batch: rank 0's new codes win, so the ranks' codebooks stay identical.
            torch.distributed.broadcast(self.codebook.data, src=0)

    def usage(self) -> dict[str, float]:
        """Perplexity of the recent code distribution (0 before any training forward), the fraction of codes
        selected in the last ``dead_after`` training forwards, and the number of dead codes."""
        total = self.code_frequency.sum()
        perplexity = 0.0
        if total > 0:
            probabilities = self.code_frequency / total
            perplexity = float(torch.exp(-(probabilities * probabilities.clamp_min(1e-12).log()).sum()))
        alive = self.code_age < self.dead_after
        return {
            "perplexity": perplexity,
            "used_fraction": float(alive.float().mean()),
            "dead_codes": int((~alive).sum()),
        }


class OptimalTransportGlobalizer(nn.Module):
    """Transport the codes of each image onto a trainable reference and redistribute the slot descriptors."""

    def __init__(self, num_slots: int, code_dim: int, epsilon: float, iterations: int) -> None:
        super().__init__()
        self.reference = nn.Parameter(torch.randn(num_slots, code_dim))
        self.epsilon = epsilon
        self.iterations = iterations

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, n, D) -> globally informed codes Z (B, n, D)."""
        cost = -F.normalize(codes, dim=-1) @ F.normalize(self.reference, dim=-1).t()
        plan = sinkhorn(cost, self.epsilon, self.iterations)
        n, p = plan.shape[-2:]
        slots = p * plan.transpose(1, 2) @ codes
        return n * plan @ slots


def _double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _UpStep(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2)
        self.conv = _double_conv(2 * out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([self.up(x), skip], dim=1))


@register_architecture("l2gnet")
class L2GNet(SegmentationNetwork):
    """L2GNet (Gorade et al., arXiv 2502.05229), our reading: UNet + VQ bottleneck + optimal transport."""

    card_notes = (
        "No public code exists: backbone widths, codebook size, code dimension, reference slots, the cosine "
        "transport cost, Sinkhorn settings and the concat fusion are this project's reading of the paper.",
    )

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 9,
        widths: Sequence[int] = (32, 64, 128, 256),
        bottleneck_channels: int = 512,
        code_dim: int = 64,
        num_codes: int = 512,
        num_slots: int = 64,
        sinkhorn_epsilon: float = 0.1,
        sinkhorn_iterations: int = 20,
        commitment_beta: float = 0.25,
    ) -> None:
        super().__init__(in_channels, num_classes)
        widths = tuple(widths)
        if len(widths) != 4:
            raise ValueError(f"L2GNet needs 4 encoder widths (bottleneck at 1/16), got {list(widths)}")
        self.widths = widths
        channels = (in_channels, *widths)
        self.encoder = nn.ModuleList(_double_conv(a, b) for a, b in itertools.pairwise(channels))
        self.bottleneck = _double_conv(widths[-1], bottleneck_channels)
        self.to_code = nn.Conv2d(bottleneck_channels, code_dim, 1)
        self.quantizer = VectorQuantizer(num_codes, code_dim, commitment_beta)
        self.globalizer = OptimalTransportGlobalizer(num_slots, code_dim, sinkhorn_epsilon, sinkhorn_iterations)
        self.from_code = nn.Conv2d(code_dim, bottleneck_channels, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * bottleneck_channels, bottleneck_channels, 1, bias=False),
            nn.BatchNorm2d(bottleneck_channels),
            nn.ReLU(inplace=True),
        )
        ups = (bottleneck_channels, *reversed(widths))
        self.decoder = nn.ModuleList(_UpStep(a, b) for a, b in itertools.pairwise(ups))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self._vq_loss: torch.Tensor | None = None

    def forward_padded(self, x: torch.Tensor, **grid_inputs: torch.Tensor) -> torch.Tensor:
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        bottleneck = self.bottleneck(x)
        b, _, h, w = bottleneck.shape
        with torch.autocast(device_type=x.device.type, enabled=False):
            z = self.to_code(bottleneck.float()).flatten(2).transpose(1, 2)
            codes, self._vq_loss = self.quantizer(z)
            global_codes = self.globalizer(codes)
        global_map = self.from_code(global_codes.transpose(1, 2).reshape(b, -1, h, w))
        x = self.fuse(torch.cat([bottleneck, global_map.to(bottleneck.dtype)], dim=1))
        for step, skip in zip(self.decoder, reversed(skips), strict=True):
            x = step(x, skip)
        return self.head(x)

    def auxiliary_loss(self) -> torch.Tensor:
        """The VQ loss (codebook + beta * commitment) of the last training forward; zero in eval."""
        if self._vq_loss is None:
            return super().auxiliary_loss()
        return self._vq_loss

    def codebook_usage(self) -> dict[str, float]:
        """Codebook health for training logs: perplexity, fraction of codes in use, number of dead codes."""
        return self.quantizer.usage()
