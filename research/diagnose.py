"""Where does grounding fail? Small controlled experiments on a model's FROZEN parts, each isolating one step.

AnyRef's mask needs two things: the `<obj>` prompt must say WHICH object (a search over the image), and SAM's
decoder must turn that prompt into a mask. These experiments replace the LLM by the best possible stand-in, so a
low figure blames the frozen ingredients rather than the fine-tune:

- `oracle_prompt_ciou`: SAM's decoder, frozen, given the target's true point or box (its pretraining task);
- `cell_code_ciou`: a learned embedding of the target's true grid cell -> frozen decoder (can a location code be
  learned quickly as a sparse prompt? gamma has to produce one);
- `search_accuracy`: a one-hop attention from a PERFECT text code (the expression's words) over frozen features
  -> the target's grid cell (can the referred object be found in these features at all?);
- `text_prompt_ciou`: a PERFECT text code -> sparse prompt -> SAM's decoder, trained, over SAM's frozen embeddings
  (can SAM's side find the object itself, if the `<obj>` prompt only carried the expression?);
- `attribute_probe`: linear probes of frozen features at object centres: colour, shape, size.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from anyref.data.shapescenes import ReferringSample, Scene, grid_cell, vocabulary
from anyref.losses import bce_per_mask, dice_per_mask
from anyref.metrics import IoUMeter
from anyref.sam import decode_masks, sam_inputs


def cell_index(mask: np.ndarray, *, grid: int) -> int:
    """Row-major index of the grid cell holding a (H, W) bool mask's centroid."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("cell_index needs a non-empty mask")
    row, column = grid_cell(cols.mean(), rows.mean(), grid=grid, height=mask.shape[0], width=mask.shape[1])
    return row * grid + column


def word_codes(samples: list[ReferringSample], *, length: int = 12) -> torch.Tensor:
    """Each expression as vocabulary indices padded to `length` with len(vocabulary()): (N, length)."""
    index = {word: i for i, word in enumerate(vocabulary())}
    rows = []
    for sample in samples:
        words = sample.expression.split()
        unknown = [w for w in words if w not in index]
        if unknown or len(words) > length:
            raise ValueError(f"expression {sample.expression!r} has unknown words {unknown} or over {length} words")
        rows.append([index[w] for w in words] + [len(index)] * (length - len(words)))
    return torch.tensor(rows)


@torch.no_grad()
def frozen_features(model, samples: list[ReferringSample], *, batch_size: int = 50, progress: bool = True) -> dict:
    """SAM image embeddings (N, C, h, w), the LLM's image tokens (N, P, D) and target masks (N, H, W)."""
    sam_embeddings, image_tokens = [], []
    for start in tqdm(range(0, len(samples), batch_size), disable=not progress, desc="frozen features"):
        images = torch.from_numpy(np.stack([s.scene.image for s in samples[start:start + batch_size]]))
        sam_embeddings.append(model.sam.image_encoder(sam_inputs(model.sam, images)[0]))
        image_tokens.append(model.image_tokens(images))
    masks = torch.from_numpy(np.stack([s.mask for s in samples]))
    return {"sam": torch.cat(sam_embeddings), "tokens": torch.cat(image_tokens), "masks": masks}


