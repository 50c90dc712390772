"""Lab: can SAM-mini learn concept prompts ("red star": every matching object) on top of its box/point training?

A concept prompt is one token: the sum of learned embeddings of its attribute words. Starts from the shipped
SAM-mini; mixes concept prompts with its box/point prompts; reports held-out concept mIoU and box mIoU.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from anyref.config import SAMConfig
from anyref.data import COLOURS, SHAPES, SIZES, make_scene
from anyref.losses import bce_per_mask, dice_per_mask
from anyref.pretrain.loop import scene_rng
from anyref.pretrain.sam_mini import evaluate_sam, predict_masks, prompt_batch
from anyref.sam import build_sam, decode_masks, sam_inputs

WORDS = list(COLOURS) + list(SHAPES) + list(SIZES)
FORMS = (("shape",), ("colour",), ("colour", "shape"), ("size", "shape"), ("size", "colour", "shape"),
         ("size", "colour"))


def concept_batch(scenes, rng):
    """One concept per scene, drawn from an object's attributes: word ids (N, 3; -1 pad) and union masks (N, H, W)."""
    words, masks = [], []
    for scene in scenes:
        obj = scene.objects[rng.integers(len(scene.objects))]
        form = FORMS[rng.integers(len(FORMS))]
        value = {"colour": obj.colour, "shape": obj.shape, "size": obj.size}
        ids = [WORDS.index(value[a]) for a in form] + [-1] * (3 - len(form))
        match = [o for o in scene.objects if all(getattr(o, a) == value[a] for a in form)]
        words.append(ids)
        masks.append(np.any([o.mask for o in match], axis=0))
    return torch.tensor(words), torch.from_numpy(np.stack(masks))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fresh", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    config = SAMConfig(checkpoint=None if args.fresh else "data:ingredients/sam-mini/model.safetensors")
    sam = build_sam(config).train()
    table = torch.nn.Embedding(len(WORDS) + 1, config.prompt_dim, padding_idx=len(WORDS))
    optimizer = torch.optim.AdamW(list(sam.parameters()) + list(table.parameters()), lr=args.lr)
    scale = config.image_size / 128

    def concept_logits(images, words):
        pixels, _ = sam_inputs(sam, images)
        emb = sam.image_encoder(pixels)
        prompts = table(words.masked_fill(words < 0, len(WORDS))).sum(1)  # (N, C)
        return decode_masks(sam, emb, torch.arange(len(words)), prompts)[:, 0]  # (N, 4h, 4w)

    began = time.time()
    for step in range(args.steps):
        rng = scene_rng(91, step)
        scenes = [make_scene(rng) for _ in range(8)]
        images = torch.from_numpy(np.stack([s.image for s in scenes]))
        words, masks = concept_batch(scenes, rng)
        logits = concept_logits(images, words)
        targets = F.adaptive_avg_pool2d(masks[:, None].float(), logits.shape[-2:])[:, 0]
        loss = 2 * bce_per_mask(logits, targets).mean() + 0.5 * dice_per_mask(logits, targets).mean()
        index, points, labels, pmasks = prompt_batch(scenes, rng, point_fraction=0.5, box_noise=0.1, scale=scale,
                                                     per_image=2)
        plog = predict_masks(sam, images, index, points, labels, full_size=False)
        ptarget = F.adaptive_avg_pool2d(pmasks[:, None].float(), plog.shape[-2:])[:, 0]
        loss = loss + 2 * bce_per_mask(plog, ptarget).mean() + 0.5 * dice_per_mask(plog, ptarget).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % 150 == 0:
            sam.eval()
            with torch.no_grad():
                rng = scene_rng(92, 0)
                scenes = [make_scene(rng) for _ in range(64)]
                images = torch.from_numpy(np.stack([s.image for s in scenes]))
                words, masks = concept_batch(scenes, rng)
                low = concept_logits(images, words)[:, None]
                pred = F.interpolate(low, size=(128, 128), mode="bilinear")[:, 0] > 0
                iou = ((pred & masks).flatten(1).sum(1) / (pred | masks).flatten(1).sum(1).clamp(min=1)).mean()
                box = evaluate_sam(sam, num_scenes=40)
            sam.train()
            print(json.dumps({"step": step + 1, "loss": float(loss), "concept_miou": float(iou), "box_miou": box,
                              "wall_s": round(time.time() - began, 1)}), flush=True)


if __name__ == "__main__":
    main()
