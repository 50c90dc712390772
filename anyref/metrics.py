"""Referring-segmentation metrics: cIoU (cumulative) and gIoU (mean per sample), as LISA/AnyRef report them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class IoUMeter:
    """Accumulates intersection and union over a split."""

    intersection: float = 0.0
    union: float = 0.0
    per_sample: list[float] = field(default_factory=list)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """Add one binary prediction/target pair (H, W); returns its IoU (1.0 when both are empty)."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
        pred, gt = prediction.astype(bool), target.astype(bool)
        inter, union = float((pred & gt).sum()), float((pred | gt).sum())
        self.intersection += inter
        self.union += union
        iou = 1.0 if union == 0 else inter / union
        self.per_sample.append(iou)
        return iou

    @property
    def ciou(self) -> float:
        """Sum of intersections over sum of unions across the split."""
        return self.intersection / self.union if self.union else 0.0

    @property
    def giou(self) -> float:
        """Mean of per-sample IoUs."""
        return float(np.mean(self.per_sample)) if self.per_sample else 0.0