def _decode(sam, embeddings: torch.Tensor, prompts: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Frozen-encoder embeddings (N, C, h, w) + sparse prompts (N, K, C) -> mask logits (N, H, W)."""
    low = decode_masks(sam, embeddings, torch.arange(len(embeddings)), prompts)
    return sam.postprocess_masks(low, size, size)[:, 0]


@torch.no_grad()
def oracle_prompt_ciou(model, samples: list[ReferringSample], sam_embeddings: torch.Tensor) -> dict:
    """cIoU of SAM's frozen decoder given each single target's true centroid point, and its true box."""
    size = samples[0].scene.image.shape[:2]
    points, boxes = [], []
    for sample in samples:
        if len(sample.targets) != 1:
            raise ValueError("oracle prompts need single-target samples (attribute or spatial kinds)")
        rows, cols = np.nonzero(sample.mask)
        points.append([[cols.mean(), rows.mean()]])
        boxes.append(sample.scene.objects[sample.targets[0]].box)
    encoder = model.sam.prompt_encoder
    point_prompt, _ = encoder(points=(torch.tensor(points).float(), torch.ones(len(points), 1, dtype=torch.long)),
                              boxes=None, masks=None)  # (N, 2, C): the point and SAM's padding point
    box_prompt, _ = encoder(points=None, boxes=torch.tensor(boxes).float(), masks=None)  # (N, 2, C): two corners
    targets = np.stack([s.mask for s in samples])
    scores = {}
    for name, prompt in (("point", point_prompt), ("box", box_prompt)):
        meter = IoUMeter()
        for pred, target in zip((_decode(model.sam, sam_embeddings, prompt, size) > 0).numpy(), targets):
            meter.update(pred, target)
        scores[name] = meter.ciou
    return scores


def _fit_prompts(sam, prompts_of, params: list, inputs: torch.Tensor, embeddings: torch.Tensor, masks: torch.Tensor, *,
                 steps: int, batch_size: int, lr: float, seed: int, progress: bool, desc: str) -> None:
    """Train `params` (only them) so that SAM's decoder, given `prompts_of(inputs[i])` (B, K, C) over the frozen
    `embeddings[i]`, draws `masks[i]` (BCE + Dice, as SAM-mini was trained)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    size = tuple(masks.shape[1:])
    picker = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), disable=not progress, desc=desc):
        idx = torch.randint(0, len(inputs), (batch_size,), generator=picker)
        logits = _decode(sam, embeddings[idx], prompts_of(inputs[idx]), size)  # (B, H, W)
        target = masks[idx].float()
        loss = 2.0 * bce_per_mask(logits, target).mean() + 0.5 * dice_per_mask(logits, target).mean()
        grads = torch.autograd.grad(loss, params, allow_unused=True)  # SAM's IoU head is unused; the rest gets none
        for param, grad in zip(params, grads):
            param.grad = grad
        optimizer.step()


@torch.no_grad()
def _predicted_masks(sam, prompts_of, inputs: torch.Tensor, embeddings: torch.Tensor, masks: torch.Tensor):
    """(predicted (H, W) bool, target (H, W) bool) for each sample, decoded 50 at a time."""
    size = tuple(masks.shape[1:])
    for start in range(0, len(inputs), 50):
        chunk = slice(start, start + 50)
        preds = _decode(sam, embeddings[chunk], prompts_of(inputs[chunk]), size) > 0
        yield from zip(preds.numpy(), masks[chunk].numpy())


def cell_code_ciou(model, train: dict, val: dict, *, grid: int = 8, steps: int = 300, batch_size: int = 16,
                   lr: float = 1e-3, seed: int = 0, progress: bool = True) -> float:
    """Learn one prompt per grid cell (embedding -> ReLU -> linear, like gamma) through SAM's FROZEN decoder from
    the target's true cell; val cIoU after `steps`. train / val: `frozen_features` outputs plus "cells" (N,)."""
    torch.manual_seed(seed)
    prompt_dim = model.sam.prompt_encoder.embed_dim
    code = nn.Sequential(nn.Embedding(grid * grid, 128), nn.ReLU(), nn.Linear(128, prompt_dim))

    def prompts_of(cells):
        return code(cells)[:, None]  # (B, 1, C)
    _fit_prompts(model.sam, prompts_of, list(code.parameters()), train["cells"], train["sam"], train["masks"],
                 steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                 desc="cell code -> frozen SAM decoder")
    meter = IoUMeter()
    for pred, target in _predicted_masks(model.sam, prompts_of, val["cells"], val["sam"], val["masks"]):
        meter.update(pred, target)
    return meter.ciou


