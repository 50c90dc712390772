"""Diagnostic: why does a mixture model score two-source audio below segmenting everything?

Two measures, on the same held-out two-source samples that the benchmark scores (task_split("audio_multi", "val")):
- the model's answers: how often they name both sounding shapes, and the mask IoU when they do and when they do not;
- a linear probe of the frozen audio-mini embeddings of two-shape mixtures (3 clips x E, flattened): one logistic
  regression per shape, "present or not", fit on --train mixtures; how often its two most likely shapes are the two
  that sound. If the probe finds both and the model does not, the information is there and the LLM has not learned
  to read it. A one-hidden-layer MLP probe on the same features asks whether a non-linear reader (the LLM is one) can
  find more than the linear probe.
Writes research/results/audio_multi_diagnosis.json (or --out).

    python research/diagnose_audio_multi.py --model data/models/anyref-mini
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from tqdm import tqdm

from anyref import AnyRefModel
from anyref.audio import waveform_to_clips
from anyref.data import SHAPES, sounds
from anyref.data.tasks import task_split
from anyref.evaluate import model_answerer, union_logits, words_before_obj
from anyref.metrics import avs_iou
from anyref.paths import MIXTURE_MODEL_DIR
from anyref.provenance import commit, machine
from lab import RESULTS


def answers(model, *, num: int) -> dict:
    """Naming rate of both sources, and mean mask IoU split by whether the answer named both."""
    answer = model_answerer(model)
    named, ious = [], []
    for sample in tqdm(task_split("audio_multi", "val", num=num), desc="answers"):
        prediction = answer(sample)
        words = set(words_before_obj(prediction.text).replace(".", " ").split())
        named.append(set(sample.target_text.split(" and ")) <= words)
        logits = union_logits(prediction.mask_logits, sample.scene.image.shape[:2])  # (H, W)
        ious.append(avs_iou(logits, sample.masks.any(0)))  # the per-sample IoU the benchmark's mIoU averages
    named, ious = np.array(named), np.array(ious)
    return {"samples": num, "answer_names_both_sources": float(named.mean()),
            "mean_iou_when_both_named": float(ious[named].mean()) if named.any() else None,
            "mean_iou_when_not": float(ious[~named].mean()) if (~named).any() else None}


def mixture_probe(model, *, train: int, test: int, seed: int) -> dict:
    """Linear and MLP probes of which two shapes sound in a mixture, from the frozen audio embeddings (N, 3 * E)."""
    rng = np.random.default_rng(seed)
    features, present = [], []
    for _ in tqdm(range(train + test), desc="mixtures"):
        a, b = rng.choice(len(SHAPES), size=2, replace=False)
        clip_seed = int(rng.integers(2**31))
        wave = sounds.mix(sounds.sound_for(SHAPES[a], seed=clip_seed, index=0),
                          sounds.sound_for(SHAPES[b], seed=clip_seed, index=1))  # (T,)
        with torch.no_grad():
            embedded = model.audio(waveform_to_clips(wave, config=model.config.audio)[None])[0]  # (3, E)
        features.append(embedded.flatten().numpy())
        present.append(np.isin(np.arange(len(SHAPES)), [a, b]))
    X, Y = np.array(features), np.array(present)  # (N, 3E), (N, S) bool
    linear = np.stack([LogisticRegression(max_iter=3000).fit(X[:train], Y[:train, k]).predict_proba(X[train:])[:, 1]
                       for k in range(len(SHAPES))], axis=1)  # (test, S)
    mlp = MLPClassifier(hidden_layer_sizes=(256,), max_iter=2000, random_state=seed).fit(X[:train], Y[:train])
    report = {"train_mixtures": train, "test_mixtures": test}
    for name, scores in (("", linear), ("mlp_", mlp.predict_proba(X[train:]))):  # scores (test, S)
        top_two = np.argsort(-scores, axis=1)[:, :2]
        hits = np.take_along_axis(Y[train:], top_two, axis=1).sum(1)  # (test,) sources among the top two
        report |= {f"{name}both_sources_in_top_two": float((hits == 2).mean()),
                   f"{name}at_least_one_in_top_two": float((hits >= 1).mean())}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(MIXTURE_MODEL_DIR))
    parser.add_argument("--num", type=int, default=40, help="two-source val samples (the benchmark scores 40)")
    parser.add_argument("--train", type=int, default=1000, help="mixtures the probe is fit on")
    parser.add_argument("--test", type=int, default=500, help="mixtures the probe is scored on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "audio_multi_diagnosis.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    began = time.perf_counter()
    model = AnyRefModel.from_pretrained(args.model).eval()
    report = {"model": args.model, "answers": answers(model, num=args.num),
              "frozen_audio_probe": mixture_probe(model, train=args.train, test=args.test, seed=args.seed),
              "seed": args.seed, "commit": commit(), "machine": machine(),
              "wall_s": round(time.perf_counter() - began, 1)}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
