"""Experiment: does CLIP-mini with 8 px patches (the paper's 16 x 16 token grid at 128 px) see shape in scenes?

Probes the last-layer patch token at each object's centre (logistic regression, held-out objects) for colour, shape
and size, for the shipped CLIP-mini (16 px patches) and for one pretrained here with 8 px patches; also the new one's
zero-shot crop accuracy. Writes research/results/attempts/clip_patch8_probe.json. About 20 minutes on 2 CPU cores.

    python research/experiment_clip_patch8.py [--steps 300] [--crop-fraction 0.5] [--patch-size 8]
        [--shape-only 0.0] [--region-steps 0] [--out PATH]

--shape-only F captions a fraction F of the crops by their shape alone ("a circle"), so that colour cannot tell
those pairs apart and the contrastive loss must use shape. --region-steps N adds CLIP-mini's second stage: N steps
with the region-level term (patch tokens of whole scenes learn their objects' captions from the concept pool).
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from anyref.config import VisionConfig
from anyref.data.shapescenes import make_scene
from anyref.pretrain import clip_mini
from anyref.provenance import commit, machine
from diagnose import attribute_probe, centre_features
from lab import ATTEMPTS


@torch.no_grad()
def centre_probe(clip, *, scenes: int = 250) -> dict:
    """Colour / shape / size probe accuracy of the patch token under each object's centre, 128 px scenes."""
    size, patch = clip.config.vision_config.image_size, clip.config.vision_config.patch_size
    drawn = [make_scene(np.random.default_rng(np.random.SeedSequence([77, i])), image_size=128) for i in range(scenes)]
    maps = []
    for scene in drawn:
        out = clip.vision_model(pixel_values=clip_mini.clip_inputs(clip, scene.image[None]))
        maps.append(out.last_hidden_state[0, 1:].T.reshape(-1, size // patch, size // patch))  # (C, side, side)
    return attribute_probe(*centre_features(drawn, torch.stack(maps)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--crop-fraction", type=float, default=0.5)
    parser.add_argument("--patch-size", type=int, default=8)
    parser.add_argument("--shape-only", type=float, default=0.0)
    parser.add_argument("--region-steps", type=int, default=0)
    parser.add_argument("--out", default=str(ATTEMPTS / "clip_patch8_probe.json"))
    args = parser.parse_args()
    if args.shape_only:
        full_caption = clip_mini.crop_caption

        def caption(obj, rng):
            return f"a {obj.shape}" if rng.random() < args.shape_only else full_caption(obj, rng)
        clip_mini.crop_caption = caption
    shipped, _ = clip_mini.load_clip_mini()
    report = {"experiment": f"CLIP-mini patch tokens at object centres: shipped vs {args.patch_size} px patches"
                            + (f", {args.shape_only:.0%} shape-only crop captions" if args.shape_only else "")
                            + (f", then {args.region_steps} steps with the region term" if args.region_steps else ""),
              "commit": commit(), "machine": machine(), "shipped_patch16": {"probe": centre_probe(shipped)}}
    started = time.time()
    clip, tokenizer, _ = clip_mini.pretrain_clip(clip_mini.CLIPMiniConfig(vision=VisionConfig(patch_size=args.patch_size)),
                                                 clip_mini.CLIPPretrainConfig(steps=args.steps,
                                                                              crop_fraction=args.crop_fraction,
                                                                              region_steps=args.region_steps))
    report[f"patch{args.patch_size}"] = {
        "steps": args.steps, "crop_fraction": args.crop_fraction, "shape_only_captions": args.shape_only,
        "region_steps": args.region_steps,
        "train_wall_s": round(time.time() - started, 1), "probe": centre_probe(clip),
        "zero_shot_top1": clip_mini.zero_shot_accuracy(clip, tokenizer)}
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
