"""Experiment: could LLaVA-mini's LLM answer its questions if CLIP-mini were perfect?

Runs `anyref pretrain llava`'s three stages with the same settings, but every image reaches the projector as ideal
patch features instead of CLIP-mini's: per 16 px patch, one-hots of the colour, shape and size of the object covering
most of it, a flag on the patch holding an object's centre, and one-hots of the patch's row and column (padded to
CLIP-mini's width). The projector and the LLM train as in the real run. The scenes are looked up by their pixels, so
the patching stays in this script; the package does not do this. Writes research/results/llava_oracle.json: held-out
answer accuracy every --every instruction steps, next to the real run's curve when --real names its JSON."""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from anyref.config import LLMConfig
from anyref.data import COLOURS, SHAPES, SIZES
from anyref.paths import BUILD_DIR
from anyref.pretrain import llava_mini
from anyref.pretrain.run import folder_of
from anyref.provenance import commit, machine
from anyref.vision import VisionTower
from lab import RESULTS

GRID, PATCH, WIDTH = 8, 16, 96  # CLIP-mini: 128 px, 16 px patches, 96 channels
COLOUR_AT, SHAPE_AT, SIZE_AT, CENTRE_AT, ROW_AT, COLUMN_AT = 0, 6, 12, 20, 30, 40


def symbolic_features(scene) -> torch.Tensor:
    """(P, WIDTH) ideal patch features of a 128 px scene."""
    features = np.zeros((GRID * GRID, WIDTH), np.float32)  # (P, C)
    rows, columns = np.divmod(np.arange(GRID * GRID), GRID)  # (P,), (P,)
    features[np.arange(GRID * GRID), ROW_AT + rows] = features[np.arange(GRID * GRID), COLUMN_AT + columns] = 1.0
    best = np.zeros(GRID * GRID)  # (P,) pixels of the object that covers each patch most
    for obj in scene.objects:
        cover = obj.mask.reshape(GRID, PATCH, GRID, PATCH).sum(axis=(1, 3)).reshape(-1)  # (P,)
        for index in np.flatnonzero(cover > best):
            features[index, :CENTRE_AT] = 0.0
            features[index, [COLOUR_AT + list(COLOURS).index(obj.colour), SHAPE_AT + SHAPES.index(obj.shape),
                             SIZE_AT + SIZES.index(obj.size)]] = 1.0
            best[index] = cover[index]
        x, y = obj.centre
        features[int(y) // PATCH * GRID + int(x) // PATCH, CENTRE_AT] = 1.0
    return torch.from_numpy(features)


class SceneFeatures:
    """Ideal features of recently drawn scenes, keyed by their pixels (a bounded memo)."""

    def __init__(self, capacity: int = 2000):
        self.capacity, self.table = capacity, {}

    @staticmethod
    def key(image) -> str:
        return hashlib.md5(np.ascontiguousarray(image).tobytes()).hexdigest()

    def drawing(self, make_scene):
        """Wrap a scene generator so that each scene it draws is remembered."""
        def draw(*args, **kwargs):
            scene = make_scene(*args, **kwargs)
            self.table[self.key(scene.image)] = symbolic_features(scene)
            while len(self.table) > self.capacity:
                self.table.pop(next(iter(self.table)))
            return scene
        return draw

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> (B, P, WIDTH)."""
        return torch.stack([self.table[self.key(image.numpy())] for image in images])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=4000, help="instruction steps (the shipped recipe: 2000)")
    parser.add_argument("--every", type=int, default=500, help="score the held-out questions every N steps (> 200)")
    parser.add_argument("--questions", type=int, default=50, help="held-out questions per kind at each score")
    parser.add_argument("--llm-width", type=int, default=LLMConfig.hidden_size, help="the LLM's hidden size")
    parser.add_argument("--llm-layers", type=int, default=LLMConfig.num_layers, help="the LLM's decoder layers")
    parser.add_argument("--real", type=Path, help="a JSON with the real run's curve to store beside this one")
    parser.add_argument("--run-dir", type=Path, default=BUILD_DIR / "experiment-llava-oracle")
    parser.add_argument("--out", type=Path, default=RESULTS / "llava_oracle.json")
    args = parser.parse_args()
    saved_curve = args.run_dir / "curve.json"  # the scores so far, kept across a resume
    memo, models = SceneFeatures(), []
    curve = json.loads(saved_curve.read_text()) if saved_curve.exists() else []
    llava_mini.make_scene = memo.drawing(llava_mini.make_scene)  # every scene LLaVA-mini draws, training and held out
    VisionTower.preprocess = lambda self, images: images
    VisionTower.patch_features = lambda self, images: memo(images)

    class Recorded(llava_mini.AnyRefModel):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            models.append(self)

    llava_mini.AnyRefModel = Recorded
    settings = llava_mini.LLaVAPretrainConfig(instruct_steps=args.steps)
    began = time.perf_counter()

    def score(step, result):
        if step % args.every == 0:  # --every > 200 and > 150: never inside the LM or alignment stage
            curve.append({"step": step, **llava_mini.answer_accuracy(models[0], num=args.questions)})
            models[0].train()
            saved_curve.write_text(json.dumps(curve))
            print(curve[-1], flush=True)

    llm = LLMConfig(use_lora=False, hidden_size=args.llm_width, num_layers=args.llm_layers,
                    num_heads=args.llm_width // 32, num_kv_heads=args.llm_width // 32, intermediate_size=3 * args.llm_width)
    llava_mini.pretrain_llava(str(folder_of("clip")), settings, llm=llm, run_dir=args.run_dir, resume=True,
                              callback=score)
    record = {"what": "LLaVA-mini trained on ideal symbolic patch features instead of CLIP-mini's",
              "settings": asdict(settings), "llm": asdict(llm), "questions_per_kind": args.questions, "curve": curve,
              "real_run": json.loads(args.real.read_text()) if args.real else None,
              "wall_s": time.perf_counter() - began, "commit": commit(), "machine": machine()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
