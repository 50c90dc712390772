"""Lab: train AnyRef-mini on text referring under a chosen variant and record val cIoU every N steps.

Variants are config overrides (explicit grid positions, full-LLM training, trainable projector / CLIP, learning rate),
so each run answers one question about what stops the miniature from grounding. Writes a JSON curve and resumes.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anyref import AnyRefModel, preset
from anyref.data import split_samples
from anyref.evaluate import evaluate_referring
from anyref.provenance import commit, machine
from anyref.train import TrainConfig, seed_everything, train


def use_ingredients(config, folder: str) -> None:
    """Point the mini preset at another ingredients folder (clip-mini, llava-mini, sam-mini, audio-mini inside)."""
    root = Path(folder)
    config.vision.pretrained_path = str(root / "clip-mini")
    config.vision.projector_path = str(root / "llava-mini" / "projector.safetensors")
    config.llm.pretrained_path = str(root / "llava-mini" / "llm")
    config.tokenizer_path = str(root / "llava-mini" / "tokenizer")
    if (root / "sam-mini").is_dir():
        config.sam.checkpoint = str(root / "sam-mini" / "model.safetensors")
    if (root / "audio-mini").is_dir():
        config.audio.checkpoint = str(root / "audio-mini")


def build(args) -> AnyRefModel:
    """The mini preset with this run's overrides."""
    config = preset(args.preset)
    if args.ingredients:
        use_ingredients(config, args.ingredients)
    config.vision.position_amplitude = args.positions
    if args.llm_full:
        config.llm.use_lora = False
        config.trainable.llm_full = True
    config.trainable.projector = args.train_projector
    config.trainable.vision = args.train_vision
    config.trainable.sam_encoder = args.train_sam_encoder
    config.refocus_weight = args.refocus
    config.prompt_distill_weight = args.distill
    return AnyRefModel(config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--name", required=True)
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--positions", type=float, default=0.0)
    parser.add_argument("--ingredients", default=None, help="a folder of ingredients to use instead of data/ingredients")
    parser.add_argument("--llm-full", action="store_true")
    parser.add_argument("--train-projector", action="store_true")
    parser.add_argument("--train-vision", action="store_true")
    parser.add_argument("--train-sam-encoder", action="store_true")
    parser.add_argument("--refocus", type=float, default=0.1)
    parser.add_argument("--distill", type=float, default=0.0, help="prompt_distill_weight (anyref.prompt_distill)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="save the trained model to this folder at the end")
    args = parser.parse_args()

    run_dir = Path("build/exp") / args.name
    out = Path("research/results") / f"grounding_{args.name}.json"
    seed_everything(args.seed)
    model = build(args)
    curve = json.loads(out.read_text())["curve"] if out.exists() else []
    done = {point["steps"] for point in curve}
    val = split_samples("val", num=args.eval_samples)

    def score(steps, model, result):
        if steps % args.every and steps != args.steps or steps in done:
            return
        began = time.perf_counter()
        metrics = evaluate_referring(model, val, progress=False)
        model.train()
        curve.append({"steps": steps, "train_wall_s": round(result.wall_s, 1),
                      "eval_wall_s": round(time.perf_counter() - began, 1),
                      "loss_mean_last100": sum(result.losses[-100:]) / len(result.losses[-100:]), **metrics})
        print(json.dumps(curve[-1]), flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"args": vars(args), "commit": commit(), "machine": machine(),
                                   "threads": torch.get_num_threads(),
                                   "parameters": model.parameter_counts(), "curve": curve}, indent=2) + "\n")

    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         warmup_steps=100, checkpoint_every=250)
    train(model, config, run_dir=run_dir, resume=True, progress=False, callback=score)
    if args.save:
        model.save_pretrained(args.save, overwrite=True)


if __name__ == "__main__":
    main()
