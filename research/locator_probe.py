"""Diagnostic: could the `<obj>` embedding FIND its target by matching the image tokens, if a small head were taught to?

The shipped text model's `<obj>` embedding names the target's shape but not its place (centre R^2 0.09). Place is in
the image tokens (grid R^2 0.998). A bilinear "locator" (anyref.locator), map_p = (W_q e) . (W_k t_p) / sqrt(d),
over the frozen refocused `<obj>` embedding e and each image token t_p (or each SAM-mini embedding), is trained with
BCE against the share of each grid cell the target covers, on training samples, and scored on val:
- hit: the map's top cell lies on the target;
- map IoU: the upsampled map (sigmoid > 0.5) against the target mask, summed over samples (cIoU).
If a head this small finds the target from frozen features, the decoder can be given that map as a dense prompt.
--loss softmax trains the same head by cross-entropy of a softmax over the cells against the normalised cover: a
ranking, where BCE asks for an absolute threshold that "the leftmost star" cannot have (the second star from the left
is the target in another scene).

    python research/locator_probe.py --model data/models/anyref-mini-text
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from anyref import AnyRefModel
from anyref.batching import collate
from anyref.data import split_samples
from anyref.data.shapescenes import training_sample
from anyref.locator import LOCATOR_LOSSES, Locator, locator_loss, top_cell_on_target
from anyref.paths import TEXT_MODEL_DIR
from anyref.provenance import commit, machine
from lab import RESULTS


def features(model, samples, *, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Refocused `<obj>` embeddings (N, D), image tokens (N, P, D), SAM embeddings (N, C, h, w), masks (N, H, W)."""
    obj, tokens, sam = [], [], []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            chunk = samples[start:start + batch_size]
            batch = collate(chunk, model.tokenizer, max_tokens=model.config.max_text_tokens)
            obj.append(model(batch)["obj_embeddings"])
            tokens.append(model.image_tokens(batch.images))
            sam.append(model.sam_embeddings(batch.images)[0])
    masks = torch.from_numpy(np.stack([s.mask for s in samples])).float()  # (N, H, W)
    return {"obj": torch.cat(obj), "tokens": torch.cat(tokens), "sam": torch.cat(sam), "masks": masks}


def keys_of(data: dict, name: str) -> torch.Tensor:
    """(N, P, K) keys: the LLM's image tokens, or SAM's embeddings flattened."""
    return data["tokens"] if name == "tokens" else data["sam"].flatten(2).transpose(1, 2)


def score(locator, data, name, loss_name: str = "bce") -> dict:
    """Top-cell hit rate and the cIoU of the thresholded upsampled map (logit > 0 for BCE; at least half the top
    cell's probability for softmax), on one split's features."""
    with torch.no_grad():
        logits = locator(data["obj"], keys_of(data, name))  # (N, side, side)
    hit = top_cell_on_target(logits, data["masks"])
    size = data["masks"].shape[-1]
    if loss_name == "softmax":
        logits = logits - logits.flatten(1).amax(1)[:, None, None] + np.log(2.0)
    up = F.interpolate(logits[:, None], size=size, mode="bilinear", align_corners=False)[:, 0] > 0
    target = data["masks"] > 0.5
    ciou = (up & target).sum().item() / max((up | target).sum().item(), 1)
    return {"top_cell_hit": round(hit.float().mean().item(), 3), "map_ciou": round(ciou, 3)}


def fit(train, name, *, steps: int, seed: int, loss_name: str = "bce") -> tuple[Locator, float]:
    """Train the package's Locator against cell cover (by BCE or a softmax); return it and its last loss."""
    torch.manual_seed(seed)
    keys = keys_of(train, name)
    locator = Locator(train["obj"].shape[-1], key_size=keys.shape[-1])
    optimiser = torch.optim.Adam(locator.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(steps):
        loss = locator_loss(locator(train["obj"], keys), train["masks"], kind=loss_name)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return locator, round(loss.item(), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=str(TEXT_MODEL_DIR))
    parser.add_argument("--train", type=int, default=3000, help="training samples (single target)")
    parser.add_argument("--val", type=int, default=600)
    parser.add_argument("--steps", type=int, default=600, help="full-batch Adam steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keys", nargs="+", default=["tokens", "sam"], choices=["tokens", "sam"],
                        help="what the locator searches: the LLM's image tokens and/or SAM-mini's embeddings")
    parser.add_argument("--loss", nargs="+", default=["bce"], choices=LOCATOR_LOSSES,
                        help="how the head is trained; several: each on the same features, reported as KEYS/LOSS")
    parser.add_argument("--out", default=str(RESULTS / "locator_probe.json"))
    args = parser.parse_args()
    started = time.time()
    torch.manual_seed(args.seed)
    model = AnyRefModel.from_pretrained(args.model).eval()
    train = [s for s in (training_sample(i, seed=777) for i in range(args.train)) if len(s.targets) == 1]
    val = [s for s in split_samples("val", num=args.val) if len(s.targets) == 1]
    train_data, val_data = features(model, train), features(model, val)
    report = {"model": args.model, "commit": commit(), "machine": machine(), "seed": args.seed,
              "train_samples": len(train), "val_samples": len(val), "steps": args.steps}
    for name in args.keys:
        for loss_name in args.loss:
            entry = name if loss_name == "bce" else f"{name}/{loss_name}"
            locator, loss = fit(train_data, name, steps=args.steps, seed=args.seed, loss_name=loss_name)
            report[entry] = {"final_loss": loss, "train": score(locator, train_data, name, loss_name),
                             "val": score(locator, val_data, name, loss_name)}
            for kind in sorted({s.kind for s in val}):
                rows = torch.tensor([i for i, s in enumerate(val) if s.kind == kind])
                subset = {key: value[rows] for key, value in val_data.items()}
                report[entry][f"val_{kind}"] = {**score(locator, subset, name, loss_name), "samples": len(rows)}
            print(entry, report[entry], flush=True)
    report["wall_s"] = round(time.time() - started, 1)
    with open(args.out, "w") as f:
        f.write(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
