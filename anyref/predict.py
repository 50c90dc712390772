"""Inference: `predict(model, image, text, box=, examples=, audio=)` with input checks."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio import load_waveform
from .errors import AnyRefInputError
from .referring import AUD_REF_SPAN, IMG_REF_SPAN, Audio, Example, Region, check_box, check_example
from .tokens import AUD_REF_START, AUDIO_QUESTION, EXAMPLE_QUESTION, IMG_REF_START, REGION_QUESTION, segment_question


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


def gather_references(*, box=None, examples=None, audio=None, sample_rate: int | None = None) -> list:
    """Convenience inputs -> reference objects: a box, one example image or a list of them, a wav path or waveform."""
    references: list = []
    if box is not None:
        references.append(Region(box))
    if examples is not None:
        if isinstance(examples, (str, Path)):
            raise AnyRefInputError(f"examples takes images (uint8 (h, w, 3) arrays), got the path {str(examples)!r}; "
                                   "read it first with anyref.viz.load_image")
        crops = [examples] if isinstance(examples, (np.ndarray, torch.Tensor)) else list(examples)
        if not crops:
            raise AnyRefInputError("examples is an empty list; give at least one example image")
        references += [Example(check_example(c)) for c in crops]
    if audio is not None:
        references.append(Audio(load_waveform(audio, sample_rate=sample_rate)))
    elif sample_rate is not None:
        raise AnyRefInputError("sample_rate was given without audio")
    return references


def check_reference_list(references, *, height: int, width: int) -> list:
    """Region / Example / Audio objects with boxes inside the (height, width) image, or an error naming the item."""
    if not isinstance(references, (list, tuple)):
        raise AnyRefInputError(f"references must be a list of Region, Example or Audio objects, got "
                               f"{type(references).__name__}")
    for i, reference in enumerate(references):
        if isinstance(reference, Region):
            check_box(reference.box, height=height, width=width)
        elif isinstance(reference, Example):
            check_example(reference.image)
        elif not isinstance(reference, Audio):
            raise AnyRefInputError(f"references[{i}] is a {type(reference).__name__}, not a reference; wrap it as "
                                   "Region(box), Example(image) or Audio(waveform) from anyref.referring, or pass "
                                   "box=, examples= or audio= instead")
    return list(references)


def check_max_new_tokens(value) -> int | None:
    """None (the model's config.max_new_tokens) or a positive int."""
    if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
        raise AnyRefInputError(f"max_new_tokens must be a positive int (or None for the model's default), got "
                               f"{value!r}")
    return None if value is None else int(value)


def default_question(references: list) -> str:
    """The supplement's template for the references given: description, similar object, sound, or a combination."""
    kinds = {type(r) for r in references}
    if len(references) == 1 or len(kinds) == 1 and kinds == {Example}:
        return {Region: REGION_QUESTION, Example: EXAMPLE_QUESTION, Audio: AUDIO_QUESTION}[type(references[0])]
    if not references:
        raise AnyRefInputError("nothing to ask: give text, a box, example image(s) or audio")
    spans = [AUD_REF_SPAN if isinstance(r, Audio) else IMG_REF_SPAN for r in references]
    return segment_question(" and ".join(spans))


def predict(model, image, text: str | None = None, *, box=None, examples=None, audio=None,
            sample_rate: int | None = None, references: list | None = None,
            max_new_tokens: int | None = None) -> Prediction:
    """Answer about `image` from text and/or references; the answer and one mask per `<obj>` it contains.

    References fill the prompt's `<img.ref></img.ref>` / `<aud.ref></aud.ref>` spans in order (box, examples, audio,
    or an explicit `references` list). Without text, the supplement's template for those references is used. Several
    example images with a one-slot prompt are few-shot (Sec. 4.1.2): one pass per example, each pass's masks merged
    into one probability map (none: zeros), the maps averaged into ONE mask, with the first grounded answer's text;
    no mask at all when no pass answered with `<obj>`.
    """
    if not callable(getattr(model, "generate", None)):
        raise AnyRefInputError(f"model must be an AnyRefModel (e.g. AnyRefModel.from_pretrained(folder)), got "
                               f"{type(model).__name__}")
    image = check_image(image)
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    if references is None:
        references = gather_references(box=box, examples=examples, audio=audio, sample_rate=sample_rate)
    elif any(x is not None for x in (box, examples, audio, sample_rate)):
        raise AnyRefInputError("pass either references=[...] or box/examples/audio, not both")
    references = check_reference_list(references, height=image.shape[0], width=image.shape[1])
    text = default_question(references) if text is None else check_text(text)
    model.eval()
    slots = text.count(IMG_REF_START) + text.count(AUD_REF_START)
    if slots == 1 and len(references) > 1 and all(isinstance(r, Example) for r in references):
        encoded = model.encode_image(image)  # the query image, encoded once for every pass
        runs = [model.generate(encoded, text, references=[r], max_new_tokens=max_new_tokens) for r in references]
        grounded = [r for r in runs if len(r.mask_logits)]
        size = tuple(image.shape[:2])
        if not grounded:
            return Prediction(text=runs[0].text, masks=np.zeros((0, *size), bool),
                              mask_logits=np.zeros((0, *size), np.float32))
        unions = [r.mask_logits.float().sigmoid().amax(0) if len(r.mask_logits) else torch.zeros(size)
                  for r in runs]  # each pass's masks as one probability map (H, W); none -> zeros
        probs = torch.stack(unions).mean(0, keepdim=True)  # (1, H, W)
        logits = torch.logit(probs.clamp(1e-6, 1 - 1e-6)).cpu().numpy()
        return Prediction(text=grounded[0].text, masks=logits > 0, mask_logits=logits)
    out = model.generate(image, text, references=references, max_new_tokens=max_new_tokens)
    logits = out.mask_logits.float().cpu().numpy()
    return Prediction(text=out.text, masks=logits > 0, mask_logits=logits)

