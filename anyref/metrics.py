"""Metrics: cIoU/gIoU (referring segmentation), mIoU/F-score (AVSBench's definitions) and CIDEr/METEOR (region
description)."""
from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import torch

from .errors import AnyRefError, AnyRefInputError

AVS_BETA2 = 0.3  # AVSBench's beta^2: precision weighs more than recall
AVS_THRESHOLDS = torch.linspace(0, 1 - 1e-10, 255).numpy()  # (255,) float32, as AVSBench builds them (last: 1.0)


@dataclass
class IoUMeter:
    """Accumulates intersection and union over a split."""

    intersection: float = 0.0
    union: float = 0.0
    per_sample: list[float] = field(default_factory=list)

    def update(self, prediction: np.ndarray, target: np.ndarray) -> float:
        """Add one binary prediction/target pair (H, W); returns its IoU (1.0 when both are empty)."""
        prediction, target = _same_shape(prediction, target)
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


def binary_f_score(prediction: np.ndarray, target: np.ndarray, *, beta2: float = AVS_BETA2) -> float:
    """The F-measure (1 + b2) P R / (b2 P + R) of two binary masks (H, W) at one threshold; NOT AVSBench's F-score.

    Both empty -> 1.0 (nothing to find, nothing found); exactly one empty, or no overlap -> 0.0.
    """
    pred, gt = _same_shape(prediction, target)
    pred, gt = pred.astype(bool), gt.astype(bool)
    hits, predicted, actual = float((pred & gt).sum()), float(pred.sum()), float(gt.sum())
    if predicted == 0 and actual == 0:
        return 1.0
    if hits == 0:
        return 0.0
    precision, recall = hits / predicted, hits / actual
    return (1 + beta2) * precision * recall / (beta2 * precision + recall)


def _same_shape(prediction, target) -> tuple[np.ndarray, np.ndarray]:
    prediction, target = np.asarray(prediction), np.asarray(target)
    if prediction.shape != target.shape:
        raise AnyRefInputError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    return prediction, target


def _probabilities(logits) -> torch.Tensor:
    """Mask logits (H, W) -> float32 sigmoid probabilities, as AVSBench computes them; binary masks are refused."""
    logits = np.asarray(logits)
    if not np.issubdtype(logits.dtype, np.floating):
        raise AnyRefInputError(f"AVSBench metrics take mask logits (float, before the sigmoid), got {logits.dtype}; "
                               "pass Prediction.mask_logits (several masks: their maximum), not the binary masks")
    return torch.sigmoid(torch.from_numpy(logits.astype(np.float32)))


def avs_iou(logits: np.ndarray, target: np.ndarray) -> float:
    """AVSBench's `mask_iou` of one sample: sigmoid(logits) > 0.5 against the binary target (H, W).

    An empty target is scored by its background: pixels that both leave empty, over all pixels. AVSBench adds 1e-7
    to the union in float32, where it vanishes for every union above one pixel, so it is left out here.
    """
    logits, target = _same_shape(logits, target)
    pred, gt = (_probabilities(logits) > 0.5).numpy(), target.astype(bool)
    if not gt.any():
        return float((~pred & ~gt).sum() / gt.size)
    return float((pred & gt).sum() / (pred | gt).sum())


def avs_f_curve(logits: np.ndarray, target: np.ndarray, *, beta2: float = AVS_BETA2) -> np.ndarray:
    """AVSBench's F-measure of one sample at each of its 255 thresholds (`_eval_pr`): (255,) float64.

    Pixels with sigmoid(logit) >= threshold are predicted; an undefined F (nothing predicted) counts as 0.
    """
    logits, target = _same_shape(logits, target)
    probs = _probabilities(logits).numpy()  # (H, W) float32
    hit_probs = np.sort(probs[target.astype(bool)])  # (positives,)
    probs = np.sort(probs.ravel())  # (HW,)
    predicted = probs.size - np.searchsorted(probs, AVS_THRESHOLDS, side="left")  # (255,) pixels >= threshold
    hits = hit_probs.size - np.searchsorted(hit_probs, AVS_THRESHOLDS, side="left")  # (255,)
    precision = hits / np.maximum(predicted, 1)
    recall = hits / max(hit_probs.size, 1)
    denominator = beta2 * precision + recall
    return np.where(denominator > 0, (1 + beta2) * precision * recall / np.where(denominator > 0, denominator, 1), 0.0)


