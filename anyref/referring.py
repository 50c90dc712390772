"""The unified referring representation (Sec. 3.1.1): boxes, example images and audio as LLM tokens.

A box becomes 4x4 RoIAlign features of the query image's CLIP patch map, an example image the same CLIP encoder's
patch map pooled to 4x4, both projected by the (frozen) vision projector and quoted between `<img.ref>` and
`</img.ref>`; audio becomes ImageBind's 3 clip embeddings through the trainable audio projection, quoted between
`<aud.ref>` and `</aud.ref>`. The prompt holds one placeholder id per feature, so splicing never changes its length.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import AnyRefInputError

IMG_REF_FEATURE = -201  # placeholder id of one region/example feature (never a tokenizer id)
AUD_REF_FEATURE = -202  # placeholder id of one audio clip feature
REF_GRID = 4  # region and example features: a 4x4 grid (the paper)
IMG_REF_TOKENS = REF_GRID * REF_GRID
AUD_REF_TOKENS = 3  # ImageBind's three 2 s clips
IMG_REF_SPAN, AUD_REF_SPAN = "<img.ref></img.ref>", "<aud.ref></aud.ref>"
MIN_BOX_PX = 2.0  # a box narrower or shorter than this (in image pixels) is degenerate
DARK_PEAK = 8  # an example crop whose brightest value is below this counts as all black


@dataclass
class Region:
    """A box (x1, y1, x2, y2) in pixels of the query image: "this object here"."""

    box: tuple[float, float, float, float]


@dataclass
class Example:
    """An example image (uint8 (h, w, 3)) of the object to find, usually a crop of another image."""

    image: np.ndarray


@dataclass
class Audio:
    """A mono waveform at 16 kHz (float (T,)), e.g. from `anyref.audio.load_waveform`."""

    waveform: np.ndarray | torch.Tensor


Reference = Region | Example | Audio


def check_box(box, *, height: int, width: int) -> tuple[float, float, float, float]:
    """A valid (x1, y1, x2, y2) inside an image of that size, or an error naming the problem."""
    try:
        if isinstance(box, (str, bytes)):
            raise TypeError
        x1, y1, x2, y2 = (float(v) for v in box)
    except (TypeError, ValueError):
        shown = f"an array of shape {tuple(box.shape)}" if hasattr(box, "shape") else repr(box)[:80]
        raise AnyRefInputError(f"a box is four numbers (x1, y1, x2, y2) in pixels, got {shown}") from None
    shown = f"({x1:g}, {y1:g}, {x2:g}, {y2:g})"
    if not all(np.isfinite((x1, y1, x2, y2))):
        raise AnyRefInputError(f"box {shown} has a non-finite coordinate")
    if x2 < x1 or y2 < y1:
        raise AnyRefInputError(f"box {shown} is inverted: give (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2")
    if x2 - x1 < MIN_BOX_PX or y2 - y1 < MIN_BOX_PX:
        raise AnyRefInputError(f"box {shown} is degenerate: it must be at least {MIN_BOX_PX:g} pixels wide and high")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise AnyRefInputError(f"box {shown} reaches outside the {width}x{height} image; clip it to "
                               f"0 <= x <= {width}, 0 <= y <= {height}")
    return x1, y1, x2, y2


def check_example(image) -> np.ndarray:
    """A usable example crop (uint8 (h, w, 3), not empty, not all black), or an error naming the problem."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[-1] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise AnyRefInputError(f"an example image must be a uint8 array of shape (h, w, 3), got {shape}")
    if image.dtype != np.uint8:
        raise AnyRefInputError(f"an example image must be uint8 (0-255), got {image.dtype}")
    if min(image.shape[:2]) < 2:
        raise AnyRefInputError(f"the example crop is empty ({image.shape[0]}x{image.shape[1]} pixels); crop a "
                               "region at least 2x2 pixels large")
    if int(image.max()) < DARK_PEAK:
        raise AnyRefInputError("the example crop is all black: nothing to look for (check the crop box or mask)")
    return image


