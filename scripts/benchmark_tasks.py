"""Benchmark: train ONE AnyRef-mini on the task mixture (text, general, region description, example images, audio)
on the CPU, then score every task the way the paper does (Sec. 4). Writes data/results/tasks_mini.json and saves the
model to data/models/anyref-mini (the model the course notebooks load)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anyref import AnyRefModel, preset
from anyref.config import RECIPE_HELP, RECIPES, with_recipe
from anyref.locator import LOCATOR_LOSSES
from anyref.data.tasks import parse_mix
from anyref.evaluate import all_objects_baseline, evaluate_tasks
from anyref.paths import BUILD_DIR, MIXTURE_MODEL_DIR, RESULTS_DIR
from anyref.pretrain.audio_mini import load_audio_encoder
from anyref.provenance import commit, machine
from anyref.train import TrainConfig, seed_everything, train

TARGETS = {"text val cIoU": 0.75, "image one-shot IoU": 0.60, "audio single-source mIoU": 0.70, "REG exact match": 0.50}


def headline(scores: dict) -> dict:
    """The issue's four target figures, measured."""
    return {"text val cIoU": scores["text"]["val"]["ciou"], "image one-shot IoU": scores["image"]["one_shot"]["miou"],
            "audio single-source mIoU": scores["audio"]["single_source"]["miou"],
            "REG exact match": scores["reg"]["exact_match"]}


def previous_runs(record: Path) -> list[dict]:
    """The training runs behind a results JSON's model, oldest first: its own previous runs, then itself."""
    report = json.loads(Path(record).read_text())
    keys = ("commit", "train_steps", "train_wall_s", "recipe", "mixture", "lr", "warmup_steps", "init_from",
            "audio_from")
    return report.get("previous_runs", []) + [{key: report.get(key) for key in keys}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=29.0, help="training wall-time budget (the issue: 30)")
    parser.add_argument("--steps", type=int, default=900, help="schedule length (stops earlier at the budget)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--eval-samples", type=int, default=200,
                        help="samples per task and split (40 flattered two-source audio by 0.04)")
    parser.add_argument("--shots", type=int, default=5, help="examples in the few-shot evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="+", default=[], metavar="TASK=WEIGHT",
                        help="the task mixture to train on (default: anyref.data.tasks.DEFAULT_MIX)")
    parser.add_argument("--recipe", default="paper", choices=RECIPES, help=RECIPE_HELP)
    parser.add_argument("--no-locator", action="store_true", help="the paper's configuration: no locator, SAM's "
                        "dense prompt stays 'no mask' (the mini presets have one: anyref.locator)")
    parser.add_argument("--locator-loss", default=None, choices=LOCATOR_LOSSES, help="how the locator's map trains "
                        "(anyref.locator; default: the preset's, or the --init-from model's)")
    parser.add_argument("--init-from", default=None, help="start from this saved model's weights (a model folder; "
                        "a locator it lacks starts fresh) instead of the ingredients")
    parser.add_argument("--continues", type=Path, default=None, help="the results JSON of the run that trained the "
                        "--init-from model: its training is recorded under previous_runs and counted in the totals")
    parser.add_argument("--audio-from", default=None, help="an audio-mini folder whose weights replace the model's "
                        "audio encoder before training (a re-trained audio-mini under an --init-from model)")
    parser.add_argument("--run-dir", default=str(BUILD_DIR / "benchmark-tasks"), help="checkpoint folder (resumes)")
    parser.add_argument("--save-model", default=str(MIXTURE_MODEL_DIR))
    parser.add_argument("--out", default=str(RESULTS_DIR / "tasks_mini.json"))
    parser.add_argument("--baseline-only", action="store_true",
                        help="only (re)compute the segment-everything baseline into an existing --out file")
    args = parser.parse_args()

    if args.baseline_only:
        report = json.loads(Path(args.out).read_text())
        report["baseline_all_objects"] = all_objects_baseline(num=report["eval_samples_per_task"], shots=report["shots"])
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["baseline_all_objects"], indent=2))
        return
    mix = parse_mix(args.tasks)
    if args.continues and not args.init_from:
        parser.error("--continues names the record of the --init-from model's training; give --init-from too")
    previous = previous_runs(args.continues) if args.continues else []  # read first: --out may be the same file
    seed_everything(args.seed)
    locator = not args.no_locator
    changes = {"locator": locator} | ({} if args.locator_loss is None else {"locator_loss": args.locator_loss})
    if not locator:
        changes["locator_feedback"] = False  # it reads the locator's map
    model = (AnyRefModel(with_recipe(preset("mini", **changes), args.recipe)) if args.init_from is None
             else AnyRefModel.start_from(args.init_from, **changes))
    if args.audio_from:
        model.audio.load_state_dict(load_audio_encoder(args.audio_from).state_dict())
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         warmup_steps=args.warmup, checkpoint_every=100, time_budget_s=args.minutes * 60,
                         tasks=mix)
    result = train(model, config, run_dir=args.run_dir, resume=True)
    if args.save_model:
        model.save_pretrained(args.save_model, overwrite=True)
    eval_began = time.perf_counter()
    scores = evaluate_tasks(model, num=args.eval_samples, shots=args.shots)
    measured = headline(scores)
    report = {
        "benchmark": "AnyRef-mini on the ShapeScenes task mixture, mini preset (pretrained ingredients), 128px",
        "commit": commit(), "machine": machine(), "torch_threads": torch.get_num_threads(),
        "train_wall_s": round(result.wall_s, 1), "train_steps": result.steps, "schedule_steps": args.steps,
        "recipe": args.recipe, "locator": locator, "locator_loss": model.config.locator_loss if locator else None,
        "locator_feedback": model.config.locator_feedback,
        "init_from": args.init_from, "audio_from": args.audio_from, "seed": args.seed, "batch_size": args.batch_size,
        "lr": args.lr, "warmup_steps": args.warmup, "minutes_budget": args.minutes,
        "mixture": dict(mix), "eval_samples_per_task": args.eval_samples, "shots": args.shots,
        "eval_wall_s": round(time.perf_counter() - eval_began, 1), "eval": "greedy generation with KV cache",
        "parameters": model.parameter_counts(), "final_loss_mean_last50": sum(result.losses[-50:]) / 50,
        "previous_runs": previous, "total_train_steps": result.steps + sum(r["train_steps"] for r in previous),
        "total_train_wall_s": round(result.wall_s + sum(r["train_wall_s"] for r in previous), 1),
        "targets": TARGETS, "headline": measured, "met": {k: measured[k] >= v for k, v in TARGETS.items()},
        "scores": scores,
        "baseline_all_objects": all_objects_baseline(num=args.eval_samples, shots=args.shots),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("train_wall_s", "train_steps", "headline", "met")}, indent=2))


if __name__ == "__main__":
    main()
