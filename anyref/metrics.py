"""Metrics: cIoU/gIoU (referring segmentation), mIoU/F-score (AVSBench) and CIDEr/METEOR (region description)."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from .errors import AnyRefError, AnyRefInputError


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


def f_score(prediction: np.ndarray, target: np.ndarray, *, beta2: float = 0.3) -> float:
    """AVSBench's F-measure (1 + b2) P R / (b2 P + R) of binary masks (H, W).

    Both empty -> 1.0 (nothing to find, nothing found); exactly one empty, or no overlap -> 0.0.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    pred, gt = prediction.astype(bool), target.astype(bool)
    hits, predicted, actual = float((pred & gt).sum()), float(pred.sum()), float(gt.sum())
    if predicted == 0 and actual == 0:
        return 1.0
    if hits == 0:
        return 0.0
    precision, recall = hits / predicted, hits / actual
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


@dataclass
class AVSMeter:
    """Audio-visual segmentation metrics over a split: mean per-sample IoU (mIoU) and F-score (AVSBench)."""

    ious: IoUMeter = field(default_factory=IoUMeter)
    fscores: list[float] = field(default_factory=list)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        """Add one binary prediction/target pair (H, W); returns its (IoU, F-score)."""
        iou = self.ious.update(prediction, target)
        self.fscores.append(f_score(prediction, target))
        return iou, self.fscores[-1]

    @property
    def miou(self) -> float:
        """Mean of per-sample IoUs."""
        return self.ious.giou

    @property
    def fscore(self) -> float:
        """Mean of per-sample F-scores."""
        return float(np.mean(self.fscores)) if self.fscores else 0.0


def normalise_caption(text: str) -> str:
    """Lower-case words only: "<obj>" and punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower().replace("<obj>", " ")).split())


@cache
def _meteor():
    """One METEOR scorer per process: its Java start loads a 60 MB paraphrase table (10-40 s)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def reg_scores(predictions: list[str], references: list[str], *, meteor: bool = True) -> dict:
    """Region-description scores: CIDEr, METEOR (pycocoevalcap; METEOR runs on Java) and exact match.

    Both sides go through `normalise_caption` first (no PTB tokenizer). CIDEr's idf comes from the references
    given, so it needs several different references: with one distinct reference every n-gram's idf is 0.
    meteor=False skips METEOR (reported as None), e.g. for quick validation during training.
    """
    if len(predictions) != len(references) or not predictions:
        raise AnyRefInputError(f"need as many predictions as references, at least one; got {len(predictions)} "
                               f"predictions and {len(references)} references")
    from pycocoevalcap.cider.cider import Cider

    res = {i: [normalise_caption(text)] for i, text in enumerate(predictions)}
    gts = {i: [normalise_caption(text)] for i, text in enumerate(references)}
    scores = {"cider": float(Cider().compute_score(gts, res)[0]), "meteor": None,
              "exact_match": float(np.mean([res[i] == gts[i] for i in res])), "n": len(predictions)}
    if meteor:
        if shutil.which("java") is None:
            raise AnyRefError("METEOR needs Java (a `java` executable on PATH, e.g. OpenJDK 17); install it, or "
                              "pass meteor=False")
        scorer = _meteor()
        try:
            scores["meteor"] = float(scorer.compute_score(gts, res)[0])
        except (OSError, ValueError) as error:  # the Java process died: a broken pipe, or output that is no number
            _meteor.cache_clear()
            scorer.lock.release()  # compute_score left it held; the scorer's __del__ needs it
            raise AnyRefError(f"METEOR's Java process failed ({error!r}); check that `java -jar` runs with 2 GB "
                              "of memory, or pass meteor=False") from None
    return scores