def mask_crop(image: np.ndarray, mask: np.ndarray, *, padding: float = 0.1) -> np.ndarray:
    """Crop the mask's box (with some context) and black out everything outside the mask (Table 3's dagger)."""
    if mask.shape != image.shape[:2]:
        raise AnyRefInputError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        raise AnyRefInputError("the mask is empty; mask-cropping needs at least one foreground pixel")
    pad = int(round(padding * max(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)))
    y1, y2 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + 1 + pad)
    x1, x2 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + 1 + pad)
    return np.where(mask[y1:y2, x1:x2, None], image[y1:y2, x1:x2], 0).astype(np.uint8)  # (h, w, 3)


def feature_map(patch_features: torch.Tensor) -> torch.Tensor:
    """CLIP patch features (B, P, C) -> the square map (B, C, g, g)."""
    b, p, c = patch_features.shape
    side = int(round(p ** 0.5))
    if side * side != p:
        raise AnyRefInputError(f"{p} patch features do not form a square grid")
    return patch_features.transpose(1, 2).reshape(b, c, side, side)


def region_features(patch_features: torch.Tensor, boxes: torch.Tensor, image_index: torch.Tensor, *,
                    image_size: int) -> torch.Tensor:
    """RoIAlign 4x4 features of each box on its image's CLIP map: boxes (N, 4) pixels -> (N, 16, C)."""
    from torchvision.ops import roi_align  # imported here: torchvision.ops takes seconds to import

    grid = feature_map(patch_features)  # (B, C, g, g)
    rois = torch.cat([image_index[:, None].to(boxes.dtype), boxes], dim=1)  # (N, 5): image, x1, y1, x2, y2
    pooled = roi_align(grid, rois.to(grid.dtype), output_size=REF_GRID, spatial_scale=grid.shape[-1] / image_size,
                       sampling_ratio=2, aligned=True)  # (N, C, 4, 4)
    return pooled.flatten(2).transpose(1, 2)  # (N, 16, C)


def example_features(patch_features: torch.Tensor) -> torch.Tensor:
    """An example image's CLIP patch features (N, P, C) pooled to a 4x4 grid: (N, 16, C)."""
    pooled = F.adaptive_avg_pool2d(feature_map(patch_features), REF_GRID)  # (N, C, 4, 4)
    return pooled.flatten(2).transpose(1, 2)  # (N, 16, C)


def expand_spans(ids: list[int], *, img_start: int, img_end: int, aud_start: int, aud_end: int) -> list[int]:
    """Fill every empty `<img.ref></img.ref>` / `<aud.ref></aud.ref>` pair with its placeholder ids."""
    out: list[int] = []
    for i, tok in enumerate(ids):
        out.append(tok)
        following = ids[i + 1] if i + 1 < len(ids) else None
        if tok == img_start and following == img_end:
            out += [IMG_REF_FEATURE] * IMG_REF_TOKENS
        elif tok == aud_start and following == aud_end:
            out += [AUD_REF_FEATURE] * AUD_REF_TOKENS
        elif tok in (img_start, aud_start) or tok in (img_end, aud_end) and (i == 0 or ids[i - 1] != img_start
                                                                            and ids[i - 1] != aud_start):
            raise AnyRefInputError("a reference is written as an empty pair, '<img.ref></img.ref>' or "
                                   "'<aud.ref></aud.ref>'; the model fills in the features")
    return out


def check_references(ids: list[int], references: list) -> None:
    """The placeholders of a prompt must match the references supplied, in kind and order."""
    slots = []
    for i, tok in enumerate(ids):
        if tok in (IMG_REF_FEATURE, AUD_REF_FEATURE) and (i == 0 or ids[i - 1] != tok):
            slots.append("image" if tok == IMG_REF_FEATURE else "audio")
    given = ["audio" if isinstance(r, Audio) else "image" for r in references]
    if slots != given:
        raise AnyRefInputError(f"the prompt has reference slots {slots} but the references supplied are {given}; "
                               "give one box or example per <img.ref></img.ref> and one audio per "
                               "<aud.ref></aud.ref>, in the same order")
