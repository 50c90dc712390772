"""The training objective of Eq. 3: L = lambda_text L_text + lambda_bce L_bce + lambda_dice L_dice."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .tokens import IGNORE_INDEX


def text_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: logits (B, L, V) at position t predict labels (B, L) at t + 1."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE_INDEX)


def bce_per_mask(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the pixels of each mask: (N, H, W) -> (N,)."""
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none").flatten(1).mean(1)


def dice_per_mask(logits: torch.Tensor, targets: torch.Tensor, *, smooth: float = 1.0) -> torch.Tensor:
    """Dice loss of each mask, 1 - (2 sum pt + s) / (sum p + sum t + s): (N, H, W) -> (N,)."""
    p, t = logits.float().sigmoid().flatten(1), targets.float().flatten(1)
    return 1 - (2 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)


def anyref_loss(logits, labels, mask_logits, mask_targets, *, ce_weight=1.0, bce_weight=2.0, dice_weight=0.5):
    """Eq. 3 with BCE and Dice averaged over all masks in the batch; CE alone when the batch has no mask."""
    ce = text_loss(logits, labels)
    if mask_logits is None or mask_logits.shape[0] == 0:
        zero = ce.new_zeros(())
        return {"loss": ce_weight * ce, "ce": ce, "bce": zero, "dice": zero}
    bce = bce_per_mask(mask_logits, mask_targets).mean()
    dice = dice_per_mask(mask_logits, mask_targets).mean()
    return {"loss": ce_weight * ce + bce_weight * bce + dice_weight * dice, "ce": ce, "bce": bce, "dice": dice}
