"""Benchmark the shipped miniature ingredients on held-out ShapeScenes data and write
data/results/ingredients_mini.json: CLIP-mini zero-shot top-1, SAM-mini box/point mIoU, audio-mini retrieval top-1,
LLaVA-mini answer accuracy, with the targets of the ingredients issue."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


from anyref.config import SAMConfig
from anyref.provenance import commit, machine
from anyref.paths import RESULTS_DIR
from anyref.pretrain import audio_mini, clip_mini, llava_mini, sam_mini
from anyref.pretrain.run import crop_embedder
from anyref.pretrain.run import folder_of as shipped_folder

TARGETS = {"clip_zero_shot_top1": 0.97, "sam_box_miou": 0.90, "audio_retrieval_top1": 0.95,
           "llava_colour": 0.85, "llava_shape": 0.85, "llava_where": 0.70, "llava_count": 0.70}
ROOT: Path | None = None  # --ingredients: benchmark another folder of ingredients (a candidate before shipping)


def folder_of(name: str) -> Path:
    """The folder of an ingredient: the shipped one, or the one under --ingredients."""
    return shipped_folder(name) if ROOT is None else ROOT / shipped_folder(name).name


def training_record(name: str) -> dict | None:
    """What the ingredient's pretraining run recorded (metrics.json, or the metrics inside config.json)."""
    folder = folder_of(name)
    if (folder / "metrics.json").exists():
        return json.loads((folder / "metrics.json").read_text())
    return json.loads((folder / "config.json").read_text()).get("metrics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenes", type=int, default=200, help="held-out scenes for CLIP and SAM")
    parser.add_argument("--sounds", type=int, default=120, help="held-out sounds for audio retrieval")
    parser.add_argument("--questions", type=int, default=100, help="held-out questions per kind for LLaVA-mini")
    parser.add_argument("--ingredients", default=None, help="a folder holding clip-mini, sam-mini, llava-mini, "
                        "audio-mini (default: the shipped data/ingredients)")
    parser.add_argument("--out", default=str(RESULTS_DIR / "ingredients_mini.json"))
    args = parser.parse_args()
    global ROOT
    ROOT = Path(args.ingredients) if args.ingredients else None

    began, figures, timings = time.perf_counter(), {}, {}
    clip, tokenizer = clip_mini.load_clip_mini(folder_of("clip"))
    start = time.perf_counter()
    figures["clip_zero_shot_top1"] = clip_mini.zero_shot_accuracy(clip, tokenizer, num_scenes=args.scenes)
    timings["clip"] = time.perf_counter() - start

    start = time.perf_counter()
    sam = sam_mini.build_sam(SAMConfig(checkpoint=str(folder_of("sam") / "model.safetensors"))).eval()
    figures["sam_box_miou"] = sam_mini.evaluate_sam(sam, num_scenes=args.scenes)
    figures["sam_point_miou"] = sam_mini.evaluate_sam(sam, num_scenes=args.scenes, prompt="point")
    timings["sam"] = time.perf_counter() - start

    start = time.perf_counter()
    encoder = audio_mini.load_audio_encoder(folder_of("audio"))
    embed = crop_embedder(clip)
    figures["audio_retrieval_top1"] = audio_mini.audio_retrieval_top1(encoder, embed, num=args.sounds)
    figures["audio_mixture_top2"] = audio_mini.mixture_top2(encoder, embed, num=args.sounds)
    timings["audio"] = time.perf_counter() - start

    start = time.perf_counter()
    llava = llava_mini.load_llava_mini(folder_of("llava"), clip_folder=folder_of("clip"))
    answers = llava_mini.answer_accuracy(llava, num=args.questions)
    figures["llava_answer_accuracy"] = answers["overall"]
    figures.update({f"llava_{k}": v for k, v in answers.items() if k != "overall"})
    timings["llava"] = time.perf_counter() - start

    sizes = {name: sum(f.stat().st_size for f in folder_of(name).rglob("*") if f.is_file())
             for name in ("clip", "sam", "llava", "audio")}
    report = {
        "benchmark": "miniature ingredients on held-out ShapeScenes data", "commit": commit(),
        "ingredients": str(folder_of("clip").parent),
        "machine": machine(),
        "figures": figures, "targets": TARGETS,
        "met": {k: figures[k] >= v for k, v in TARGETS.items()},
        "held_out": {"scenes": args.scenes, "sounds": args.sounds, "questions_per_kind": args.questions},
        "eval_wall_s": {k: round(v, 1) for k, v in timings.items()},
        "shipped_bytes": sizes, "shipped_total_mb": round(sum(sizes.values()) / 2**20, 2),
        "training": {name: training_record(name) for name in ("clip", "sam", "llava", "audio")},
        "wall_s": round(time.perf_counter() - began, 1),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
