"""Inference helpers: `predict(model, image, text)` with input checks, and split evaluation (cIoU / gIoU)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import AnyRefInputError
from .metrics import IoUMeter
from .tokens import segment_question


@dataclass
class Prediction:
    """The model's answer text and one binary mask per `<obj>` in it."""

    text: str
    masks: np.ndarray  # (N, H, W) bool
    mask_logits: np.ndarray  # (N, H, W) float32


def check_image(image) -> torch.Tensor:
    """Validate an RGB image and return it as a uint8 (H, W, 3) tensor; errors say how to fix the input."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise AnyRefInputError(f"image must be a numpy array or torch tensor of shape (H, W, 3), got {type(image).__name__}")
    if image.ndim == 3 and image.shape[0] == 3 and image.shape[-1] != 3:
        raise AnyRefInputError(f"image has shape {image.shape} (channels first); pass (H, W, 3), e.g. image.transpose(1, 2, 0)")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise AnyRefInputError(f"image must have shape (H, W, 3) with 3 RGB channels, got {image.shape}")
    if image.dtype != np.uint8:
        raise AnyRefInputError(f"image dtype must be uint8 (0-255), got {image.dtype}; for floats in [0, 1] use "
                               "(image * 255).round().astype(np.uint8)")
    if min(image.shape[:2]) < 16:
        raise AnyRefInputError(f"image is {image.shape[0]}x{image.shape[1]} pixels; at least 16x16 is needed")
    return torch.from_numpy(np.ascontiguousarray(image))


def check_text(text) -> str:
    """Validate the question text."""
    if not isinstance(text, str):
        raise AnyRefInputError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise AnyRefInputError("text is empty; ask e.g. 'Can you segment the red circle in this image?'")
    return text.strip()


def predict(model, image, text: str, *, max_new_tokens: int | None = None) -> Prediction:
    """Answer `text` about `image`: the generated answer and one mask per `<obj>` it contains."""
    image, text = check_image(image), check_text(text)
    model.eval()
    out = model.generate(image, text, max_new_tokens=max_new_tokens)
    logits = out.mask_logits.float().cpu().numpy()
    return Prediction(text=out.text, masks=logits > 0, mask_logits=logits)


def evaluate_referring(model, samples, *, progress: bool = True, desc: str = "eval") -> dict:
    """Generate an answer for each sample's question and score the union of its masks: cIoU, gIoU, <obj> rate."""
    meter, answered = IoUMeter(), 0
    for sample in tqdm(samples, disable=not progress, desc=desc):
        pred = predict(model, sample.scene.image, segment_question(sample.expression))
        answered += len(pred.masks) > 0
        mask = pred.masks.any(0) if len(pred.masks) else np.zeros(sample.mask.shape, bool)
        meter.update(mask, sample.mask)
    return {"ciou": meter.ciou, "giou": meter.giou, "obj_rate": answered / max(1, len(samples)), "n": len(samples)}
