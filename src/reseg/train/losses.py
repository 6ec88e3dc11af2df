"""Training loss: Dice (MONAI) + cross-entropy, for fully, partially and not labelled pixels.

- IGNORE_INDEX (unreviewed): contributes nothing.
- A *partial* label value v with a candidate set S_v (`label_sets`, e.g. "one of the non-fluid classes" for
  Duke DME B-scans whose layers are not annotated): the cross-entropy term is the marginal (set-valued)
  likelihood -log sum_{k in S_v} p_k, which says only that the class is one of S_v. Such pixels take no part
  in the Dice term, which needs a single class. For a one-class set this is exactly ordinary cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss
from torch import nn

from reseg.classes import IGNORE_INDEX


class DiceCrossEntropyLoss(nn.Module):
    """Dice + (marginal) cross-entropy; see the module docstring for the label values it understands."""

    def __init__(
        self,
        ignore_index: int = IGNORE_INDEX,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        label_sets: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.dice_weight = dice_weight
        self.ce_weight = ce_weight
        self.label_sets = {int(value): sorted(set(classes)) for value, classes in (label_sets or {}).items()}
        self.dice = MaskedDiceLoss(to_onehot_y=True, softmax=True, batch=True)

    def _candidates(self, target: torch.Tensor, num_classes: int) -> torch.Tensor:
        """(N, K, H, W) boolean: which classes each pixel's label allows (all False for ignored pixels)."""
        exact = (target >= 0) & (target < num_classes)
        allowed = F.one_hot(torch.where(exact, target, 0).long(), num_classes).permute(0, 3, 1, 2).bool()
        allowed &= exact[:, None]
        for value, classes in self.label_sets.items():
            members = torch.zeros(num_classes, dtype=torch.bool, device=target.device)
            members[classes] = True
            allowed |= (target == value)[:, None] & members[None, :, None, None]
        return allowed

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits (N, K, H, W), target (N, H, W) integer labels."""
        num_classes = logits.shape[1]
        exact = (target >= 0) & (target < num_classes)
        dice = self.dice(logits, torch.where(exact, target, 0).long()[:, None], mask=exact[:, None].float())
        allowed = self._candidates(target, num_classes)
        labelled = allowed.any(dim=1)
        log_probabilities = torch.log_softmax(logits.float(), dim=1)
        marginal = torch.logsumexp(log_probabilities.masked_fill(~allowed, float("-inf")), dim=1)
        ce = -marginal[labelled].mean() if labelled.any() else logits.sum() * 0
        return self.dice_weight * dice + self.ce_weight * ce
