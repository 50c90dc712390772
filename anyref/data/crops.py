"""Square crops around single ShapeScenes objects (the "image of the sounding object" for audio binding)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AnyRefInputError
from .shapescenes import Scene

PADDING = 0.25  # context added on every side, as a fraction of the box's longer side


def object_crop(scene: Scene, index: int, *, size: int = 32, padding: float = PADDING) -> np.ndarray:
    """A square crop centred on object `index`'s box, padded by `padding` and resized to (size, size, 3) uint8."""
    if not isinstance(index, (int, np.integer)) or not 0 <= index < len(scene.objects):
        raise AnyRefInputError(f"object index {index!r} is out of range; the scene has {len(scene.objects)} objects")
    if not isinstance(size, (int, np.integer)) or size < 4 or padding < 0:
        raise AnyRefInputError(f"need an int size >= 4 and padding >= 0, got size={size!r}, padding={padding!r}")
    x1, y1, x2, y2 = scene.objects[index].box
    half = 0.5 * max(x2 - x1, y2 - y1) * (1.0 + 2.0 * padding)
    cx, cy = 0.5 * (x1 + x2), 0.5 * (y1 + y2)
    left, top = int(np.floor(cx - half)), int(np.floor(cy - half))
    side = int(np.ceil(2.0 * half))
    height, width = scene.image.shape[:2]
    margin = max(0, -left, -top, left + side - width, top + side - height)
    padded = np.pad(scene.image, ((margin, margin), (margin, margin), (0, 0)), mode="edge")  # (H+2m, W+2m, 3)
    window = padded[top + margin:top + margin + side, left + margin:left + margin + side]  # (side, side, 3)
    pixels = torch.from_numpy(np.ascontiguousarray(window)).permute(2, 0, 1)[None].float()  # (1, 3, side, side)
    resized = F.interpolate(pixels, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()  # (size, size, 3) uint8
