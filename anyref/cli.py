"""Command line: `anyref train`, `anyref predict`, `anyref eval`, `anyref pretrain`, `anyref scene`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import AnyRefError


def _train(args) -> None:
    import torch

    from .config import preset
    from .model import AnyRefModel
    from .train import TrainConfig, train

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise AnyRefError(f"{str(out)!r} is not empty; pass --overwrite to replace it or choose another --out")
    torch.manual_seed(args.seed)
    model = AnyRefModel(preset(args.preset))
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         image_size=args.image_size, warmup_steps=min(100, max(1, args.steps // 10)),
                         checkpoint_every=args.checkpoint_every, time_budget_s=args.minutes * 60 if args.minutes else None,
                         tasks=_task_mix(args.tasks))
    result = train(model, config, run_dir=args.run_dir or out.with_name(out.name + "-run"), resume=args.resume)
    model.save_pretrained(out, overwrite=args.overwrite)
    print(f"trained {result.steps} steps in {result.wall_s:.0f} s; final loss {result.losses[-1]:.3f}; saved to {out}")


def _task_mix(spec: list[str] | None):
    """`--tasks` values (task=weight ...) -> a mixture; no values -> the default mixture; flag absent -> None."""
    from .data.tasks import DEFAULT_MIX, TASKS

    if spec is None:
        return None
    if not spec:
        return DEFAULT_MIX
    mix = []
    for item in spec:
        name, _, weight = item.partition("=")
        if name not in TASKS or not weight:
            raise AnyRefError(f"--tasks takes task=weight pairs with tasks from {TASKS}, got {item!r}")
        mix.append((name, float(weight)))
    return tuple(mix)


def _predict(args) -> None:
    from .model import AnyRefModel
    from .predict import predict
    from .viz import load_image, overlay, save_image

    model = AnyRefModel.from_pretrained(args.model)
    def read(path: str, what: str):
        if not Path(path).is_file():
            raise AnyRefError(f"{what} {path!r} does not exist")
        return load_image(Path(path))

    image = read(args.image, "image")
    examples = [read(path, "example image") for path in args.example] if args.example else None
    pred = predict(model, image, args.text, box=args.box, examples=examples, audio=args.audio)
    print(json.dumps({"answer": pred.text, "masks": len(pred.masks),
                      "mask_pixels": [int(m.sum()) for m in pred.masks]}))
    if args.out:
        save_image(args.out, overlay(image, pred.masks))
        print(f"overlay written to {args.out}")


def _eval(args) -> None:
    from .data import split_samples
    from .model import AnyRefModel
    from .evaluate import evaluate_referring

    model = AnyRefModel.from_pretrained(args.model)
    scores = {s: evaluate_referring(model, split_samples(s, num=args.num, image_size=args.image_size), desc=s)
              for s in args.splits}
    print(json.dumps(scores, indent=2))


def _scene(args) -> None:
    from .data import training_sample
    from .tokens import segment_question
    from .viz import save_image

    sample = training_sample(args.index, seed=args.seed, image_size=args.image_size)
    save_image(args.out, sample.scene.image)
    print(json.dumps({"image": args.out, "expression": sample.expression,
                      "question": segment_question(sample.expression)}))


def _pretrain(args) -> None:
    from .pretrain.run import pretrain

    metrics = pretrain(args.ingredient, steps=args.steps, out=args.out, overwrite=args.overwrite,
                       clip_folder=args.clip, run_dir=args.run_dir, resume=args.resume, device=args.device,
                       region_steps=args.region_steps)
    print(json.dumps(metrics, indent=2))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `anyref` command."""
    parser = argparse.ArgumentParser(prog="anyref", description="AnyRef, rebuilt to be learned.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train on ShapeScenes text referring, or on the task mixture (--tasks)")
    train.add_argument("--preset", default="mini")
    train.add_argument("--steps", type=int, default=800)
    train.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--image-size", type=int, default=128)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--tasks", nargs="*", default=None, metavar="TASK=WEIGHT",
                       help="train on the task mixture (no values: the default mixture); without it: text referring")
    train.add_argument("--checkpoint-every", type=int, default=100)
    train.add_argument("--run-dir", default=None, help="checkpoint folder (default: OUT-run)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in the run folder")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    train.add_argument("--out", required=True, help="where to save the trained model")
    train.set_defaults(run=_train)

    pred = sub.add_parser("predict", help="answer about an image from text, a box, example images or audio, with masks")
    pred.add_argument("--model", required=True)
    pred.add_argument("--image", required=True)
    pred.add_argument("--text", default=None, help="the question; may quote <img.ref></img.ref> / <aud.ref></aud.ref>")
    pred.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=None,
                      help="a region reference, in pixels of --image")
    pred.add_argument("--example", action="append", default=None,
                      help="an example image of the object to find (repeat for few-shot)")
    pred.add_argument("--audio", default=None, help="a wav file whose sounding object to segment (read with soundfile)")
    pred.add_argument("--out", default=None, help="write a PNG overlay of the masks")
    pred.set_defaults(run=_predict)

    ev = sub.add_parser("eval", help="cIoU / gIoU on ShapeScenes splits")
    ev.add_argument("--model", required=True)
    ev.add_argument("--splits", nargs="+", default=["val", "testA", "testB"])
    ev.add_argument("--num", type=int, default=200)
    ev.add_argument("--image-size", type=int, default=128)
    ev.set_defaults(run=_eval)

    pre = sub.add_parser("pretrain", help="pretrain a miniature ingredient (CLIP, SAM, LLaVA, ImageBind-audio)")
    pre.add_argument("ingredient", choices=["clip", "sam", "llava", "audio"])
    pre.add_argument("--steps", type=int, default=None, help="fewer steps for a quick look (default: the shipped recipe)")
    pre.add_argument("--out", default=None, help="where to save (default: data/ingredients/<name>-mini)")
    pre.add_argument("--clip", default=None, help="CLIP-mini folder that LLaVA-mini and audio-mini build on")
    pre.add_argument("--overwrite", action="store_true", help="replace existing weights in --out")
    pre.add_argument("--run-dir", default=None, help="keep checkpoints here (every 100 steps) so a run can resume")
    pre.add_argument("--resume", action="store_true", help="continue from the checkpoint in --run-dir")
    pre.add_argument("--region-steps", type=int, default=None,
                     help="CLIP-mini's second stage: steps of pairs + region term "
                          "(default: the recipe's 4000; 0 with --steps)")
    pre.add_argument("--device", default="cpu", help="where CLIP-mini trains (e.g. cuda); the others train on the CPU")
    pre.set_defaults(run=_pretrain)

    scene = sub.add_parser("scene", help="write a ShapeScenes image and a question about it")
    scene.add_argument("--index", type=int, default=0)
    scene.add_argument("--seed", type=int, default=0)
    scene.add_argument("--image-size", type=int, default=128)
    scene.add_argument("--out", required=True)
    scene.set_defaults(run=_scene)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; AnyRef errors are printed as one line, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except AnyRefError as error:
        print(f"anyref {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
