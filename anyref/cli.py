"""Command line: `anyref train`, `anyref predict`, `anyref eval`, `anyref pretrain`, `anyref scene`.

Each subcommand is one `_add_*` function in SUBCOMMANDS that registers its parser and sets `run`; add a command by
appending such a function. Every error the package raises on purpose is printed in one line with exit status 2.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

from .config import PRESETS, RECIPES
from .errors import AnyRefError, AnyRefInputError, AnyRefUsageError, AnyRefWarning
from .formats.evaluate_cli import add_eval_parser  # `anyref eval`: ShapeScenes or --data FORMAT:ROOT
from .pretrain.clip_mini import CLIPPretrainConfig
from .train import TrainConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")  # what --out may write (matplotlib's imsave, through Pillow for JPEG)
TRAIN_DEFAULTS = TrainConfig()


class Parser(argparse.ArgumentParser):
    """argparse that raises AnyRefUsageError instead of printing usage and exiting."""

    def error(self, message: str):
        error = AnyRefUsageError(f"{message} (see `{self.prog} --help`)")
        error.prog = self.prog
        raise error


# ---- argument types: each refuses a bad value with a message argparse shows as "argument --x: <message>" ----------

def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _number(text, int, minimum=1, words="a positive integer")


def count(text: str) -> int:
    """An integer >= 0."""
    return _number(text, int, minimum=0, words="a non-negative integer")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text, float, minimum=0, words="a positive number")
    if value == 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def device(text: str) -> str:
    """A torch device name: cpu, cuda, cuda:1, mps."""
    import torch

    try:
        torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"must be a torch device such as cpu or cuda, got {text!r}") from None
    return text


def _number(text: str, kind, *, minimum, words: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}") from None
    if not math.isfinite(value) or value < minimum:
        raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}")
    return value


# ---- files: checked before any model is loaded or trained ----------------------------------------------------------

def check_output_image(path: str, *, flag: str = "--out", inputs: tuple = ()) -> Path:
    """An image path we may write: a known suffix, an existing folder, not a folder itself, none of the inputs."""
    out = Path(path)
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise AnyRefInputError(f"{flag} {path!r} must end in one of {', '.join(IMAGE_SUFFIXES)} (the image format)")
    if out.is_dir():
        raise AnyRefInputError(f"{flag} {path!r} is a folder; give a file name such as {str(out / 'overlay.png')!r}")
    if not out.parent.is_dir():
        raise AnyRefInputError(f"{flag} {path!r}: the folder {str(out.parent)!r} does not exist; create it first")
    if any(Path(p).resolve() == out.resolve() for p in inputs if p):
        raise AnyRefInputError(f"{flag} {path!r} is one of the input files; write the overlay somewhere else")
    return out


def read_image(path: str, *, flag: str):
    """A PNG/JPEG file as a checked uint8 (H, W, 3) array, or an error naming the flag and the file."""
    from PIL import Image

    from .predict import check_image
    from .viz import load_image

    file = Path(path)
    if not file.is_file():
        raise AnyRefInputError(f"{flag} {path!r} {'is a folder' if file.is_dir() else 'does not exist'}; give a PNG "
                               "or JPEG file")
    try:
        image = load_image(file)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise AnyRefInputError(f"{flag} {path!r} cannot be read as an image ({error}); give a PNG or JPEG "
                               "file") from None
    try:
        return check_image(image).numpy()
    except AnyRefInputError as error:
        raise AnyRefInputError(f"{flag} {path!r}: {error}") from None


def check_new_folder(path: str, *, flag: str, overwrite: bool) -> Path:
    """A folder to write a model into: absent, empty, or (with --overwrite) replaceable; never a file."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise AnyRefInputError(f"{flag} {path!r} is a file; give a folder name")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise AnyRefInputError(f"{flag} {path!r} is not empty; pass --overwrite to replace it or choose another {flag}")
    return folder


# ---- subcommands -------------------------------------------------------------------------------------------------

