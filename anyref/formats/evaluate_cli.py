"""`anyref eval --data FORMAT:ROOT --split S`: a model, or the segment-everything floor, on ShapeScenes or on a real
benchmark in its release layout, scored with the paper's metric for that benchmark.

The scores go to stdout as JSON ({split: scores}), the paper-shaped table to stderr, and with --out a JSON record
(scores, options, commit, machine) to a file.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import AnyRefUsageError
from .common import MIN_PIXELS


@dataclass(frozen=True)
class Format:
    """A benchmark the command reads: its task, the paper's column title and splits, and its data set name."""

    task: str  # referring | reg | avs | fewshot
    title: str
    splits: tuple[str, ...]  # the paper's columns: the default --split
    dataset: str = ""  # REFER data set, AVSBench subset or few-shot benchmark


FORMATS = {
    "shapescenes": Format("referring", "ShapeScenes", ("val", "testA", "testB")),
    "refcoco": Format("referring", "RefCOCO", ("val", "testA", "testB"), "refcoco"),
    "refcoco+": Format("referring", "RefCOCO+", ("val", "testA", "testB"), "refcoco+"),
    "refcocog": Format("referring", "RefCOCOg", ("val", "test"), "refcocog"),
    "refcoco-reg": Format("reg", "RefCOCO", ("testA", "testB"), "refcoco"),
    "refcoco+-reg": Format("reg", "RefCOCO+", ("testA", "testB"), "refcoco+"),
    "refcocog-reg": Format("reg", "RefCOCOg", ("val",), "refcocog"),
    "avsbench-s4": Format("avs", "Single-source", ("test",), "s4"),
    "avsbench-ms3": Format("avs", "Multi-source", ("test",), "ms3"),
    "pascal5i": Format("fewshot", "PASCAL-5i", ("val",), "pascal5i"),
    "coco20i": Format("fewshot", "COCO-20i", ("val",), "coco20i"),
}
FLOOR = "floor"  # --model floor: one mask over every annotated object, no words
OPTIONS = {"referring": ("limit", "split_by", "image_size"), "reg": ("limit", "split_by", "meteor"),
           "avs": ("limit", "audio_window"), "fewshot": ("limit", "fold", "shots", "episodes", "seed", "min_pixels")}
SHAPESCENES_NUM = 200  # samples per ShapeScenes split without --limit


def parse_data(text: str) -> tuple[str, Format, Path | None]:
    """"FORMAT:ROOT" (or "shapescenes", in memory) -> the format's name, the Format and the root folder."""
    name, _, root = text.partition(":")
    if name not in FORMATS:
        raise AnyRefUsageError(f"unknown data format {name!r} in --data {text!r}; formats are {tuple(FORMATS)}")
    if (name == "shapescenes") != (not root):
        raise AnyRefUsageError(f"--data {text!r}: " + ("ShapeScenes is made in memory; pass --data shapescenes"
                                                  if root else f"name the folder, e.g. --data {name}:/data/{name}"))
    return name, FORMATS[name], Path(root) if root else None


def load_answerer(model: str, form: Format):
    """--model -> (answerer: sample -> Prediction, the name the table shows)."""
    from ..evaluate import model_answerer, segment_everything

    if model == FLOOR:
        if form.task == "avs":
            raise AnyRefUsageError("--model floor needs every object annotated, and AVSBench annotates only what "
                                   "sounds; evaluate a model folder instead")
        return segment_everything, "floor (segment everything)"
    from ..model import AnyRefModel

    return model_answerer(AnyRefModel.from_pretrained(model)), Path(model).name


def _read_referring(form: Format, root, split: str, args):
    """ShapeScenes (in memory) or REFER text-referring samples."""
    if root is None:
        from ..data import SPLIT_ID, split_samples

        if split not in SPLIT_ID:
            raise AnyRefUsageError(f"argument --split: invalid choice: {split!r} (ShapeScenes splits: "
                                   f"{', '.join(SPLIT_ID)})")
        return split_samples(split, num=args.limit or SHAPESCENES_NUM, image_size=args.image_size)
    from .refer import read_refer

    return read_refer(root, form.dataset, split, split_by=args.split_by, limit=args.limit)


def _read_reg(form: Format, root, split: str, args):
    """REFER region captions."""
    from .regcaption import read_region_captions

    return read_region_captions(root, form.dataset, split, split_by=args.split_by, limit=args.limit)


def _read_avs(form: Format, root, split: str, args):
    """AVSBench S4 / MS3 frames, video by video."""
    from .avsbench import read_avsbench

    return read_avsbench(root, form.dataset, split, audio_window=args.audio_window, limit=args.limit)


def _read_fewshot(form: Format, root, split: str, args):
    """A fold's seeded episodes."""
    from .fewshot import make_episodes, read_fold

    fold = read_fold(root, form.dataset, args.fold, split=split, min_pixels=args.min_pixels)
    return make_episodes(fold, shots=args.shots, seed=args.seed, episodes=args.episodes, limit=args.limit)


def _score_referring(answer, samples, split: str, args) -> dict:
    """cIoU / gIoU / <obj> rate."""
    from ..evaluate import evaluate_referring

    return evaluate_referring(answer, samples, desc=split)


