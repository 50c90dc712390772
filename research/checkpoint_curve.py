"""Lab: a long run's learning curve from the checkpoints it kept, scored on held-out samples.

A run keeps only its last two checkpoints; keep others by copying them aside while it trains. Each snapshot's
trainable.safetensors is loaded into the finished model (same configuration, the frozen weights it shares) and
scored by generation: cIoU on the first --num val samples, with the floor of those samples. Writes --out.

    python research/checkpoint_curve.py --model build/v2/text-long-model --snapshots build/v3/snapshots/text-v2-long \
        --num 100 --out research/results/text_long_curve.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from anyref import AnyRefModel
from anyref.data import split_samples
from anyref.evaluate import evaluate_referring, segment_everything
from anyref.provenance import commit, machine
from lab import load_snapshot, snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the run's finished model folder")
    parser.add_argument("--snapshots", type=Path, required=True, help="a folder of step-NNNNNN checkpoint copies")
    parser.add_argument("--split", default="val")
    parser.add_argument("--num", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    began = time.perf_counter()
    model = AnyRefModel.from_pretrained(args.model).eval()
    samples = split_samples(args.split, num=args.num)
    curve = []
    for folder in snapshots(args.snapshots):
        step = load_snapshot(model, folder)
        scores = evaluate_referring(model, samples, desc=folder.name)
        curve.append({"step": step, **scores})
        print(curve[-1], flush=True)
    record = {"model": str(args.model), "split": args.split, "samples": args.num, "curve": curve,
              "floor": evaluate_referring(segment_everything, samples, progress=False),
              "wall_s": round(time.perf_counter() - began, 1), "commit": commit(), "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
