"""Diagnostic: what do a trained model's image tokens and `<obj>` embeddings know about where things are?

Linear probes, fit on 70 % of the samples and scored on the rest:
- image tokens (projected CLIP patches, what the LLM sees): the patch's own grid position, and the colour of the
  object centred in it;
- the refocused `<obj>` embedding of teacher-forced text-referring samples: the target's colour, shape and size (also
  written in the expression, so easy) and its centre (only visible in the image: the model must have looked);
- for a model with a locator (anyref.locator), how often its map's top cell lies on the target, and the same probes
  of the image tokens pooled by its map (what the model found, against what its `<obj>` embedding says).
Writes research/results/obj_probe_<model>.json, or --out (the shipped text model's figures go to
data/results/obj_probes.json, with commit, machine, wall time and seed). With --snapshots, the `<obj>` probes are
also run on each kept checkpoint of the model's training run: a curve of what the embedding learns.

    python research/probe_obj_embeddings.py --model data/models/anyref-mini-text --out data/results/obj_probes.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression, Ridge

from anyref import AnyRefModel
from anyref.batching import collate
from anyref.data import make_scene, split_samples
from anyref.data.shapescenes import grid_cell
from anyref.locator import pooled_by_map, top_cell_on_target
from anyref.paths import MIXTURE_MODEL_DIR
from anyref.provenance import commit, machine
from lab import RESULTS, load_snapshot, snapshots


def embeddings(model, samples, *, batch_size: int = 8) -> dict:
    """Features of teacher-forced samples (one `<obj>` each), each (N, D): "obj", the refocused `<obj>` embeddings;
    for a model with a locator, "pooled", the image tokens pooled by the softmax of its map (what it found), and
    "gamma_input", what gamma reads (`<obj>` plus the found value, with locator_feedback); and "top_cell", how often
    the map's top cell lies on the target."""
    found: dict[str, list] = {"obj": [], "pooled": [], "gamma_input": [], "top_cell": []}
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            batch = collate(chunk, model.tokenizer, max_tokens=model.config.max_text_tokens)
            result = model(batch)
            found["obj"].append(result["obj_embeddings"])
            if model.locator is not None:
                tokens = model.image_tokens(batch.images)  # (B, P, D)
                grounded, located = model.ground(result["obj_embeddings"], tokens, result["queries"])
                found["pooled"].append(pooled_by_map(located, tokens[[q.batch for q in result["queries"]]]))
                found["gamma_input"].append(grounded)
                found["top_cell"].append(top_cell_on_target(located, torch.from_numpy(np.stack([s.mask for s in chunk]))))
    out = {name: torch.cat(parts).numpy() for name, parts in found.items() if parts}
    if "top_cell" in out:
        out["top_cell"] = float(out["top_cell"].mean())
    return out


