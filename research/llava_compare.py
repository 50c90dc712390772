"""Score LLaVA-mini folders side by side on more held-out questions than the pretraining record (100 per kind).

Each model is given as LLAVA_FOLDER or LLAVA_FOLDER=CLIP_FOLDER (the CLIP-mini it was trained on; default the
shipped one). Exact-match answers per kind (colour, shape, where, count) on the same --num questions per kind.
Writes results/attempts/llava_compare.json (or --out).

    python research/llava_compare.py data/ingredients/llava-mini \
        build/ingredients-v4/llava-mini=build/ingredients-v4/clip-mini --num 400
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from anyref.pretrain import llava_mini
from anyref.pretrain.run import folder_of
from anyref.provenance import commit, machine
from lab import ATTEMPTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="LLAVA_FOLDER or LLAVA_FOLDER=CLIP_FOLDER")
    parser.add_argument("--num", type=int, default=400, help="held-out questions per kind")
    parser.add_argument("--out", type=Path, default=ATTEMPTS / "llava_compare.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = {"questions_per_kind": args.num, "models": {}, "commit": commit(), "machine": machine()}
    for spec in args.models:
        llava, _, clip = spec.partition("=")
        began = time.perf_counter()
        model = llava_mini.load_llava_mini(llava, clip_folder=clip or folder_of("clip"))
        scores = llava_mini.answer_accuracy(model, num=args.num)
        report["models"][spec] = {**{k: round(v, 4) for k, v in scores.items()},
                                  "wall_s": round(time.perf_counter() - began, 1)}
        print(spec, report["models"][spec], flush=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
