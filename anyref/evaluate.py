"""Evaluation of every task in the paper's shape (Sec. 4): referring cIoU/gIoU, REG CIDEr/METEOR, example-image
one-/few-shot IoU, audio-visual mIoU and F-score."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import split_samples
from .data.shapescenes import ReferringSample
from .data.tasks import image_split, task_split
from .metrics import AVSMeter, IoUMeter, reg_scores
from .predict import Prediction, predict
from .tokens import OBJ_TOKEN, segment_question


def union_mask(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """All predicted masks of an answer as one (H, W) bool mask (empty when the answer has no `<obj>`)."""
    return masks.any(0) if len(masks) else np.zeros(shape, bool)


def union_logits(mask_logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """All predicted masks of an answer as one (H, W) logit map, their maximum (the union's probability); without
    `<obj>`, -inf everywhere (probability 0)."""
    return mask_logits.max(0) if len(mask_logits) else np.full(shape, -np.inf, np.float32)


def words_before_obj(text: str) -> str:
    """The description part of an answer: everything before the first `<obj>`."""
    return text.split(OBJ_TOKEN)[0].strip()


def model_answerer(model):
    """The model as an answerer: a text-referring or task sample -> its `Prediction`."""
    def answer(sample) -> Prediction:
        if isinstance(sample, ReferringSample):
            return predict(model, sample.scene.image, segment_question(sample.expression))
        return predict(model, sample.scene.image, sample.question, references=list(sample.references))
    return answer


def as_answerer(answer):
    """A model becomes `model_answerer(model)`; an answerer (sample -> Prediction) is kept as it is."""
    return model_answerer(answer) if isinstance(answer, torch.nn.Module) else answer


def segment_everything(sample) -> Prediction:
    """The floor a model must beat to show it referred: no words, one mask over every object in the scene."""
    union = sample.scene.masks.any(0)[None]  # (1, H, W)
    return Prediction(text="", masks=union, mask_logits=np.where(union, 10.0, -10.0).astype(np.float32))


def _target(sample) -> np.ndarray:
    """The (H, W) bool ground truth of a text-referring or task sample."""
    return sample.mask if isinstance(sample, ReferringSample) else sample.masks.any(0)


def restates_expression(text: str, expression: str) -> bool:
    """Whether an answer's words before `<obj>`, without punctuation, are exactly the referring expression."""
    words = words_before_obj(text).replace(".", " ").replace(",", " ").split()
    return words == expression.split()


def evaluate_referring(answer, samples, *, progress: bool = True, desc: str = "eval") -> dict:
    """Score the union of each answer's masks: cIoU, gIoU, `<obj>` rate, and for text referring how often the
    answer restates the expression (the supplement's template: "{exp} <obj>."). `answer` is a model or an answerer."""
    answer = as_answerer(answer)
    meter, answered, restated, texts = IoUMeter(), 0, 0, 0
    for sample in tqdm(samples, disable=not progress, desc=desc):
        pred = answer(sample)
        answered += len(pred.masks) > 0
        meter.update(union_mask(pred.masks, sample.scene.image.shape[:2]), _target(sample))
        if isinstance(sample, ReferringSample):
            texts += 1
            restated += restates_expression(pred.text, sample.expression)
    scores = {"ciou": meter.ciou, "giou": meter.giou, "obj_rate": answered / max(1, len(samples)), "n": len(samples)}
    if texts:
        scores["answer_restates_expression"] = restated / texts
    return scores


def evaluate_text(answer, *, num: int, progress: bool = True) -> dict:
    """Text referring on val / testA / testB: cIoU, gIoU, `<obj>` rate."""
    return {split: evaluate_referring(answer, split_samples(split, num=num), progress=progress, desc=f"text {split}")
            for split in ("val", "testA", "testB")}


def score_reg(answer, samples, *, meteor: bool = True, progress: bool = True, desc: str = "reg",
              references=lambda sample: sample.target_text) -> dict:
    """CIDEr, METEOR and exact match of the words before `<obj>` against each sample's `references(sample)` (a
    string or a list of them), and the grounded mask's cIoU."""
    answer = as_answerer(answer)
    predictions, truths, meter = [], [], IoUMeter()
    for sample in tqdm(samples, disable=not progress, desc=desc):
        pred = answer(sample)
        predictions.append(words_before_obj(pred.text))
        truths.append(references(sample))
        meter.update(union_mask(pred.masks, sample.scene.image.shape[:2]), _target(sample))
    return {**reg_scores(predictions, truths, meteor=meteor), "mask_ciou": meter.ciou,
            "examples": [{"prediction": p, "reference": r} for p, r in list(zip(predictions, truths))[:5]]}


def evaluate_reg(answer, *, num: int, meteor: bool = True, progress: bool = True) -> dict:
    """Region description from a box: CIDEr, METEOR and exact match of the words, and the grounded mask's cIoU."""
    return score_reg(answer, task_split("reg", "val", num=num), meteor=meteor, progress=progress)


def evaluate_image(answer, *, num: int, shots: int, progress: bool = True) -> dict:
    """Example-image referring: one-shot (first example) and few-shot (mask probabilities averaged) mIoU, with and
    without mask cropping; mIoU = per-class cumulative IoU averaged over the shape classes (COCO-20i style)."""
    answer = as_answerer(answer)
    scores = {}
    for cropped in (False, True):
        for name, count in (("one_shot", 1), ("few_shot", shots)):
            per_class = defaultdict(IoUMeter)
            samples = image_split("val", num=num, shots=shots, mask_crop=cropped)
            for sample in tqdm(samples, disable=not progress, desc=f"image {name}{' masked' if cropped else ''}"):
                pred = answer(replace(sample, references=sample.references[:count]))
                per_class[sample.target_text].update(union_mask(pred.masks, sample.scene.image.shape[:2]),
                                                     _target(sample))
            key = f"{name}{'_mask_crop' if cropped else ''}"
            scores[key] = {"miou": float(np.mean([m.ciou for m in per_class.values()])),
                           "giou": float(np.mean([s for m in per_class.values() for s in m.per_sample]))}
    return scores


def evaluate_audio(answer, *, num: int, progress: bool = True) -> dict:
    """Audio-visual segmentation, single and multi-source, scored from mask probabilities as AVSBench does: mIoU,
    F-score (beta^2 = 0.3, best of 255 thresholds over the split) and F-score per sample (AVSBench's per-video
    protocol with one-frame videos)."""
    answer = as_answerer(answer)
    scores = {}
    for task in ("audio", "audio_multi"):
        meter = AVSMeter()
        for sample in tqdm(task_split(task, "val", num=num), disable=not progress, desc=task):
            pred = answer(sample)
            meter.update(union_logits(pred.mask_logits, sample.scene.image.shape[:2]), _target(sample))
        scores["single_source" if task == "audio" else "multi_source"] = {
            "miou": meter.miou, "fscore": meter.fscore, "fscore_per_sample": meter.fscore_per_video(1)}
    return scores


def evaluate_tasks(answer, *, num: int = 40, shots: int = 5, meteor: bool = True, progress: bool = True) -> dict:
    """Every task's figures for a model (or any answerer: sample -> Prediction), as the benchmark writes them."""
    answer = as_answerer(answer)
    return {"text": evaluate_text(answer, num=num, progress=progress),
            "reg": evaluate_reg(answer, num=num, meteor=meteor, progress=progress),
            "image": evaluate_image(answer, num=num, shots=shots, progress=progress),
            "audio": evaluate_audio(answer, num=num, progress=progress)}


def all_objects_baseline(*, num: int = 40, shots: int = 5) -> dict:
    """What `segment_everything` scores on the same samples as `evaluate_tasks`: the floor for every mask figure."""
    scores = evaluate_tasks(segment_everything, num=num, shots=shots, meteor=False, progress=False)
    return {"text_ciou": {split: figures["ciou"] for split, figures in scores["text"].items()},
            "reg_mask_ciou": scores["reg"]["mask_ciou"],
            "image_one_shot_miou": scores["image"]["one_shot"]["miou"],
            "audio_single_miou": scores["audio"]["single_source"]["miou"],
            "audio_multi_miou": scores["audio"]["multi_source"]["miou"]}
