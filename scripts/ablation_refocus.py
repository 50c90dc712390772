"""Table 7 in miniature: train AnyRef-mini on text referring with each refocusing weight lambda_f, same budget.

The paper's five settings: lambda_f = 0 (no refocusing), 0.1 (its choice), 1.0, and a trainable lambda_f initialised
at 0.1 and at 1.0 (written 0.1+ and 1.0+, the paper's dagger). Every run starts from the same pretrained ingredients,
with the same schedule, batch, learning rate and data order for a seed, and is scored by greedy generation on the
same val samples, next to what segment-everything scores on them. Each finished run is written at once to the JSON
(default data/results/refocus_ablation.json) and skipped when the script is run again with the same budget and the
same ingredients (the sha256 of those text referring uses is part of the budget: runs on other ingredients are not
comparable).

    python scripts/ablation_refocus.py [--steps 400] [--seeds 0 1] [--settings 0 0.1 1.0 0.1+ 1.0+]
        [--recipe paper] [--eval-samples 100] [--out PATH]

Two processes may share one --out (say one per seed, on two cores): each re-reads the file before adding a run.

Duration: about (steps x 0.5 s + eval-samples x 0.05 s) per run on one contended CPU thread; the defaults (10 runs)
take about 40 minutes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

from anyref import AnyRefModel, preset
from anyref.config import RECIPE_HELP, RECIPES, with_recipe
from anyref.data import split_samples
from anyref.errors import AnyRefConfigError
from anyref.evaluate import evaluate_referring, segment_everything
from anyref.paths import INGREDIENTS_DIR, RESULTS_DIR
from anyref.provenance import commit, machine
from anyref.train import TrainConfig, seed_everything, train

SETTINGS = ("0", "0.1", "1.0", "0.1+", "1.0+")  # "+": lambda_f trains, initialised at the number (Table 7's dagger)


def parse_setting(name: str) -> tuple[float, bool]:
    """ "0.1" -> (0.1, False); "1.0+" -> (1.0, True)."""
    try:
        return float(name.rstrip("+")), name.endswith("+")
    except ValueError:
        raise AnyRefConfigError(f"setting {name!r} is not a number, optionally followed by '+' (trainable); "
                                f"e.g. {' '.join(SETTINGS)}") from None


TEXT_INGREDIENTS = ("clip-mini", "llava-mini", "sam-mini")  # what text referring reads (audio-mini never runs)


def ingredients_sha256() -> str:
    """The first 12 hex digits of a sha256 over the weights and configs (not the metrics files) of the ingredients
    that text referring uses."""
    digest = hashlib.sha256()
    for path in sorted(p for name in TEXT_INGREDIENTS for p in (INGREDIENTS_DIR / name).rglob("*")):
        if path.is_file() and path.name != "metrics.json":
            digest.update(str(path.relative_to(INGREDIENTS_DIR)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def run_one(setting: str, *, seed: int, args) -> dict:
    """Train one setting at one seed and score it on val: the JSON entry of that run."""
    weight, learnable = parse_setting(setting)
    seed_everything(seed)
    model_config = preset(args.preset, refocus_weight=weight, refocus_learnable=learnable)
    model = AnyRefModel(with_recipe(model_config, args.recipe))
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup,
                         seed=seed, checkpoint_every=args.steps)
    lambdas = []

    def follow_lambda(step, model, result):
        if model.refocus_lambda is not None and (step % args.log_every == 0 or step == args.steps):
            lambdas.append([step, round(float(model.refocus_lambda.detach()), 5)])

    result = train(model, config, progress=args.progress, callback=follow_lambda)
    began = time.perf_counter()
    scores = evaluate_referring(model, split_samples("val", num=args.eval_samples), progress=args.progress)
    every = max(1, args.steps // 50)
    return {"setting": setting, "refocus_weight": weight, "learnable": learnable, "seed": seed,
            "train_steps": result.steps, "train_wall_s": round(result.wall_s, 1),
            "eval_wall_s": round(time.perf_counter() - began, 1), "val": scores,
            "final_lambda": float(model.refocus_lambda.detach()) if learnable else weight, "lambda_curve": lambdas,
            "final_loss_mean_last50": sum(result.losses[-50:]) / len(result.losses[-50:]),
            "loss_curve": [[i + 1, round(loss, 4)] for i, loss in enumerate(result.losses) if (i + 1) % every == 0]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini", help="mini (the course) or micro (a smoke test)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="lambda_f values; '+' = trainable")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--recipe", default="paper", choices=RECIPES, help=RECIPE_HELP)
    parser.add_argument("--steps", type=int, default=400, help="training steps of every run (its whole schedule)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=40)
    parser.add_argument("--eval-samples", type=int, default=100, help="val samples each run is scored on")
    parser.add_argument("--log-every", type=int, default=20, help="record a trainable lambda_f every N steps")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--out", default=str(RESULTS_DIR / "refocus_ablation.json"))
    args = parser.parse_args(argv)
    for setting in args.settings:
        parse_setting(setting)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = {"preset": args.preset, "recipe": args.recipe, "steps": args.steps, "batch_size": args.batch_size,
              "lr": args.lr, "warmup_steps": args.warmup, "eval_samples": args.eval_samples, "task": "text referring",
              "ingredients_sha256": ingredients_sha256()}
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {}
    if report.get("budget") != budget:  # another budget or other ingredients: the old runs are not comparable
        floor = evaluate_referring(segment_everything, split_samples("val", num=args.eval_samples), progress=False)
        report = {"experiment": "Table 7 in miniature: refocusing weight lambda_f on ShapeScenes text referring",
                  "budget": budget, "segment_everything_val": floor, "runs": []}
    done = {(r["setting"], r["seed"]) for r in report["runs"]}
    for seed in args.seeds:
        for setting in args.settings:
            if (setting, seed) in done:
                print(f"lambda_f {setting} seed {seed}: already in {out}")
                continue
            entry = {**run_one(setting, seed=seed, args=args), "commit": commit(), "machine": machine(),
                     "torch_threads": torch.get_num_threads()}
            if out.exists():  # another process (another seed) may have added runs meanwhile
                shared = json.loads(out.read_text())
                if shared.get("budget") == budget:
                    report = shared
            report["runs"].append(entry)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1) + "\n")
            print(f"lambda_f {setting} seed {seed}: val cIoU {entry['val']['ciou']:.3f} "
                  f"gIoU {entry['val']['giou']:.3f}, <obj> rate {entry['val']['obj_rate']:.2f}, "
                  f"final lambda {entry['final_lambda']:.3f}, {entry['train_wall_s']:.0f} s", flush=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
