"""Diagnostic: is text-referring limited by SAM's decoder or by finding the object in the frozen features?

Runs the experiments of research/diagnose.py on the mini preset's frozen ingredients (or a trained model's) and
writes research/results/grounding_diagnosis.json. About 10 minutes on 2 CPU cores.

    python research/diagnose_grounding.py [--model data/models/anyref-mini] [--train 2000] [--search-steps 1000]
        [--prompt-steps 600]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from anyref import AnyRefModel
from anyref.config import preset
from anyref.data import split_samples
from anyref.data.shapescenes import training_sample
from anyref.provenance import commit, machine
from diagnose import (attribute_probe, cell_code_ciou, cell_index, centre_features, frozen_features,
                      oracle_prompt_ciou, search_accuracy, text_prompt_ciou, word_codes)
from lab import RESULTS

SINGLE_TARGET_MIX = (("attribute", 0.5), ("spatial", 0.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a trained AnyRef folder; default: a fresh mini preset model")
    parser.add_argument("--train", type=int, default=2000, help="training scenes for the learned stand-ins")
    parser.add_argument("--val", type=int, default=200)
    parser.add_argument("--cell-steps", type=int, default=300)
    parser.add_argument("--search-steps", type=int, default=1000)
    parser.add_argument("--prompt-steps", type=int, default=600)
    parser.add_argument("--out", default=str(RESULTS / "grounding_diagnosis.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    started = time.time()
    model = (AnyRefModel.from_pretrained(args.model) if args.model else AnyRefModel(preset("mini"))).eval()
    train = [training_sample(i, seed=7, mix=SINGLE_TARGET_MIX) for i in range(args.train)]
    val = split_samples("val", num=args.val)
    sets = {}
    side = model.vision.clip.config.image_size // model.vision.clip.config.patch_size  # image tokens per row
    for name, samples in (("train", train), ("val", val)):
        features = frozen_features(model, samples)
        tokens = features["tokens"]  # (N, P, D)
        sets[name] = {**features, "codes": word_codes(samples),
                      "spatial": torch.tensor([s.kind == "spatial" for s in samples]),
                      "cells": torch.tensor([cell_index(s.mask, grid=side) for s in samples]),
                      "sam_cells": torch.tensor([cell_index(s.mask, grid=features["sam"].shape[-1]) for s in samples]),
                      "token_maps": tokens.transpose(1, 2).reshape(len(samples), -1, side, side)}
    tr, va = sets["train"], sets["val"]
    result = {"experiment": "grounding diagnosis: SAM decoder vs search in frozen features, text referring",
              "model": args.model or "fresh mini preset (pretrained ingredients, untrained AnyRef parts)",
              "commit": commit(), "machine": machine(), "train_scenes": args.train, "val_samples": args.val}
    result["oracle_prompt_ciou_frozen_decoder"] = oracle_prompt_ciou(model, val, va["sam"])
    result["cell_code_ciou_frozen_decoder"] = {
        "grid": side, "steps": args.cell_steps, "val_ciou": cell_code_ciou(model, tr, va, grid=side, steps=args.cell_steps)}
    result["perfect_text_search"] = {"steps": args.search_steps}
    for name, key, cells in (("llm_image_tokens", "tokens", "cells"), ("sam_embeddings", "sam", "sam_cells")):
        def view(s):
            features = s[key] if key == "tokens" else s[key].flatten(2).transpose(1, 2)  # (N, P, F)
            return {"features": features, "codes": s["codes"], "cells": s[cells], "spatial": s["spatial"]}
        result["perfect_text_search"][name] = search_accuracy(view(tr), view(va), steps=args.search_steps)
    result["text_prompt_ciou_trained_decoder"] = {
        "steps": args.prompt_steps, **text_prompt_ciou(model, tr, va, steps=args.prompt_steps)}
    result["attribute_probe_at_object_centres"] = {
        name: attribute_probe(*centre_features([s.scene for s in train[:600]], tr[key][:600]))
        for name, key in (("llm_image_tokens", "token_maps"), ("sam_embeddings", "sam"))}
    result["wall_s"] = round(time.time() - started, 1)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
