"""CLIP-mini: a transformers CLIPModel (vision + text towers) trained contrastively on ShapeScenes captions.

CLIP (Radford et al., 2021) aligns images and captions with a symmetric InfoNCE loss over a batch. Here the pairs
are object crops ("a small red circle") and whole scenes ("a red circle , a blue star and ..."). LLaVA-mini and
AnyRef-mini then use the frozen vision tower, exactly as the paper uses CLIP ViT-L/14.

An optional second stage adds a region-level term in the spirit of RegionCLIP (Zhong et al., 2022): each patch token
of a whole 128 px scene is classified among the concept pool "a {size} {colour} {shape}" by its caption embedding,
the caption being that of the object covering the patch. ViT-L/14 learned to see small objects from 400M pairs;
CLIP-mini has minutes, and after the pair stage alone its scene patch tokens carry colour but not shape (the
grounding diagnosis in the README), while AnyRef must find objects one or two patches wide.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import VisionConfig
from ..data import COLOURS, SHAPES, SIZES, make_scene, object_crop
from ..data.shapescenes import grid_cell
from ..data.language import crop_caption, scene_caption
from ..data.words import build_word_tokenizer
from ..errors import AnyRefCheckpointError
from ..vision import clip_pixels, install_conv_stem, load_clip_folder
from .loop import LoopResult, run_loop, scene_rng
from .store import fresh_folder, ingredient_dir

TRAIN_STREAM, HELDOUT_STREAM, REGION_STREAM = 11, 12, 13
REGION_DIR = "region"  # stage 2's checkpoints, inside the run folder
CROP_SIZE = 64  # object crops (and downsized scenes) are cut at this size, then resized to the tower's input


@dataclass
class TextTowerConfig:
    """CLIP-mini's text transformer."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_positions: int = 48


@dataclass
class CLIPMiniConfig:
    """Both towers and the shared embedding size."""

    vision: VisionConfig = field(default_factory=lambda: VisionConfig(conv_stem=True))  # the mini's early convolutions
    text: TextTowerConfig = field(default_factory=TextTowerConfig)
    projection_dim: int = 64


@dataclass
class CLIPPretrainConfig:
    """Hyper-parameters of CLIP-mini pretraining."""

    steps: int = 1500  # stage 1, pairs; with the conv stem zero-shot crops reach 0.96 at 500 steps and 1.00 at 1000
    # (the patchify tower: 0.65 at 500, 0.98 at 2000; research/curve_clip.py)
    batch_size: int = 48  # image/caption pairs per step
    crop_fraction: float = 0.9  # share of scenes cut into object crops (the others are captioned whole)
    lr: float = 3e-3
    warmup_steps: int = 50
    region_steps: int = 5000  # stage 2, pairs + region term, from stage 1's weights on its own schedule (0: none);
    # conv stem: centre-patch shape probe 0.34 -> 0.85 over the first 1500 steps, 0.96-0.97 from 4000 (2500 steps
    # ended at 0.85; research/results/attempts/clip_conv_region5k_curve.json; the patchify tower reached 0.49 in 4000,
    # research/results/attempts/clip_region_stage_curve.json)
    region_pairs: int = 16  # image/caption pairs per stage-2 step (they keep the crops' zero-shot accuracy)
    region_scenes: int = 16  # whole scenes per stage-2 step whose patch tokens learn their objects' captions
    region_weight: float = 1.0
    region_lr: float = 1e-3
    min_coverage: float = 0.25  # a patch token is paired with the object covering at least this share of it
    seed: int = 0


def build_clip(config: CLIPMiniConfig, tokenizer):
    """A fresh transformers CLIPModel with both towers of `config` over the word tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    v, t = config.vision, config.text
    clip_config = CLIPConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=t.hidden_size, num_hidden_layers=t.num_layers,
                         num_attention_heads=t.num_heads, intermediate_size=t.intermediate_size,
                         max_position_embeddings=t.max_positions, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id),
        vision_config=dict(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                           num_hidden_layers=v.num_layers, num_attention_heads=v.num_heads,
                           image_size=v.image_size, patch_size=v.patch_size, conv_stem=v.conv_stem),
        projection_dim=config.projection_dim,
    )
    clip = CLIPModel(clip_config)
    install_conv_stem(clip)
    return clip


def text_inputs(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Captions -> (ids (N, L), attention mask (N, L)), each ending with the end token CLIP pools at."""
    ids = [tokenizer(t, add_special_tokens=False).input_ids + [tokenizer.eos_token_id] for t in texts]
    length = max(map(len, ids))
    padded = torch.full((len(ids), length), tokenizer.pad_token_id)
    for row, seq in enumerate(ids):
        padded[row, :len(seq)] = torch.tensor(seq)
    return padded, (padded != tokenizer.pad_token_id).long()