def avs_fmeasure(curves: list[np.ndarray]) -> float:
    """AVSBench's `Eval_Fmeasure` of one batch: F curves of its non-empty targets averaged per threshold, then the
    best threshold's value; a batch without any non-empty target scores 0."""
    return float(np.mean(curves, axis=0).max()) if curves else 0.0


@dataclass
class AVSMeter:
    """Audio-visual segmentation metrics over a split, as AVSBench's evaluation code defines them.

    Feed mask logits (the union of several masks is their maximum): mIoU is the mean of `avs_iou`; F-score is
    `avs_fmeasure` over the whole split (one batch: per-threshold mean over non-empty targets, then the maximum).
    AVSBench's test scripts call `Eval_Fmeasure` once per video (5 frames in S4) and average over videos;
    `fscore_per_video` gives that protocol for consecutive groups of samples.
    """

    ious: list[float] = field(default_factory=list)
    curves: list[np.ndarray | None] = field(default_factory=list)  # per sample; None for an empty target

    def update(self, logits: np.ndarray, target: np.ndarray) -> tuple[float, float]:
        """Add one sample: mask logits (H, W) and its binary target; returns its IoU and best-threshold F-score
        (NaN for an empty target, which F-score leaves out)."""
        self.ious.append(avs_iou(logits, target))
        curve = avs_f_curve(logits, target) if np.asarray(target).any() else None
        self.curves.append(curve)
        return self.ious[-1], float("nan") if curve is None else float(curve.max())

    @property
    def miou(self) -> float:
        """Mean of per-sample IoUs (0 before any sample)."""
        return float(np.mean(self.ious)) if self.ious else 0.0

    @property
    def fscore(self) -> float:
        """The split's F-score: mean F curve over samples with a non-empty target, at its best threshold."""
        return avs_fmeasure([c for c in self.curves if c is not None])

    def fscore_per_video(self, frames: int) -> float:
        """AVSBench's test protocol: `avs_fmeasure` of each run of `frames` consecutive samples (one video),
        averaged over videos (a video whose targets are all empty scores 0)."""
        if frames < 1 or len(self.curves) % frames:
            raise AnyRefInputError(f"{len(self.curves)} samples do not split into videos of {frames} frames")
        videos = [self.curves[i:i + frames] for i in range(0, len(self.curves), frames)]
        scores = [avs_fmeasure([c for c in video if c is not None]) for video in videos]
        return float(np.mean(scores)) if scores else 0.0


def normalise_caption(text: str) -> str:
    """Lower-case words only: "<obj>" and punctuation removed, whitespace collapsed."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower().replace("<obj>", " ")).split())


@cache
def _meteor():
    """One METEOR scorer per process: its Java start loads a 60 MB paraphrase table (10-40 s)."""
    from pycocoevalcap.meteor.meteor import Meteor

    return Meteor()


def reg_scores(predictions: list[str], references: list, *, meteor: bool = True) -> dict:
    """Region-description scores: CIDEr, METEOR (pycocoevalcap; METEOR runs on Java) and exact match.

    Each reference is a string or a list of them (all sentences of a ref, as COCO caption evaluation takes them;
    exact match: equal to any). Both sides go through `normalise_caption` first (no PTB tokenizer). CIDEr's idf
    comes from the references given, so it needs several different references: with one distinct reference every
    n-gram's idf is 0. meteor=False skips METEOR (reported as None), e.g. for quick validation during training.
    """
    if len(predictions) != len(references) or not predictions:
        raise AnyRefInputError(f"need as many predictions as references, at least one; got {len(predictions)} "
                               f"predictions and {len(references)} references")
    from pycocoevalcap.cider.cider import Cider

    res = {i: [normalise_caption(text)] for i, text in enumerate(predictions)}
    gts = {i: [normalise_caption(t) for t in ([texts] if isinstance(texts, str) else texts)]
           for i, texts in enumerate(references)}
    scores = {"cider": float(Cider().compute_score(gts, res)[0]), "meteor": None,
              "exact_match": float(np.mean([res[i][0] in gts[i] for i in res])), "n": len(predictions)}
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
