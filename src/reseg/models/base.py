"""What every segmentation network shares: any input size, raw logits, an optional auxiliary loss."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from reseg.models.folding import fold_batch_norms


class SegmentationNetwork(nn.Module):
    """A 2D network mapping (N, C, H, W) images to (N, K, H, W) logits at any H and W.

    Subclasses implement :meth:`forward_padded`, which only ever sees inputs whose height and width are
    multiples of :attr:`size_multiple`; padding (reflect where possible) and cropping back happen here once.
    """

    size_multiple: int = 16
    card_notes: tuple[str, ...] = ()  # deviations from the published architecture, copied into model cards
    attention_heads: int | None = None  # heads of its scaled-dot-product attention (one count for all layers)

    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
        self.in_channels = in_channels
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        return self.forward_padded(self.pad_input(x))[..., :height, :width]

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        """Check an (N, C, H, W) input and pad it (reflect where possible) to multiples of `size_multiple`."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        pad_h = -height % self.size_multiple
        pad_w = -width % self.size_multiple
        if pad_h or pad_w:
            mode = "reflect" if pad_h < height and pad_w < width else "replicate"
            x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
        return x

    def forward_padded(self, x: torch.Tensor, **grid_inputs: torch.Tensor) -> torch.Tensor:
        """Logits of a padded input; `grid_inputs` are what `grid_inputs()` gave for its size (recomputed when
        absent), so that inference computes them once per size and an exported graph takes them as inputs."""
        raise NotImplementedError

    def grid_inputs(self, height: int, width: int) -> dict[str, torch.Tensor]:
        """Tensors besides the image that depend only on the padded input size (none by default)."""
        return {}

    def folded_for_inference(self) -> SegmentationNetwork:
        """An eval-mode copy with exact inference folds applied (batch norm into the convolution before it;
        subclasses add their own). The copy gives the same logits up to float rounding and cannot be trained."""
        folded = copy.deepcopy(self).eval()
        fold_batch_norms(folded)
        return folded.requires_grad_(False)

    def parts(self) -> dict[str, int]:
        """The parts a user may freeze when training (the top-level modules with parameters) and their
        parameter counts."""
        return {
            name: sum(p.numel() for p in part.parameters())
            for name, part in self.named_children()
            if any(True for _ in part.parameters())
        }

    def auxiliary_loss(self) -> torch.Tensor:
        """Extra training loss from the last forward pass (e.g. vector-quantisation losses); zero by default."""
        return torch.zeros((), device=next(self.parameters()).device)