def _train(args) -> None:
    import torch

    from .config import preset, with_recipe
    from .data import training_sample
    from .data.tasks import task_sample
    from .model import AnyRefModel
    from .train import train

    out = check_new_folder(args.out, flag="--out", overwrite=args.overwrite)
    run_dir = Path(args.run_dir) if args.run_dir else out.with_name(out.name + "-run")
    if run_dir.exists() and not run_dir.is_dir():
        raise AnyRefInputError(f"--run-dir {str(run_dir)!r} is a file; give a folder for the checkpoints")
    tasks = _task_mix(args.tasks)
    if tasks is None:  # the first sample: image size and mixture are checked before the model is built
        training_sample(0, seed=args.seed, image_size=args.image_size)
    else:
        task_sample(0, seed=args.seed, image_size=args.image_size, mix=tasks)
    torch.manual_seed(args.seed)
    model = AnyRefModel(with_recipe(preset(args.preset), args.recipe))
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         image_size=args.image_size, warmup_steps=min(100, max(1, args.steps // 10)),
                         checkpoint_every=args.checkpoint_every, time_budget_s=args.minutes * 60 if args.minutes else None,
                         tasks=tasks)
    if args.deepspeed:  # the same model, batches and loss, stepped by DeepSpeed (anyref/deepspeed_engine.py)
        from .deepspeed_engine import train_and_save
        return train_and_save(model, args.deepspeed, config, run_dir=run_dir, resume=args.resume, out=out,
                              overwrite=args.overwrite)
    result = train(model, config, run_dir=run_dir, resume=args.resume)
    model.save_pretrained(out, overwrite=args.overwrite)
    print(f"trained {result.steps} steps in {result.wall_s:.0f} s; final loss {result.losses[-1]:.3f}; saved to {out}")


def _task_mix(spec: list[str] | None):
    """`--tasks` values (task=weight ...) -> a mixture; no values -> the default mixture; flag absent -> None."""
    from .data.tasks import parse_mix

    return None if spec is None else parse_mix(spec)


def _predict(args) -> None:
    from .audio import load_waveform
    from .model import AnyRefModel
    from .predict import predict
    from .viz import overlay, save_image

    inputs = (args.image, *(args.example or ()), args.audio)
    out = check_output_image(args.out, inputs=inputs) if args.out else None
    image = read_image(args.image, flag="--image")
    examples = [read_image(path, flag="--example") for path in args.example] if args.example else None
    audio = load_waveform(args.audio) if args.audio else None  # (T,) at 16 kHz, read before the model loads
    model = AnyRefModel.from_pretrained(args.model)
    pred = predict(model, image, args.text, box=args.box, examples=examples, audio=audio,
                   sample_rate=16000 if audio is not None else None)
    print(json.dumps({"answer": pred.text, "masks": len(pred.masks),
                      "mask_pixels": [int(m.sum()) for m in pred.masks]}))
    if out:
        save_image(out, overlay(image, pred.masks))
        print(f"overlay written to {out}")


def _scene(args) -> None:
    from .data import training_sample
    from .tokens import segment_question
    from .viz import save_image

    out = check_output_image(args.out)
    sample = training_sample(args.index, seed=args.seed, image_size=args.image_size)
    save_image(out, sample.scene.image)
    print(json.dumps({"image": args.out, "expression": sample.expression,
                      "question": segment_question(sample.expression)}))


def _pretrain(args) -> None:
    from .pretrain.run import pretrain

    metrics = pretrain(args.ingredient, steps=args.steps, out=args.out, overwrite=args.overwrite,
                       clip_folder=args.clip, run_dir=args.run_dir, resume=args.resume, device=args.device,
                       region_steps=args.region_steps)
    print(json.dumps(metrics, indent=2))


def _add_train(sub) -> None:
    train = sub.add_parser("train", help="train on ShapeScenes text referring, or on the task mixture (--tasks)")
    train.add_argument("--preset", default="mini", choices=sorted(PRESETS))
    train.add_argument("--recipe", default="paper", choices=RECIPES,
                       help="what trains: the paper's LoRA on q, v (default), or the miniature's full-llm deviation, "
                            "every LLM weight and the projector (learns several times faster at mini scale)")
    train.add_argument("--steps", type=positive_int, default=TRAIN_DEFAULTS.steps)
    train.add_argument("--minutes", type=positive_float, default=None, help="stop after this much training time")
    train.add_argument("--batch-size", type=positive_int, default=TRAIN_DEFAULTS.batch_size)
    train.add_argument("--lr", type=positive_float, default=TRAIN_DEFAULTS.lr)
    train.add_argument("--image-size", type=positive_int, default=TRAIN_DEFAULTS.image_size)
    train.add_argument("--seed", type=count, default=TRAIN_DEFAULTS.seed)
    train.add_argument("--tasks", nargs="*", default=None, metavar="TASK=WEIGHT",
                       help="train on the task mixture (no values: the default mixture); without it: text referring")
    train.add_argument("--checkpoint-every", type=positive_int, default=TRAIN_DEFAULTS.checkpoint_every)
    train.add_argument("--run-dir", default=None, help="checkpoint folder (default: OUT-run)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in the run folder")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    train.add_argument("--out", required=True, help="where to save the trained model")
    train.add_argument("--deepspeed", default=None, metavar="CONFIG", help="train through DeepSpeed with this JSON "
                       "(configs/deepspeed/); its batch, optimizer, schedule and length replace those flags")
    train.set_defaults(run=_train)


def _add_predict(sub) -> None:
    pred = sub.add_parser("predict", help="answer about an image from text, a box, example images or audio, with masks")
    pred.add_argument("--model", required=True)
    pred.add_argument("--image", required=True)
    pred.add_argument("--text", default=None, help="the question; may quote <img.ref></img.ref> / <aud.ref></aud.ref>")
    pred.add_argument("--box", type=float, nargs=4, metavar=("X1", "Y1", "X2", "Y2"), default=None,
                      help="a region reference, in pixels of --image")
    pred.add_argument("--example", action="append", default=None,
                      help="an example image of the object to find (repeat for few-shot)")
    pred.add_argument("--audio", default=None, help="a wav file whose sounding object to segment (stereo is averaged)")
    pred.add_argument("--out", default=None, help=f"write an overlay of the masks ({', '.join(IMAGE_SUFFIXES)})")
    pred.set_defaults(run=_predict)


def _add_pretrain(sub) -> None:
    pre = sub.add_parser("pretrain", help="pretrain a miniature ingredient (CLIP, SAM, LLaVA, ImageBind-audio)")
    pre.add_argument("ingredient", choices=["clip", "sam", "llava", "audio"])
    pre.add_argument("--steps", type=positive_int, default=None,
                     help="fewer steps for a quick look (default: the shipped recipe)")
    pre.add_argument("--out", default=None, help="where to save (default: data/ingredients/<name>-mini)")
    pre.add_argument("--clip", default=None, help="CLIP-mini folder that LLaVA-mini and audio-mini build on")
    pre.add_argument("--overwrite", action="store_true", help="replace existing weights in --out")
    pre.add_argument("--run-dir", default=None, help="keep checkpoints here (every 100 steps) so a run can resume")
    pre.add_argument("--resume", action="store_true", help="continue from the checkpoint in --run-dir")
    pre.add_argument("--region-steps", type=count, default=None,
                     help="CLIP-mini's second stage: steps of pairs + region term "
                          f"(default: the recipe's {CLIPPretrainConfig.region_steps}; 0 with --steps)")
    pre.add_argument("--device", type=device, default="cpu",
                     help="where CLIP-mini trains (e.g. cuda); the others train on the CPU")
    pre.set_defaults(run=_pretrain)


def _add_scene(sub) -> None:
    scene = sub.add_parser("scene", help="write a ShapeScenes image and a question about it")
    scene.add_argument("--index", type=count, default=0)
    scene.add_argument("--seed", type=count, default=0)
    scene.add_argument("--image-size", type=positive_int, default=TRAIN_DEFAULTS.image_size)
    scene.add_argument("--out", required=True)
    scene.set_defaults(run=_scene)


SUBCOMMANDS = [_add_train, _add_predict, add_eval_parser, _add_pretrain, _add_scene]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `anyref` command: one subparser per function in SUBCOMMANDS."""
    parser = Parser(prog="anyref", description="AnyRef, rebuilt to be learned.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


@contextmanager
def _notes_on_stderr(prog: str):
    """Show AnyRefWarnings (inputs the package adjusted) as one "PROG: note: ..." line each on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", AnyRefWarning)
        show = warnings.showwarning

        def note(message, category, *rest, **kwargs):
            if issubclass(category, AnyRefWarning):
                print(f"{prog}: note: {message}", file=sys.stderr)
            else:
                show(message, category, *rest, **kwargs)

        warnings.showwarning = note
        yield


def run(argv: list[str] | None = None) -> None:
    """Parse and run one command; its AnyRefErrors propagate, carrying the command's name in `error.prog`."""
    args = build_parser().parse_args(argv)
    prog = f"anyref {args.command}"
    try:
        with _notes_on_stderr(prog):
            args.run(args)
    except AnyRefError as error:
        error.prog = getattr(error, "prog", prog)
        raise


def error_line(error: AnyRefError) -> str:
    """How the command line shows an error: "anyref CMD: error: MESSAGE", on one line."""
    return f"{getattr(error, 'prog', 'anyref')}: error: {' '.join(str(error).split())}"


def main(argv: list[str] | None = None) -> int:
    """Entry point; AnyRef errors are printed as one line (exit status 2), not a traceback."""
    try:
        run(argv)
    except AnyRefError as error:
        print(error_line(error), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
