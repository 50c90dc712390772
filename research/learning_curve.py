"""How fast does `mini` learn text referring? Train from scratch, scoring val cIoU every --every steps.
Writes a JSON learning curve (steps, samples seen, wall time, cIoU/gIoU); runs on CPU or, with --device cuda, a GPU."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anyref import AnyRefModel, preset
from anyref.data import split_samples
from anyref.evaluate import evaluate_referring
from anyref.train import TrainConfig, seed_everything, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-samples", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="build/learning_curve.json")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.FIELD=VALUE",
                        help="override mini config fields, e.g. sam.prompt_dim=128 refocus_weight=1.0")
    args = parser.parse_args()

    seed_everything(0)
    model_config = preset("mini")
    for item in args.set:
        key, value = item.split("=", 1)
        *section, field = key.split(".")
        part = getattr(model_config, section[0]) if section else model_config
        setattr(part, field, type(getattr(part, field))(value))
    model = AnyRefModel(model_config).to(args.device)
    val = split_samples("val", num=args.eval_samples)
    curve, began = [], time.perf_counter()

    def evaluate(steps, model, result):
        if steps % args.every and steps != args.steps:
            return
        scores = evaluate_referring(model, val, progress=False)
        model.train()
        curve.append({"steps": steps, "samples": steps * args.batch_size, "wall_s": round(time.perf_counter() - began, 1),
                      "loss_mean_last50": sum(result.losses[-50:]) / len(result.losses[-50:]), **scores})
        print(json.dumps(curve[-1]), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "device": str(args.device),
                                              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
                                              "curve": curve}, indent=2) + "\n")

    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup)
    train(model, config, progress=False, callback=evaluate)


if __name__ == "__main__":
    main()