def clip_inputs(clip, images) -> torch.Tensor:
    """uint8 images (N, H, W, 3), array or tensor -> CLIP-normalised pixels (N, 3, S, S) on the model's device."""
    return clip_pixels(torch.as_tensor(np.asarray(images)), size=clip.config.vision_config.image_size).to(clip.device)


def encode_images(clip, images) -> torch.Tensor:
    """uint8 images (N, H, W, 3), array or tensor -> L2-normalised image embeddings (N, D)."""
    return F.normalize(clip.get_image_features(pixel_values=clip_inputs(clip, images)).pooler_output, dim=-1)


def encode_texts(clip, tokenizer, texts: list[str]) -> torch.Tensor:
    """Captions -> L2-normalised text embeddings (N, D)."""
    ids, mask = (x.to(clip.device) for x in text_inputs(tokenizer, texts))
    return F.normalize(clip.get_text_features(input_ids=ids, attention_mask=mask).pooler_output, dim=-1)


def pair_batch(rng: np.random.Generator, *, size: int, crop_fraction: float, image_size: int):
    """`size` (image (S, S, 3) uint8, caption) pairs: every object of some scenes as crops, other scenes whole.

    Crops are cut at CROP_SIZE and scenes kept at image_size; both are resized to the tower's input later.
    """
    images, captions = [], []
    while len(images) < size:
        scene = make_scene(rng, image_size=image_size)
        if rng.random() < crop_fraction:
            for index in range(min(len(scene.objects), size - len(images))):
                images.append(object_crop(scene, index, size=CROP_SIZE))
                captions.append(crop_caption(scene.objects[index], rng))
        else:
            small = F.interpolate(torch.from_numpy(scene.image).permute(2, 0, 1)[None].float(), size=CROP_SIZE,
                                  mode="bilinear", antialias=True)[0]  # (3, S, S)
            images.append(small.permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy())
            captions.append(scene_caption(scene))
    return torch.from_numpy(np.stack(images)), captions


