"""Experiment: is "where" the missing piece? Add fixed 2D sine-cosine grid positions to the image tokens the LLM sees.

The probe (research/probe_obj_embeddings.py) found CLIP-mini's projected patch tokens carry colour but almost no
position, unlike CLIP ViT-L's. This trains AnyRef-mini on text referring with the same step budget and schedule as
the shipped model, once with fixed grid positions added to the projected image tokens (the model is patched in this
script only; the package does not do this), and scores val cIoU next to the segment-everything baseline.
Writes research/results/grid_positions_experiment.json."""
from __future__ import annotations

import argparse
import json
import math

import torch

from anyref import AnyRefModel, preset
from anyref.data import split_samples
from anyref.paths import BUILD_DIR
from anyref.evaluate import evaluate_referring, segment_everything
from anyref.provenance import commit, machine
from anyref.train import TrainConfig, seed_everything, train
from lab import RESULTS


def grid_positions(side: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position features (side*side, dim): half the channels for x, half for y."""
    quarter = dim // 4
    freqs = torch.exp(-math.log(100.0) * torch.arange(quarter) / quarter)  # (dim/4,)
    ys, xs = torch.meshgrid(torch.arange(side).float(), torch.arange(side).float(), indexing="ij")
    parts = [f(c.reshape(-1, 1) * freqs) for c in (xs, ys) for f in (torch.sin, torch.cos)]  # 4 x (P, dim/4)
    return torch.cat(parts, dim=1)  # (P, dim)


def add_grid_positions(model, *, scale: float) -> None:
    """Make the projector add `scale` x unit-RMS grid positions to every full image's tokens."""
    projector = model.vision.projector
    patches = model.vision.num_patches
    table = grid_positions(int(round(patches ** 0.5)), projector.out_features)  # (P, D)
    table = scale * table / table.pow(2).mean().sqrt()
    projector.register_forward_hook(lambda module, args, out: out + table if out.shape[-2] == patches else out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--stop-after", type=int, default=469)
    parser.add_argument("--eval-samples", type=int, default=200)
    parser.add_argument("--scale", type=float, default=1.0, help="RMS of the position features (tokens: about 1)")
    args = parser.parse_args()
    seed_everything(0)
    model = AnyRefModel(preset("mini"))
    with torch.no_grad():
        image = torch.from_numpy(split_samples("val", num=1)[0].scene.image[None])  # (1, H, W, 3)
        rms = float(model.image_tokens(image).pow(2).mean().sqrt())
    add_grid_positions(model, scale=args.scale * rms)
    config = TrainConfig(steps=args.steps, batch_size=8, lr=1e-3, seed=0, warmup_steps=100, checkpoint_every=250,
                         stop_after=args.stop_after)
    result = train(model, config, run_dir=str(BUILD_DIR / "experiment-grid-positions"), resume=True)
    samples = split_samples("val", num=args.eval_samples)
    scores = evaluate_referring(model, samples, desc="val")
    floor = evaluate_referring(segment_everything, samples, progress=False)["ciou"]
    report = {"experiment": "mini + fixed 2D grid positions on the image tokens, text referring",
              "commit": commit(), "machine": machine(), "train_steps": result.steps, "train_wall_s": round(result.wall_s, 1),
              "schedule_steps": args.steps, "token_rms": rms, "position_scale": args.scale,
              "val": scores, "val_segment_everything_ciou": floor,
              "compare_with": "data/results/text_referring_mini.json run 'mini (469 steps, as mini-scratch)'"}
    out = RESULTS / "grid_positions_experiment.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
