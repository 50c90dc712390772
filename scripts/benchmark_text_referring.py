"""Benchmark: train AnyRef-mini on ShapeScenes text referring on the CPU, then score cIoU / gIoU on val, testA and
testB by generation. `--preset mini` starts from the pretrained ingredients (the paper's recipe), `--preset
mini-scratch` from nothing. Each run updates its own entry of data/results/text_referring_mini.json."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anyref import AnyRefModel, preset
from anyref.config import RECIPE_HELP, RECIPES, with_recipe
from anyref.locator import LOCATOR_LOSSES
from anyref.data import split_samples
from anyref.provenance import commit, machine
from anyref.paths import BUILD_DIR, RESULTS_DIR, TEXT_MODEL_DIR
from anyref.evaluate import evaluate_referring, segment_everything
from anyref.train import TrainConfig, seed_everything, train


def write_floor(out: Path, *, num: int) -> None:
    """Add the segment-everything floor of the same evaluation samples to the results file."""
    report = json.loads(out.read_text())
    report["floor"] = {"answerer": "segment everything (one mask over every object)", "samples_per_split": num,
                       **{split: evaluate_referring(segment_everything, split_samples(split, num=num), progress=False)
                          for split in ("val", "testA", "testB")}}
    out.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="mini", choices=["mini", "mini-scratch"])
    parser.add_argument("--label", default=None, help="name of this run's entry in the JSON (default: the preset)")
    parser.add_argument("--minutes", type=float, default=14.0, help="training wall-time budget")
    parser.add_argument("--steps", type=int, default=800, help="schedule length (stops earlier at the budget)")
    parser.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (same schedule)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-samples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default="paper", choices=RECIPES, help=RECIPE_HELP)
    parser.add_argument("--prompt-distill", type=float, default=0.0, help="the mini training aid of "
                        "anyref.prompt_distill (0: the paper's loss alone)")
    parser.add_argument("--no-locator", action="store_true", help="the paper's configuration: no locator, SAM's "
                        "dense prompt stays 'no mask' (the mini presets have one: anyref.locator)")
    parser.add_argument("--locator-loss", default=None, choices=LOCATOR_LOSSES, help="how the locator's map trains "
                        "(anyref.locator; default: the preset's, or the --init-from model's)")
    parser.add_argument("--init-from", default=None, help="start from this saved model's weights (a model folder; "
                        "a locator it lacks starts fresh) instead of the ingredients")
    parser.add_argument("--run-dir", default=None, help="checkpoint folder (default: build/benchmark-PRESET)")
    parser.add_argument("--save-model", default=None, help="where to save the model (default: the shipped folder "
                        "for --preset mini, nowhere for mini-scratch)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "text_referring_mini.json"))
    parser.add_argument("--floor-only", action="store_true", help="only (re)compute the segment-everything floor of "
                        "the evaluation samples into --out")
    args = parser.parse_args()
    if args.floor_only:
        write_floor(Path(args.out), num=args.eval_samples)
        return

    seed_everything(args.seed)
    locator = not args.no_locator
    changes = {"locator": locator} | ({} if args.locator_loss is None else {"locator_loss": args.locator_loss})
    if not locator:
        changes["locator_feedback"] = False  # it reads the locator's map
    model = (AnyRefModel(with_recipe(preset(args.preset, prompt_distill_weight=args.prompt_distill, **changes),
                                     args.recipe)) if args.init_from is None
             else AnyRefModel.start_from(args.init_from, **changes))
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         warmup_steps=args.warmup, checkpoint_every=250, time_budget_s=args.minutes * 60,
                         stop_after=args.stop_after)
    run_dir = args.run_dir or str(BUILD_DIR / f"benchmark-{args.preset}")
    result = train(model, config, run_dir=run_dir, resume=True)
    scores, eval_began = {}, time.perf_counter()
    for split in ("val", "testA", "testB"):
        scores[split] = evaluate_referring(model, split_samples(split, num=args.eval_samples), desc=split)
        print(split, {k: round(v, 4) for k, v in scores[split].items()})
    report = {
        "benchmark": f"text referring, {args.preset} preset, ShapeScenes 128px",
        "commit": commit(), "machine": machine(),
        "torch_threads": torch.get_num_threads(), "train_wall_s": round(result.wall_s, 1), "train_steps": result.steps,
        "recipe": args.recipe, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr, "warmup_steps": args.warmup,
        "schedule_steps": args.steps, "prompt_distill_weight": args.prompt_distill,
        "locator": locator, "locator_loss": model.config.locator_loss if locator else None,
        "locator_feedback": model.config.locator_feedback,
        "init_from": args.init_from,
        "stop_after": args.stop_after, "minutes_budget": args.minutes,
        "eval_wall_s": round(time.perf_counter() - eval_began, 1), "eval": "greedy generation with KV cache",
        "parameters": model.parameter_counts(), "final_loss_mean_last50": sum(result.losses[-50:]) / 50,
        "scores": scores,
    }
    save_to = args.save_model or (str(TEXT_MODEL_DIR) if args.preset == "mini" else None)
    report["shipped"] = bool(save_to) and Path(save_to).resolve() == TEXT_MODEL_DIR.resolve()
    out = Path(args.out)
    runs = json.loads(out.read_text()).get("runs", {}) if out.exists() else {}
    if report["shipped"]:
        for run in runs.values():
            run.pop("shipped", None)  # one entry describes the model in data/models/anyref-mini-text
    runs[args.label or args.preset] = report
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    write_floor(out, num=args.eval_samples)
    if save_to:
        model.save_pretrained(save_to, overwrite=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