def patch_labels(scene, *, grid: int, min_coverage: float) -> np.ndarray:
    """(grid * grid,) index of the object covering each patch by at least `min_coverage` (centre cells always), or -1."""
    masks = scene.masks.astype(np.float32)  # (N, H, W)
    n, height, width = masks.shape
    coverage = masks.reshape(n, grid, height // grid, grid, width // grid).mean(axis=(2, 4)).reshape(n, -1)  # (N, P)
    labels = np.where(coverage.max(0) >= min_coverage, coverage.argmax(0), -1)  # (P,)
    for index, obj in enumerate(scene.objects):
        row, column = grid_cell(*obj.centre, grid=grid, height=height, width=width)
        labels[row * grid + column] = index
    return labels


def patch_embeddings(clip, images) -> torch.Tensor:
    """uint8 images (N, H, W, 3) -> every patch token through CLIP's final norm and projection, L2-normalised (N, P, D)."""
    tokens = clip.vision_model(pixel_values=clip_inputs(clip, images)).last_hidden_state[:, 1:]  # (N, P, C)
    return F.normalize(clip.visual_projection(clip.vision_model.post_layernorm(tokens)), dim=-1)


def concept_pool() -> list[str]:
    """Every object caption "a {size} {colour} {shape}" (72)."""
    return [f"a {size} {colour} {shape}" for size in SIZES for colour in COLOURS for shape in SHAPES]


def region_loss(clip, tokenizer, scenes, *, min_coverage: float) -> torch.Tensor:
    """Cross-entropy of each labelled patch token over the concept pool, its target the covering object's caption."""
    vision = clip.config.vision_config
    grid = vision.image_size // vision.patch_size
    pool = concept_pool()
    labels = np.stack([patch_labels(s, grid=grid, min_coverage=min_coverage) for s in scenes])  # (B, P)
    captions = [[pool.index(f"a {o.size} {o.colour} {o.shape}") for o in scene.objects] for scene in scenes]
    targets = np.array([[captions[b][i] if i >= 0 else -1 for i in row] for b, row in enumerate(labels)])  # (B, P)
    tokens = patch_embeddings(clip, np.stack([s.image for s in scenes]))  # (B, P, D)
    targets = torch.from_numpy(targets).to(clip.device)
    keep = targets >= 0
    logits = clip.logit_scale.exp().clamp(max=100) * tokens[keep] @ encode_texts(clip, tokenizer, pool).T  # (T, 72)
    return F.cross_entropy(logits, targets[keep])


def contrastive_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric InfoNCE; pairs with identical captions count as positives for each other."""
    logits = logit_scale.exp().clamp(max=100) * image_emb @ text_emb.T  # (N, N)
    targets = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def pretrain_clip(config: CLIPMiniConfig = CLIPMiniConfig(), settings: CLIPPretrainConfig = CLIPPretrainConfig(), *,
                  progress: bool = True, callback=None, run_dir=None, resume: bool = False, device: str = "cpu",
                  clip=None):
    """Train CLIP-mini on `device` (a fresh one, or `clip` from `build_clip`); returns (clip, tokenizer, LoopResult).

    Stage 1 trains on pairs; stage 2 (`settings.region_steps`) adds the region term. See `run_loop` for run_dir
    (stage 2 checkpoints to run_dir/region); `callback(step, result)` counts steps across both stages and may
    evaluate `clip` (it is the object trained). The result holds both stages' losses.
    """
    tokenizer = build_word_tokenizer()
    torch.manual_seed(settings.seed)
    if clip is None:
        clip = build_clip(config, tokenizer)
    clip = clip.to(device).train()
    image_size = config.vision.image_size

    def pair_loss(rng: np.random.Generator, size: int) -> torch.Tensor:
        images, captions = pair_batch(rng, size=size, crop_fraction=settings.crop_fraction, image_size=image_size)
        _, inverse = np.unique(captions, return_inverse=True)
        keep = np.unique(inverse, return_index=True)[1]  # one pair per distinct caption: no false negatives
        return contrastive_loss(encode_images(clip, images[keep]),
                                encode_texts(clip, tokenizer, [captions[i] for i in keep]), clip.logit_scale)

    def region_stage_loss(step: int) -> torch.Tensor:
        rng = scene_rng(REGION_STREAM, settings.seed, step)
        scenes = [make_scene(rng, image_size=image_size) for _ in range(settings.region_scenes)]
        return pair_loss(rng, settings.region_pairs) + settings.region_weight * region_loss(
            clip, tokenizer, scenes, min_coverage=settings.min_coverage)

    result = run_loop(lambda step: pair_loss(scene_rng(TRAIN_STREAM, settings.seed, step), settings.batch_size),
                      clip, steps=settings.steps, lr=settings.lr, seed=settings.seed,
                      warmup_steps=settings.warmup_steps, progress=progress, desc="CLIP-mini", callback=callback,
                      run_dir=run_dir, resume=resume)
    if settings.region_steps:
        pairs = result

        def both(region: LoopResult) -> LoopResult:
            return LoopResult(losses=pairs.losses + region.losses, steps=pairs.steps + region.steps,
                              wall_s=pairs.wall_s + region.wall_s)

        region = run_loop(region_stage_loss, clip, steps=settings.region_steps, lr=settings.region_lr,
                          seed=settings.seed, warmup_steps=settings.warmup_steps, progress=progress,
                          desc="CLIP-mini region", run_dir=Path(run_dir) / REGION_DIR if run_dir else None,
                          resume=resume, callback=callback and (lambda step, r: callback(pairs.steps + step, both(r))))
        result = both(region)
    return clip.cpu().eval(), tokenizer, result


def class_names() -> list[str]:
    """The zero-shot classes "a {colour} {shape}", colour-major."""
    return [f"a {colour} {shape}" for colour in COLOURS for shape in SHAPES]


@torch.no_grad()
def zero_shot_accuracy(clip, tokenizer, *, num_scenes: int = 100) -> float:
    """Top-1 of "a {colour} {shape}" zero-shot classification of every object crop in held-out scenes."""
    names = class_names()
    text_emb = encode_texts(clip, tokenizer, names)  # (36, D)
    size = clip.config.vision_config.image_size
    crops, labels = [], []
    for i in range(num_scenes):
        scene = make_scene(scene_rng(HELDOUT_STREAM, i), image_size=size)
        for index, obj in enumerate(scene.objects):
            crops.append(object_crop(scene, index, size=CROP_SIZE))
            labels.append(names.index(f"a {obj.colour} {obj.shape}"))
    predicted = torch.cat([(encode_images(clip, np.stack(crops[i:i + 64])) @ text_emb.T).argmax(1)
                           for i in range(0, len(crops), 64)])
    return float((predicted == torch.tensor(labels)).float().mean())


def save_clip_mini(clip, folder=None, *, metrics: dict | None = None, overwrite: bool = False) -> Path:
    """Save CLIP-mini as a transformers CLIPModel folder plus metrics.json (default: data/ingredients/clip-mini)."""
    folder = fresh_folder(folder or ingredient_dir("clip-mini"), overwrite=overwrite)
    clip.save_pretrained(str(folder))
    (folder / "metrics.json").write_text(json.dumps(metrics or {}, indent=2) + "\n")
    return folder


def load_clip_mini(folder=None):
    """CLIP-mini and its tokenizer from a folder written by `save_clip_mini`."""
    from transformers import CLIPModel

    folder = Path(folder or ingredient_dir("clip-mini"))
    if not (folder / "config.json").is_file():
        raise AnyRefCheckpointError(f"{str(folder)!r} holds no CLIP-mini; train it with `anyref pretrain clip`")
    return load_clip_folder(CLIPModel, folder).eval(), build_word_tokenizer()
