"""Learning curve of CLIP-mini: zero-shot crop top-1 and the scene centre-patch probe every few hundred steps.

Answers "is CLIP-mini short of steps, or of something else?" with the shipped recipe run longer, and follows the
second (region) stage with --region-steps. Writes research/results/attempts/clip_curve.json. Resumable: checkpoints go
to --run-dir (a finished pair stage there is reused, so a region stage can start from the 3000-step run).

    python research/curve_clip.py [--steps 3000] [--region-steps 0] [--every 500] [--run-dir build/clip-curve]
        [--resume] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from anyref.pretrain import clip_mini
from anyref.data.words import build_word_tokenizer
from anyref.provenance import commit, machine
from experiment_clip_patch8 import centre_probe
from lab import ATTEMPTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--region-steps", type=int, default=0)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--lr", type=float, default=clip_mini.CLIPPretrainConfig.lr)
    parser.add_argument("--conv-stem", action="store_true", help="CLIP-mini with the convolutional stem")
    parser.add_argument("--run-dir", default="build/clip-curve")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--out", default=str(ATTEMPTS / "clip_curve.json"))
    args = parser.parse_args()
    settings = clip_mini.CLIPPretrainConfig(steps=args.steps, lr=args.lr, region_steps=args.region_steps)
    report_name = "CLIP-mini" + (" with the conv stem" if args.conv_stem else "")
    tokenizer = build_word_tokenizer()
    report = {"experiment": f"{report_name}, shipped recipe run longer: zero-shot crops and centre-patch probe vs steps"
                            + (f", then {args.region_steps} steps with the region term" if args.region_steps else ""),
              "commit": commit(), "machine": machine(), "settings": vars(settings), "curve": []}
    if args.resume and os.path.exists(args.out):
        report["curve"] = json.loads(Path(args.out).read_text())["curve"]

    def evaluate(step, result):
        if step % args.every and step != args.steps + args.region_steps:
            return
        began = time.time()
        evaluating_s = sum(point.get("eval_s", 0.0) for point in report["curve"])  # inside the loop's wall time
        clip.eval()
        with torch.no_grad():
            point = {"step": step, "train_wall_s": round(result.wall_s - evaluating_s, 1),
                     "loss_mean_last50": sum(result.losses[-50:]) / len(result.losses[-50:]),
                     "zero_shot_top1": clip_mini.zero_shot_accuracy(clip, tokenizer, num_scenes=60),
                     "centre_probe": centre_probe(clip, scenes=150)}
        clip.train()
        point["eval_s"] = round(time.time() - began, 1)
        report["curve"].append(point)
        print(json.dumps(point), flush=True)
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)

    config = clip_mini.CLIPMiniConfig(vision=clip_mini.VisionConfig(conv_stem=args.conv_stem))
    torch.manual_seed(settings.seed)  # as pretrain_clip seeds a CLIP it builds itself
    clip = clip_mini.build_clip(config, tokenizer)
    started = time.time()
    clip_mini.pretrain_clip(config, settings, callback=evaluate, run_dir=args.run_dir, resume=args.resume, clip=clip)
    report["total_wall_s"] = round(time.time() - started, 1)
    with open(args.out, "w") as handle:
        json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