def _score_reg(answer, samples, split: str, args) -> dict:
    """METEOR / CIDEr against every sentence, and the grounded mask's cIoU."""
    from .regcaption import score_region_captions

    return score_region_captions(answer, samples, meteor=args.meteor, desc=split)


def _score_avs(answer, frames, split: str, args) -> dict:
    """AVSBench mIoU / F-score."""
    from .avsbench import score_avsbench

    return score_avsbench(answer, frames, frames_per_video=frames.frames_per_video, desc=split)


def _score_fewshot(answer, episodes, split: str, args) -> dict:
    """One-/few-shot mIoU and FB-IoU, plain and mask-cropped supports."""
    from .fewshot import score_fewshot

    return score_fewshot(answer, episodes)


READERS = {"referring": _read_referring, "reg": _read_reg, "avs": _read_avs, "fewshot": _read_fewshot}
SCORERS = {"referring": _score_referring, "reg": _score_reg, "avs": _score_avs, "fewshot": _score_fewshot}


def _check_out(out: str | None) -> Path | None:
    """The --out file, checked before anything is evaluated."""
    if out is None:
        return None
    path = Path(out)
    if path.is_dir() or not path.parent.is_dir():
        raise AnyRefUsageError(f"--out {out!r} must be a file in an existing folder")
    return path


def run_eval(args) -> None:
    """Evaluate, print the table (stderr) and the scores (stdout, JSON), and write the record to --out."""
    from ..provenance import commit, machine
    from .tables import TABLES

    name, form, root = parse_data(args.data)
    out = _check_out(args.out)
    data = {split: READERS[form.task](form, root, split, args) for split in args.splits or form.splits}  # files checked
    answer, method = load_answerer(args.model, form)
    began = time.perf_counter()
    scores = {split: SCORERS[form.task](answer, samples, split, args) for split, samples in data.items()}
    title = form.title + (f" fold {args.fold}" if form.task == "fewshot" else "")
    print(TABLES[form.task](title, method, scores), file=sys.stderr)
    print(json.dumps(scores, indent=2))
    if out is not None:
        record = {"format": name, "root": str(root) if root else None, "model": args.model,
                  "options": {key: getattr(args, key) for key in OPTIONS[form.task]}, "scores": scores,
                  "wall_s": round(time.perf_counter() - began, 1), "commit": commit(), "machine": machine()}
        out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"scores written to {out}", file=sys.stderr)


def _int_at_least(minimum: int):
    """An argparse type: an integer >= minimum (0 or 1), refused in the CLI's words otherwise."""
    words = "a positive integer" if minimum == 1 else "a non-negative integer"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {words}, got {text!r}")
        return value
    return parse


def add_eval_parser(subparsers) -> None:
    """Register `anyref eval` on the CLI's subparsers."""
    ev = subparsers.add_parser("eval", help="score a model on ShapeScenes or a real benchmark (--data FORMAT:ROOT)",
                               description=__doc__)
    ev.add_argument("--model", required=True, help=f"a model folder, or '{FLOOR}' (segment everything, no words)")
    ev.add_argument("--data", default="shapescenes", metavar="FORMAT:ROOT",
                    help=f"formats: {', '.join(FORMATS)}; ROOT is the data set's folder in its release layout")
    ev.add_argument("--split", "--splits", dest="splits", nargs="+", default=None, metavar="SPLIT",
                    help="split(s) to score (default: the paper's columns for the format)")
    ev.add_argument("--limit", "--num", dest="limit", type=_int_at_least(1), default=None,
                    help=f"score the first N samples (AVSBench: videos; ShapeScenes: {SHAPESCENES_NUM} if not given)")
    ev.add_argument("--out", default=None, help="also write the scores, options and provenance to this JSON file")
    ev.add_argument("--image-size", type=_int_at_least(1), default=128,
                    help="ShapeScenes image size")
    ev.add_argument("--split-by", default=None, help="REFER split file (default: unc for RefCOCO/+, umd for RefCOCOg)")
    ev.add_argument("--no-meteor", dest="meteor", action="store_false", help="REG: skip METEOR (it needs Java)")
    ev.add_argument("--audio-window", choices=("clip", "second"), default="clip",
                    help="AVSBench: each frame hears the whole 5 s clip (the paper) or its own second")
    ev.add_argument("--fold", type=_int_at_least(0), default=0, help="few-shot fold (0-3)")
    ev.add_argument("--shots", type=_int_at_least(1), default=5,
                    help="few-shot supports per episode (one-shot uses the first)")
    ev.add_argument("--episodes", type=_int_at_least(1), default=None,
                    help="few-shot episodes, cycling over the queries (default: each query once; HSNet uses 1000)")
    ev.add_argument("--seed", type=_int_at_least(0), default=0, help="few-shot support sampling seed")
    ev.add_argument("--min-pixels", type=_int_at_least(0), default=MIN_PIXELS,
                    help="PFENet lists: a class must cover this many pixels of a query (2 x 32 x 32; 0 for any)")
    ev.set_defaults(run=run_eval)
