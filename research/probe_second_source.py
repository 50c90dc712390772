"""Diagnostic: can an audio encoder hear a second, quieter source under a first one?

The shipped mixture over-names a hexagon for single sounds and misses it in two-source mixtures. This asks whether
that is in the frozen audio embeddings: for each added shape S, a linear probe (fit on --train, scored on --test)
tells "X alone" from "X and S together" (X any other shape), from the 3 clip embeddings (3 x E, flattened). Also
reported per encoder: single-sound retrieval top-1 and the two-source top-two rate against CLIP-mini's shape
prototypes (anyref.pretrain.audio_mini). Writes research/results/second_source_probe.json (or --out).

    python research/probe_second_source.py --audio ../data/ingredients/audio-mini ../build/audio-mix-600
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from anyref.audio import waveform_to_clips
from anyref.data import SHAPES, sounds
from anyref.pretrain import audio_mini, clip_mini
from anyref.pretrain.run import crop_embedder, folder_of
from anyref.provenance import commit, machine
from lab import RESULTS


def second_source_probe(encoder, *, train: int, test: int, seed: int) -> dict:
    """Per added shape S: held-out accuracy of a linear probe telling X alone from X mixed with S (chance 0.5)."""
    report = {}
    for added in SHAPES:
        rng = np.random.default_rng([seed, SHAPES.index(added)])
        others = [shape for shape in SHAPES if shape != added]
        features, labels = [], []
        for i in range(train + test):
            first, clip_seed = others[rng.integers(len(others))], int(rng.integers(2**31))
            wave = sounds.sound_for(first, seed=clip_seed, index=0)  # (T,)
            if i % 2:
                wave = sounds.mix(wave, sounds.sound_for(added, seed=clip_seed, index=1))
            with torch.no_grad():
                features.append(encoder(waveform_to_clips(wave, config=encoder.config)[None])[0].flatten().numpy())
            labels.append(i % 2)
        X, y = np.array(features), np.array(labels)  # (N, 3E), (N,)
        probe = LogisticRegression(max_iter=3000).fit(X[:train], y[:train])
        report[added] = float((probe.predict(X[train:]) == y[train:]).mean())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", nargs="+", default=[str(folder_of("audio"))], help="audio-mini folders to probe")
    parser.add_argument("--train", type=int, default=400, help="sounds per added shape the probe is fit on")
    parser.add_argument("--test", type=int, default=200, help="sounds per added shape the probe is scored on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "second_source_probe.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    clip, _ = clip_mini.load_clip_mini(folder_of("clip"))
    embed = crop_embedder(clip)
    encoders = {}
    for folder in args.audio:
        encoder = audio_mini.load_audio_encoder(folder)
        encoders[folder] = {
            "retrieval_top1": audio_mini.audio_retrieval_top1(encoder, embed, num=120),
            "mixture_top2": audio_mini.mixture_top2(encoder, embed, num=120),
            "second_source_accuracy": second_source_probe(encoder, train=args.train, test=args.test, seed=args.seed),
            "training": json.loads((Path(folder) / "metrics.json").read_text()),
        }
        print(folder, json.dumps(encoders[folder]))
    report = {"encoders": encoders, "train": args.train, "test": args.test, "seed": args.seed, "commit": commit(),
              "machine": machine(), "wall_s": round(time.perf_counter() - began, 1)}
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