class WordCode(nn.Module):
    """A perfect text code: the expression's word ids (B, length), position-aware, -> an MLP's output (B, out)."""

    def __init__(self, *, length: int, out: int, width: int = 128):
        super().__init__()
        self.words = nn.Embedding(len(vocabulary()) + 1, width)
        self.slots = nn.Parameter(torch.zeros(length, width))
        self.mlp = nn.Sequential(nn.Linear(length * width, width), nn.ReLU(), nn.Linear(width, out))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, length) -> (B, out)."""
        return self.mlp((self.words(codes) + self.slots).flatten(1))


class TextSearch(nn.Module):
    """A perfect text code queries frozen features: one score per cell."""

    def __init__(self, *, feature_dim: int, num_cells: int, length: int, width: int = 128):
        super().__init__()
        self.query = WordCode(length=length, out=width, width=width)
        self.key = nn.Sequential(nn.Linear(feature_dim, width), nn.ReLU(), nn.Linear(width, width))
        self.cell = nn.Parameter(torch.zeros(num_cells, width))  # a learned position code per cell

    def forward(self, codes: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """codes (B, length), features (B, P, F) -> cell scores (B, P)."""
        query = self.query(codes)  # (B, W)
        keys = self.key(features) + self.cell  # (B, P, W)
        return torch.einsum("bw,bpw->bp", query, keys) / query.shape[-1] ** 0.5


def search_accuracy(train: dict, val: dict, *, steps: int = 1000, batch_size: int = 16, lr: float = 1e-3,
                    seed: int = 0, progress: bool = True) -> dict:
    """Train `TextSearch` to name the target's cell (cross-entropy); val accuracy overall / attribute / spatial.

    train / val: {"features": (N, P, F), "codes": (N, L), "cells": (N,), "spatial": (N,) bool}."""
    torch.manual_seed(seed)
    search = TextSearch(feature_dim=train["features"].shape[-1], num_cells=train["features"].shape[1],
                        length=train["codes"].shape[1])
    optimizer = torch.optim.AdamW(search.parameters(), lr=lr, weight_decay=0.0)
    picker = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), disable=not progress, desc="text search over frozen features"):
        idx = torch.randint(0, len(train["cells"]), (batch_size,), generator=picker)
        loss = nn.functional.cross_entropy(search(train["codes"][idx], train["features"][idx]), train["cells"][idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        right = (search(val["codes"], val["features"]).argmax(1) == val["cells"]).float()  # (N,)
    spatial = val["spatial"]
    return {"accuracy": right.mean().item(), "attribute": right[~spatial].mean().item(),
            "spatial": right[spatial].mean().item(), "chance": 1 / train["features"].shape[1]}


def centre_features(scenes: list[Scene], feature_maps: torch.Tensor) -> tuple[np.ndarray, dict]:
    """Every object's feature vector at its centre, from square maps (N, C, g, g), and its colour / shape / size labels."""
    height, width = scenes[0].image.shape[:2]
    grid = feature_maps.shape[-1]
    if feature_maps.shape[-2] != grid:
        raise ValueError(f"centre_features needs square feature maps, got {tuple(feature_maps.shape[-2:])}")
    vectors, labels = [], {"colour": [], "shape": [], "size": []}
    for scene, fmap in zip(scenes, feature_maps):
        for obj in scene.objects:
            vectors.append(fmap[(slice(None), *grid_cell(*obj.centre, grid=grid, height=height, width=width))])
            for key in labels:
                labels[key].append(getattr(obj, key))
    return torch.stack(vectors).numpy(), labels


def attribute_probe(vectors: np.ndarray, labels: dict, *, train_fraction: float = 0.7) -> dict:
    """Held-out accuracy of a logistic-regression probe per attribute (features standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cut = int(train_fraction * len(vectors))
    scores = {}
    for key, values in labels.items():
        values = np.array(values)
        probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        scores[key] = float(probe.fit(vectors[:cut], values[:cut]).score(vectors[cut:], values[cut:]))
    return scores


def text_prompt_ciou(model, train: dict, val: dict, *, tokens: int = 2, steps: int = 600, batch_size: int = 16,
                     lr: float = 1e-3, seed: int = 0, progress: bool = True) -> dict:
    """Train a `WordCode` -> `tokens` sparse prompts and a copy of SAM's mask decoder over FROZEN SAM embeddings;
    val cIoU overall / attribute / spatial. train / val: `frozen_features` outputs plus "codes" and "spatial"."""
    torch.manual_seed(seed)
    sam = copy.deepcopy(model.sam)  # the model's own SAM keeps its weights
    prompt_dim = sam.prompt_encoder.embed_dim
    code = WordCode(length=train["codes"].shape[1], out=tokens * prompt_dim)

    def prompts_of(codes):
        return code(codes).view(len(codes), tokens, prompt_dim)  # (B, K, C)
    _fit_prompts(sam, prompts_of, list(code.parameters()) + list(sam.mask_decoder.parameters()), train["codes"],
                 train["sam"], train["masks"], steps=steps, batch_size=batch_size, lr=lr, seed=seed, progress=progress,
                 desc="text prompt -> SAM decoder")
    meters = {"ciou": IoUMeter(), "attribute": IoUMeter(), "spatial": IoUMeter()}
    pairs = _predicted_masks(sam, prompts_of, val["codes"], val["sam"], val["masks"])
    for (pred, target), spatial in zip(pairs, val["spatial"]):
        meters["ciou"].update(pred, target)
        meters["spatial" if spatial else "attribute"].update(pred, target)
    return {name: meter.ciou for name, meter in meters.items()}
