"""Lab: does a checkpoint's `<obj>` embedding know where its target is, and does SAM's decoder listen to it?

Teacher-forces the answers of held-out single-object samples, fits a ridge probe from the refocused `<obj>`
embeddings to the target's centre (R^2 on a held-out half), and scores masks decoded from each sample's own
prompt against masks decoded from another sample's prompt (if SAM ignores the prompt, both score alike).
    python research/obj_position_probe.py RUN_DIR [--positions 4] [--llm-full] [--train-projector]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.linear_model import RidgeCV

from anyref import AnyRefModel, preset
from anyref.batching import collate
from anyref.data import split_samples
from anyref.metrics import IoUMeter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="a trainable.safetensors file or a saved model folder")
    parser.add_argument("--positions", type=float, default=0.0)
    parser.add_argument("--llm-full", action="store_true")
    parser.add_argument("--train-projector", action="store_true")
    parser.add_argument("--num", type=int, default=300)
    args = parser.parse_args()
    path = Path(args.weights)
    if path.is_dir():
        model = AnyRefModel.from_pretrained(path)
    else:
        config = preset("mini")
        config.vision.position_amplitude = args.positions
        if args.llm_full:
            config.llm.use_lora, config.trainable.llm_full = False, True
        config.trainable.projector = args.train_projector
        model = AnyRefModel(config)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in load_file(str(path)).items():
                params[name].copy_(value)
    model.eval()
    samples = [s for s in split_samples("val", num=args.num) if len(s.targets) == 1]
    centres, embeddings, own, other = [], [], IoUMeter(), IoUMeter()
    with torch.no_grad():
        for start in range(0, len(samples), 16):
            chunk = samples[start:start + 16]
            batch = collate(chunk, model.tokenizer, max_tokens=model.config.max_text_tokens)
            out = model(batch)
            emb = out["obj_embeddings"]  # (N, D), one per sample
            embeddings.append(emb.numpy())
            centres += [s.scene.objects[s.targets[0]].centre for s in chunk]
            queries = out["queries"]
            shuffled = model.masks_for(batch.images, emb.roll(1, 0), queries)  # another sample's prompt
            for s, m, m2 in zip(chunk, out["mask_logits"], shuffled):
                own.update((m > 0).numpy(), s.mask)
                other.update((m2 > 0).numpy(), s.mask)
    x, y = np.concatenate(embeddings), np.array(centres) / 128.0
    half = len(x) // 2
    probe = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(x[:half], y[:half])
    report = {"weights": str(path), "samples": len(x), "centre_r2_heldout": float(probe.score(x[half:], y[half:])),
              "teacher_forced_ciou_own_prompt": own.ciou, "teacher_forced_ciou_other_prompt": other.ciou}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
