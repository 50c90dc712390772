"""Lab: the course's fine-tune (mini preset from the shipped ingredients, 3000 steps, under 10 minutes) with one lever
changed, scored by generation on the first --num samples of each split. Appends one entry to --out.

    python research/course_levers.py --name locator-weight-4 --set locator_weight=4 --num 200
    python research/course_levers.py --name full-llm --recipe full-llm --num 200
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from lab import RESULTS

from anyref import AnyRefModel, preset
from anyref.config import RECIPES, with_recipe
from anyref.data import split_samples
from anyref.evaluate import evaluate_referring
from anyref.paths import BUILD_DIR
from anyref.provenance import commit, machine
from anyref.train import TrainConfig, seed_everything, train


def parse_setting(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE read as JSON where it parses (numbers, true/false), else kept as a string."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--set", action="append", default=[], type=parse_setting, help="a top-level config field")
    parser.add_argument("--recipe", default="paper", choices=RECIPES)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=570.0)
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-dir", type=Path, default=None, help="checkpoints (default: build/course-levers/NAME)")
    parser.add_argument("--out", type=Path, default=RESULTS / "course_levers.json")
    parser.add_argument("--save-model", type=Path, default=None, help="also save the trained model here (for probes)")
    args = parser.parse_args()
    seed_everything(args.seed)
    model = AnyRefModel(with_recipe(preset("mini", **dict(args.set)), args.recipe))
    config = TrainConfig(steps=args.steps, lr=args.lr, warmup_steps=max(1, args.steps // 10), seed=args.seed,
                         time_budget_s=args.seconds, checkpoint_every=500)
    run_dir = args.run_dir or BUILD_DIR / "course-levers" / args.name
    result = train(model, config, run_dir=run_dir, resume=True)
    model.eval()
    if args.save_model:
        model.save_pretrained(args.save_model, overwrite=True)
    scores = {split: evaluate_referring(model, split_samples(split, num=args.num), desc=split)
              for split in ("val", "testA", "testB")}
    entry = {"commit": commit(), "machine": machine(), "settings": dict(args.set), "recipe": args.recipe,
             "lr": args.lr, "schedule_steps": args.steps, "train_steps": result.steps,
             "train_wall_s": round(result.wall_s, 1), "seed": args.seed, "time": time.strftime("%Y-%m-%d %H:%M"),
             "scores": scores}
    runs = json.loads(args.out.read_text()) if args.out.exists() else {}
    runs[args.name] = entry
    args.out.write_text(json.dumps(runs, indent=2) + "\n")
    print(json.dumps({split: round(s["ciou"], 4) for split, s in scores.items()}), result.steps, "steps")


if __name__ == "__main__":
    main()
