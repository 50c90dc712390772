"""Evaluation of every task in the paper's shape (Sec. 4): referring cIoU/gIoU, REG CIDEr/METEOR, example-image
one-/few-shot IoU, audio-visual mIoU and F-score."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm

from .data import split_samples
from .data.tasks import image_split, task_split
from .metrics import AVSMeter, IoUMeter, reg_scores
from .predict import evaluate_referring, predict
from .tokens import OBJ_TOKEN


def union_mask(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """All predicted masks of an answer as one (H, W) bool mask (empty when the answer has no `<obj>`)."""
    return masks.any(0) if len(masks) else np.zeros(shape, bool)


def words_before_obj(text: str) -> str:
    """The description part of an answer: everything before the first `<obj>`."""
    return text.split(OBJ_TOKEN)[0].strip()


def evaluate_text(model, *, num: int, progress: bool = True) -> dict:
    """Text referring on val / testA / testB: cIoU, gIoU, `<obj>` rate."""
    return {split: evaluate_referring(model, split_samples(split, num=num), progress=progress, desc=f"text {split}")
            for split in ("val", "testA", "testB")}


def evaluate_reg(model, *, num: int, progress: bool = True) -> dict:
    """Region description from a box: CIDEr, METEOR and exact match of the words, and the grounded mask's cIoU."""
    predictions, references, meter = [], [], IoUMeter()
    for sample in tqdm(task_split("reg", "val", num=num), disable=not progress, desc="reg"):
        pred = predict(model, sample.scene.image, sample.question, references=list(sample.references))
        predictions.append(words_before_obj(pred.text))
        references.append(sample.target_text)
        meter.update(union_mask(pred.masks, sample.scene.image.shape[:2]), sample.masks.any(0))
    return {**reg_scores(predictions, references), "mask_ciou": meter.ciou,
            "examples": [{"prediction": p, "reference": r} for p, r in list(zip(predictions, references))[:5]]}


def evaluate_image(model, *, num: int, shots: int, progress: bool = True) -> dict:
    """Example-image referring: one-shot (first example) and few-shot (mask probabilities averaged) mIoU, with and
    without mask cropping; mIoU = per-class cumulative IoU averaged over the shape classes (COCO-20i style)."""
    scores = {}
    for cropped in (False, True):
        for name, count in (("one_shot", 1), ("few_shot", shots)):
            per_class = defaultdict(IoUMeter)
            samples = image_split("val", num=num, shots=shots, mask_crop=cropped)
            for sample in tqdm(samples, disable=not progress, desc=f"image {name}{' masked' if cropped else ''}"):
                pred = predict(model, sample.scene.image, sample.question, references=list(sample.references[:count]))
                per_class[sample.target_text].update(union_mask(pred.masks, sample.scene.image.shape[:2]),
                                                     sample.masks.any(0))
            key = f"{name}{'_mask_crop' if cropped else ''}"
            scores[key] = {"miou": float(np.mean([m.ciou for m in per_class.values()])),
                           "giou": float(np.mean([s for m in per_class.values() for s in m.per_sample]))}
    return scores


def evaluate_audio(model, *, num: int, progress: bool = True) -> dict:
    """Audio-visual segmentation: single source (mIoU, F-score with beta^2 = 0.3) and multi-source (mIoU)."""
    scores = {}
    for task in ("audio", "audio_multi"):
        meter = AVSMeter()
        for sample in tqdm(task_split(task, "val", num=num), disable=not progress, desc=task):
            pred = predict(model, sample.scene.image, sample.question, references=list(sample.references))
            meter.update(union_mask(pred.masks, sample.scene.image.shape[:2]), sample.masks.any(0))
        scores["single_source" if task == "audio" else "multi_source"] = {"miou": meter.miou, "fscore": meter.fscore}
    return scores


def evaluate_tasks(model, *, num: int = 40, shots: int = 5, progress: bool = True) -> dict:
    """Every task's figures for one model, as the benchmark writes them."""
    return {"text": evaluate_text(model, num=num, progress=progress),
            "reg": evaluate_reg(model, num=num, progress=progress),
            "image": evaluate_image(model, num=num, shots=shots, progress=progress),
            "audio": evaluate_audio(model, num=num, progress=progress)}


def all_objects_baseline(*, num: int = 40, shots: int = 5) -> dict:
    """What "segment every object" scores on the same samples: the floor a model must beat to show it referred."""
    def everything(sample):
        return sample.scene.masks.any(0)

    text = {}
    for split in ("val", "testA", "testB"):
        meter = IoUMeter()
        for sample in split_samples(split, num=num):
            meter.update(everything(sample), sample.mask)
        text[split] = meter.ciou
    scores = {"text_ciou": text}
    for task, name in (("reg", "reg_mask_ciou"), ("image", "image_one_shot_miou"), ("audio", "audio_single_miou"),
                       ("audio_multi", "audio_multi_miou")):
        samples = image_split("val", num=num, shots=shots, mask_crop=False) if task == "image" else \
            task_split(task, "val", num=num)
        if task == "image":
            per_class = defaultdict(IoUMeter)
            for s in samples:
                per_class[s.target_text].update(everything(s), s.masks.any(0))
            scores[name] = float(np.mean([m.ciou for m in per_class.values()]))
        else:
            meter = AVSMeter() if task.startswith("audio") else IoUMeter()
            for s in samples:
                meter.update(everything(s), s.masks.any(0))
            scores[name] = meter.miou if task.startswith("audio") else meter.ciou
    return scores
