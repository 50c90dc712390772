"""Experiment: can CLIP-mini's vision tower learn shape at the object-centre patch when told it directly?

A fresh transformers CLIPVisionModel (CLIP-mini's size unless overridden) plus a linear head is trained with
cross-entropy on the shape of the object under every patch (the patches `clip_mini.patch_labels` assigns), on whole
128 px ShapeScenes. This is the most direct supervision a patch token can get, so it bounds what the contrastive
recipe can hope for in the same number of steps. Accuracy is read off the head at each held-out object's centre
patch (chance 1/6). Writes research/results/attempts/vit_shape_capacity.json (one entry per --patch-size / --layers).

    python research/experiment_vit_shape_capacity.py [--patch-size 16] [--layers 2] [--steps 1000] [--lr 1e-3]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from anyref.config import VisionConfig
from anyref.data import SHAPES, make_scene
from anyref.pretrain.clip_mini import patch_labels
from anyref.provenance import commit, machine
from anyref.train import lr_factor
from anyref.vision import clip_pixels
from diagnose import centre_features
from lab import ATTEMPTS

OUT = ATTEMPTS / "vit_shape_capacity.json"


def shape_batch(rng: np.random.Generator, count: int, *, grid: int):
    """`count` scenes, their CLIP pixels (B, 3, 128, 128) and per-patch shape labels (B, grid * grid), -1 = none."""
    scenes = [make_scene(rng) for _ in range(count)]
    pixels = clip_pixels(torch.as_tensor(np.stack([s.image for s in scenes])), size=scenes[0].image.shape[0])
    owners = np.stack([patch_labels(s, grid=grid, min_coverage=0.25) for s in scenes])  # (B, P) object index
    shapes = np.array([[SHAPES.index(s.objects[i].shape) if i >= 0 else -1 for i in row]
                       for s, row in zip(scenes, owners)])
    return scenes, pixels, torch.from_numpy(shapes)


@torch.no_grad()
def centre_accuracy(tower, head, *, grid: int, scenes: int = 200) -> float:
    """Share of held-out objects whose centre patch the head labels with the right shape."""
    rng, hits = np.random.default_rng([9, 9]), []
    for _ in range(scenes // 40):
        drawn, pixels, _ = shape_batch(rng, 40, grid=grid)
        logits = head(tower(pixel_values=pixels).last_hidden_state[:, 1:])  # (B, P, 6)
        at_centres, labels = centre_features(drawn, logits.transpose(1, 2).reshape(len(drawn), -1, grid, grid))
        hits += [SHAPES[k] == shape for k, shape in zip(at_centres.argmax(1), labels["shape"])]
    return float(np.mean(hits))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--layers", type=int, default=VisionConfig.num_layers)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--every", type=int, default=250)
    args = parser.parse_args()
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    size = VisionConfig()
    grid = 128 // args.patch_size
    tower = CLIPVisionModel(CLIPVisionConfig(hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
                                             num_hidden_layers=args.layers, num_attention_heads=size.num_heads,
                                             image_size=128, patch_size=args.patch_size))
    head = torch.nn.Linear(size.hidden_size, len(SHAPES))
    parameters = [*tower.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup=50, total=args.steps))
    curve, began, losses = [], time.time(), []
    for step in range(args.steps):
        _, pixels, shapes = shape_batch(np.random.default_rng([5, step]), args.batch_size, grid=grid)
        logits = head(tower(pixel_values=pixels).last_hidden_state[:, 1:])  # (B, P, 6)
        loss = F.cross_entropy(logits[shapes >= 0], shapes[shapes >= 0])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            point = {"step": step + 1, "wall_s": round(time.time() - began, 1),
                     "loss_mean_last50": float(np.mean(losses[-50:])),
                     "centre_shape_accuracy": centre_accuracy(tower, head, grid=grid)}
            curve.append(point)
            print(json.dumps(point), flush=True)
    report = json.loads(OUT.read_text()) if OUT.exists() else {"experiment": __doc__.splitlines()[0], "runs": {}}
    report["runs"][f"patch{args.patch_size}_layers{args.layers}_steps{args.steps}"] = {
        "commit": commit(), "machine": machine(), "torch_threads": torch.get_num_threads(), "args": vars(args),
        "chance": 1 / len(SHAPES), "curve": curve}
    OUT.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
