"""SAM-mini: segment-anything's modules pretrained as a promptable segmenter (box and point prompts) on ShapeScenes.

SAM (Kirillov et al., 2023) learns "segment the object this prompt points at" on SA-1B; here the same modules learn
it on ShapeScenes. AnyRef then freezes the image encoder and fine-tunes the mask decoder with `<obj>` prompts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config import MINI_IMAGE_SIZE, SAMConfig
from ..data import make_scene
from ..losses import bce_per_mask, dice_per_mask
from ..sam import build_sam, decode_masks, sam_inputs
from ..weights import ingredient_dir, save_ingredient
from .loop import run_loop, scene_rng

TRAIN_STREAM, HELDOUT_STREAM = 21, 22


@dataclass
class SAMPretrainConfig:
    """Hyper-parameters of SAM-mini pretraining."""

    steps: int = 1200
    batch_size: int = 8  # images per step
    per_image: int = 3  # prompts per image (objects drawn at random)
    lr: float = 2e-3
    warmup_steps: int = 50
    point_fraction: float = 0.5  # share of prompts that are one positive point (the rest are boxes)
    box_noise: float = 0.1  # corner jitter, as a fraction of the box side (SAM uses 10 %)
    image_size: int = MINI_IMAGE_SIZE
    seed: int = 0


def prompt_batch(scenes, rng: np.random.Generator, *, point_fraction: float, box_noise: float, scale: float,
                 per_image: int | None = None):
    """Up to `per_image` objects of every scene -> (image_index (N,), points (N, 2, 2), labels (N, 2), masks (N, H, W)).

    A box is its two corners with SAM's labels 2 and 3; a point prompt is one positive point sampled inside the
    mask plus SAM's padding point (label -1), so both kinds are two tokens. Coordinates are in SAM's input frame.
    """
    index, points, labels, masks = [], [], [], []
    for i, scene in enumerate(scenes):
        chosen = rng.permutation(len(scene.objects))[:per_image]
        for obj in (scene.objects[j] for j in sorted(chosen)):
            if rng.random() < point_fraction:
                ys, xs = np.nonzero(obj.mask)
                k = rng.integers(len(xs))
                points.append([[xs[k] + 0.5, ys[k] + 0.5], [0.0, 0.0]])
                labels.append([1, -1])
            else:
                x1, y1, x2, y2 = obj.box
                side = np.array([x2 - x1, y2 - y1, x2 - x1, y2 - y1])
                x1, y1, x2, y2 = np.array(obj.box) + rng.normal(0, box_noise, 4) * side
                points.append([[x1, y1], [x2, y2]])
                labels.append([2, 3])
            index.append(i)
            masks.append(obj.mask)
    points = torch.tensor(np.array(points), dtype=torch.float32) * scale  # (N, 2, 2)
    return (torch.tensor(index), points, torch.tensor(labels), torch.from_numpy(np.stack(masks)))


def sparse_prompts(sam, points: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N, 2, 2) coordinates and (N, 2) labels -> SAM's sparse prompt tokens (N, 2, C)."""
    return sam.prompt_encoder._embed_points(points, labels, pad=False)


def predict_masks(sam, images: torch.Tensor, image_index, points, labels, *, full_size: bool = True) -> torch.Tensor:
    """uint8 images (B, H, W, 3) + prompts -> mask logits (N, H, W), or SAM's low-res (N, 4h, 4w) ones."""
    pixels, _ = sam_inputs(sam, images)  # (B, 3, S, S)
    embeddings = sam.image_encoder(pixels)  # (B, C, h, w)
    low = decode_masks(sam, embeddings, image_index, sparse_prompts(sam, points, labels))  # (N, 1, 4h, 4w)
    if not full_size:
        return low[:, 0]
    return F.interpolate(low, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]  # (N, H, W)


def _scenes(stream: int, seed: int, step: int, count: int, image_size: int):
    rng = scene_rng(stream, seed, step)
    return [make_scene(rng, image_size=image_size) for _ in range(count)], rng


def pretrain_sam(config: SAMConfig, settings: SAMPretrainConfig = SAMPretrainConfig(), *, progress: bool = True,
                 callback=None, run_dir=None, resume: bool = False):
    """Train a SAM of `config` from scratch as a promptable segmenter; returns (sam, LoopResult). See `run_loop`."""
    torch.manual_seed(settings.seed)
    sam = build_sam(config).train()
    scale = config.image_size / settings.image_size

    def loss_at(step: int) -> torch.Tensor:
        scenes, rng = _scenes(TRAIN_STREAM, settings.seed, step, settings.batch_size, settings.image_size)
        images = torch.from_numpy(np.stack([s.image for s in scenes]))  # (B, H, W, 3)
        index, points, labels, masks = prompt_batch(scenes, rng, point_fraction=settings.point_fraction,
                                                    box_noise=settings.box_noise, scale=scale,
                                                    per_image=settings.per_image)
        logits = predict_masks(sam, images, index, points, labels, full_size=False)  # (N, 4h, 4w)
        targets = F.adaptive_avg_pool2d(masks[:, None].float(), logits.shape[-2:])[:, 0]  # (N, 4h, 4w) soft
        return 2.0 * bce_per_mask(logits, targets).mean() + 0.5 * dice_per_mask(logits, targets).mean()

    result = run_loop(loss_at, sam, steps=settings.steps, lr=settings.lr, seed=settings.seed,
                      warmup_steps=settings.warmup_steps, progress=progress, desc="SAM-mini", callback=callback,
                      run_dir=run_dir, resume=resume)
    return sam.eval(), result


@torch.no_grad()
def evaluate_sam(sam, *, num_scenes: int = 100, image_size: int = MINI_IMAGE_SIZE, prompt: str = "box") -> float:
    """Mean IoU over every object of held-out scenes, prompted by its exact box or its centre-most mask pixel."""
    sam.eval()
    scale = sam.image_encoder.img_size / image_size
    ious = []
    for start in range(0, num_scenes, 20):
        scenes = [make_scene(scene_rng(HELDOUT_STREAM, i), image_size=image_size)
                  for i in range(start, min(start + 20, num_scenes))]
        index, points, labels, masks = prompt_batch(scenes, np.random.default_rng(0), box_noise=0.0, scale=scale,
                                                    point_fraction=1.0 if prompt == "point" else 0.0)
        if prompt == "point":
            points[:, 0] = torch.tensor([_inner_point(m) for m in masks.numpy()], dtype=torch.float32) * scale
        images = torch.from_numpy(np.stack([s.image for s in scenes]))
        predicted = predict_masks(sam, images, index, points, labels) > 0  # (N, H, W)
        inter = (predicted & masks).flatten(1).sum(1).float()
        union = (predicted | masks).flatten(1).sum(1).float()
        ious.append(inter / union.clamp(min=1))
    return float(torch.cat(ious).mean())


def _inner_point(mask: np.ndarray) -> tuple[float, float]:
    """The mask pixel farthest inside the object (a deterministic point prompt)."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(mask)
    y, x = np.unravel_index(np.argmax(depth), mask.shape)
    return x + 0.5, y + 0.5


def save_sam_mini(sam, config: SAMConfig, folder=None, *, metrics: dict | None = None, overwrite: bool = False):
    """Save SAM-mini's weights and config (default: data/ingredients/sam-mini)."""
    folder = folder or ingredient_dir("sam-mini")
    return save_ingredient(sam, {"sam": asdict(config), "metrics": metrics or {}}, folder, overwrite=overwrite)
