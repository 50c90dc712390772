"""Prompt distillation, a training aid of the miniature (not in the paper): pull gamma(`<obj>`) towards the sparse
prompt SAM's own prompt encoder gives a click on the target's centre.

Trained from the mask loss alone, AnyRef-mini settles on "segment every object": its `<obj>` embedding carries no
trace of where the target is (centre R^2 0.00) and SAM's decoder draws the same mask for any prompt. SAM already
draws an object well from a click there, so this term tells the LLM, densely, what a useful prompt looks like. At
inference nothing changes: the mask still comes from gamma(`<obj>`) through the decoder (Eq. 1).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage


def single_object_centres(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Target masks (N, H, W) -> centroid (x, y) of each (N, 2) and which masks are one connected object (N,)."""
    centres, single = [], []
    for mask in masks.detach().cpu().numpy().astype(bool):
        _, parts = ndimage.label(mask)
        ys, xs = np.nonzero(mask)
        single.append(parts == 1)
        centres.append((xs.mean() + 0.5, ys.mean() + 0.5) if parts else (0.0, 0.0))
    return torch.tensor(centres, dtype=torch.float32), torch.tensor(single)


def click_prompts(sam, centres: torch.Tensor, *, image_hw: tuple[int, int]) -> torch.Tensor:
    """SAM's positive-click embedding at (x, y) image-pixel centres (N, 2) -> (N, C), in SAM's input frame."""
    size = sam.image_encoder.img_size
    scale = size / max(image_hw)
    coords = (centres * scale)[:, None, :] - 0.5  # (N, 1, 2); _embed_points shifts by half a pixel
    labels = torch.ones(coords.shape[:2], device=coords.device)  # (N, 1)
    with torch.no_grad():
        return sam.prompt_encoder._embed_points(coords, labels, pad=False)[:, 0]  # (N, C)


def distill_loss(sam, prompts: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean squared distance, relative to the clicks' own scale, from gamma's prompts (N, C) to the target clicks."""
    centres, single = single_object_centres(masks)
    if not bool(single.any()):
        return prompts.new_zeros(())
    clicks = click_prompts(sam, centres.to(prompts.device), image_hw=tuple(masks.shape[-2:]))  # (N, C)
    keep = single.to(prompts.device)
    return ((prompts[keep] - clicks[keep]) ** 2).mean() / clicks[keep].pow(2).mean().clamp(min=1e-6)
