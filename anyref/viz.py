"""Figures: mask overlays and PNG reading/writing, for notebooks and the CLI."""
from __future__ import annotations

import numpy as np

PALETTE = np.array([(255, 64, 64), (64, 160, 255), (80, 220, 120), (255, 200, 40), (200, 90, 255)], dtype=np.float32)


def overlay(image: np.ndarray, masks: np.ndarray, *, alpha: float = 0.55) -> np.ndarray:
    """Tint each mask (N, H, W) bool over a uint8 (H, W, 3) image with its own colour and outline it."""
    out = image.astype(np.float32).copy()
    for i, mask in enumerate(np.asarray(masks, dtype=bool)):
        colour = PALETTE[i % len(PALETTE)]
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
        edge = mask & ~(np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1))
        out[edge] = colour
    return out.clip(0, 255).astype(np.uint8)


def save_image(path, image: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) image as PNG."""
    import matplotlib.pyplot as plt

    plt.imsave(str(path), image)


def load_image(path) -> np.ndarray:
    """Read a PNG/JPEG as uint8 (H, W, 3) RGB."""
    import matplotlib.image as mpimg

    image = mpimg.imread(str(path))
    if image.dtype != np.uint8:
        image = (image * 255).round().astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return image[..., :3]
