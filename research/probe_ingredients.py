"""Lab, the first rungs of the diagnostic ladder: what the ingredients' features know, by linear probes.

- CLIP-mini: a logistic probe of colour / shape / size from the patch token under each object's centre, in whole
  held-out 128 px scenes (issue target: shape >= 0.90, colour >= 0.95).
- The image tokens the LLM sees (CLIP-mini -> explicit grid positions -> LLaVA-mini's projector): a ridge probe of
  each token's grid row and column (R^2; target >= 0.80).
Writes data/results/ingredient_probes.json (commit, machine, wall time, seed).

    python research/probe_ingredients.py [--ingredients data/ingredients] [--scenes 300] [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

from anyref.data.shapescenes import make_scene
from anyref.paths import INGREDIENTS_DIR, RESULTS_DIR
from anyref.pretrain import clip_mini, llava_mini
from anyref.provenance import commit, machine
from diagnose import attribute_probe, centre_features


@torch.no_grad()
def clip_centre_probe(clip, scenes) -> dict:
    """Colour / shape / size probe accuracy of CLIP-mini's last-layer patch token under each object's centre."""
    vision = clip.config.vision_config
    side = vision.image_size // vision.patch_size
    maps = [clip.vision_model(pixel_values=clip_mini.clip_inputs(clip, s.image[None])).last_hidden_state[0, 1:]
            .T.reshape(-1, side, side) for s in scenes]  # each (C, side, side)
    return attribute_probe(*centre_features(scenes, torch.stack(maps)))


@torch.no_grad()
def token_position_r2(llava, scenes) -> float:
    """Held-out R^2 of a ridge probe from each LLM image token to its (row, column) on the patch grid."""
    tokens = llava.image_tokens(torch.from_numpy(np.stack([s.image for s in scenes])))  # (N, P, D)
    n, p, _ = tokens.shape
    side = int(round(p ** 0.5))
    grid = np.stack([np.arange(p) // side, np.arange(p) % side], 1).astype(np.float32)  # (P, 2)
    x, y = tokens.reshape(n * p, -1).numpy(), np.tile(grid, (n, 1))
    half = (n // 2) * p
    return float(RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[:half], y[:half]).score(x[half:], y[half:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingredients", default=str(INGREDIENTS_DIR))
    parser.add_argument("--scenes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS_DIR / "ingredient_probes.json"))
    args = parser.parse_args()
    began = time.perf_counter()
    root = Path(args.ingredients)
    rng = np.random.default_rng(np.random.SeedSequence([77, args.seed]))
    scenes = [make_scene(rng, image_size=128) for _ in range(args.scenes)]
    clip, _ = clip_mini.load_clip_mini(root / "clip-mini")
    llava = llava_mini.load_llava_mini(root / "llava-mini", clip_folder=root / "clip-mini")
    report = {"experiment": "linear probes of the ingredients' features on held-out whole scenes",
              "ingredients": str(root), "commit": commit(), "machine": machine(), "seed": args.seed,
              "scenes": args.scenes, "clip_centre_probe": clip_centre_probe(clip, scenes),
              "image_token_position_r2": token_position_r2(llava, scenes[:60]),
              "position_amplitude": llava.config.vision.position_amplitude,
              "targets": {"clip_centre_shape": 0.90, "clip_centre_colour": 0.95, "image_token_position_r2": 0.80}}
    report["wall_s"] = round(time.perf_counter() - began, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