def image_token_probe(model, *, scenes: int = 60) -> dict:
    """How well the LLM's image tokens encode their own grid position, and the colour of the object under them."""
    tokens, cells, colours, centre_tokens = [], [], [], []
    with torch.no_grad():
        for i in range(scenes):
            scene = make_scene(np.random.default_rng(np.random.SeedSequence([98, i])))
            row = model.image_tokens(torch.from_numpy(scene.image[None]))[0].numpy()  # (P, D)
            side = int(round(len(row) ** 0.5))
            tokens.append(row)
            cells += [(k % side, k // side) for k in range(len(row))]
            for obj in scene.objects:
                cell_row, cell_column = grid_cell(*obj.centre, grid=side, height=scene.image.shape[0],
                                                  width=scene.image.shape[1])
                centre_tokens.append(row[cell_row * side + cell_column])
                colours.append(obj.colour)
    X, cells = np.concatenate(tokens), np.array(cells, dtype=float)  # (S*P, D), (S*P, 2)
    split = int(0.7 * len(X))
    ridge = Ridge(alpha=1.0).fit(X[:split], cells[:split])
    column = LogisticRegression(max_iter=3000).fit(X[:split], cells[:split, 0]).score(X[split:], cells[split:, 0])
    C, y = np.array(centre_tokens), np.array(colours)
    cut = int(0.7 * len(C))
    colour = LogisticRegression(max_iter=3000).fit(C[:cut], y[:cut]).score(C[cut:], y[cut:])
    return {"patch_position_r2": ridge.score(X[split:], cells[split:]),
            "patch_position_mean_abs_error_cells": float(np.abs(ridge.predict(X[split:]) - cells[split:]).mean()),
            "patch_column_accuracy": column, "patch_column_chance": 1 / side,
            "colour_under_object_centre_accuracy": colour, "colour_chance": 1 / len(set(colours))}


def probe_targets(X: np.ndarray, samples) -> dict:
    """Linear probes of the target's colour, shape, size (accuracy, also split by whether the expression names the
    attribute) and centre (R^2) from features X (N, D) of single-target samples, fit on the first 70 %."""
    X = (X - X.mean(0)) / (X.std(0) + 1e-6)
    objects = [s.scene.objects[s.targets[0]] for s in samples]
    split = int(0.7 * len(samples))
    scores = {}
    for name in ("colour", "shape", "size"):
        y = np.array([getattr(o, name) for o in objects])
        probe = LogisticRegression(max_iter=3000).fit(X[:split], y[:split])
        scores[f"{name}_accuracy"] = probe.score(X[split:], y[split:])
        # does the embedding know the attribute only when the words say it? (spatial expressions rarely do)
        named = np.array([getattr(o, name) in s.expression.split() for o, s in zip(objects, samples)])[split:]
        right = probe.predict(X[split:]) == y[split:]
        scores[f"{name}_share_named_in_expression"] = float(named.mean())
        scores[f"{name}_accuracy_when_named"] = float(right[named].mean()) if named.any() else None
        scores[f"{name}_accuracy_when_not_named"] = float(right[~named].mean()) if (~named).any() else None
    centre = np.array([o.centre for o in objects])  # (N, 2) pixels
    ridge = Ridge(alpha=1.0).fit(X[:split], centre[:split])
    error = np.abs(ridge.predict(X[split:]) - centre[split:]).mean()
    scores["centre_r2"] = ridge.score(X[split:], centre[split:])
    scores["centre_mean_abs_error_px"] = float(error)
    scores["centre_mean_abs_error_px_predicting_the_mean"] = float(np.abs(centre[:split].mean(0) - centre[split:]).mean())
    return scores


def obj_probes(model, samples) -> dict:
    """Probes of the `<obj>` embeddings ("obj_embedding": gamma's input, the LLM's own under "from_the_llm" when
    locator_feedback adds to it) and of the image tokens pooled by the locator's map, with its top-cell rate."""
    found = embeddings(model, samples)
    feedback = model.config.locator_feedback
    report = {"obj_embedding": probe_targets(found["gamma_input" if feedback else "obj"], samples)}
    if feedback:
        report["obj_embedding_from_the_llm"] = probe_targets(found["obj"], samples)
    report["locator_top_cell_on_target"] = found.get("top_cell")
    report["locator_pooled_image_tokens"] = probe_targets(found["pooled"], samples) if "pooled" in found else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(MIXTURE_MODEL_DIR))
    parser.add_argument("--num", type=int, default=2000,
                        help="val samples (400 left the probes overfitting: colour 0.33 vs 0.41)")
    parser.add_argument("--snapshots", type=Path, default=None,
                        help="a folder of the run's step-NNNNNN checkpoint copies: probe each, for a curve")
    parser.add_argument("--out", default=None, help="JSON to write (default research/results/obj_probe_<model>.json)")
    args = parser.parse_args()
    started = time.time()
    model = AnyRefModel.from_pretrained(args.model).eval()
    samples = [s for s in split_samples("val", num=args.num) if len(s.targets) == 1]
    report = {"model": args.model, "commit": commit(), "machine": machine(), "split": "val", "seed": "split_samples",
              "samples": len(samples), "test_fraction": 0.3, "image_tokens": image_token_probe(model),
              **obj_probes(model, samples), "targets": {"colour_accuracy": 0.9, "shape_accuracy": 0.9, "centre_r2": 0.8}}
    if args.snapshots:
        report["curve"] = []
        for folder in snapshots(args.snapshots):
            step = load_snapshot(model, folder)
            probes = obj_probes(model, samples)
            report["curve"].append({"step": step, **probes["obj_embedding"],
                                    "locator_top_cell_on_target": probes["locator_top_cell_on_target"]})
            print(json.dumps(report["curve"][-1]), flush=True)
    report["wall_s"] = round(time.time() - started, 1)
    out = Path(args.out) if args.out else RESULTS / f"obj_probe_{Path(args.model).name}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
