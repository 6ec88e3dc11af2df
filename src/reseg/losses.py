"""Training loss: Dice (MONAI) + cross-entropy, both skipping pixels labelled IGNORE_INDEX."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss
from torch import nn

from .classes import IGNORE_INDEX


class DiceCrossEntropyLoss(nn.Module):
    """Dice + cross-entropy over known pixels; unreviewed pixels (IGNORE_INDEX) contribute nothing."""

    def __init__(self, ignore_index: int = IGNORE_INDEX, dice_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.dice = MaskedDiceLoss(to_onehot_y=True, softmax=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (N, K, H, W), target (N, H, W) integer labels."""
        known = target != self.ignore_index
        safe_target = torch.where(known, target, torch.zeros_like(target)).long()
        dice = self.dice(logits, safe_target[:, None], mask=known[:, None].float())
        ce = F.cross_entropy(logits, target.long(), ignore_index=self.ignore_index)
        return self.dice_weight * dice + self.ce_weight * ce
