"""Audio-mini: ImageBind-style binding of the audio encoder to frozen image embeddings on ShapeScenes.

ImageBind (Girdhar et al., 2023) trains each new modality with a symmetric InfoNCE loss against a frozen CLIP image
encoder on naturally paired data. Here a pair is a shape's synthetic sound and a crop of a ShapeScenes object of
that shape; the image side is any frozen `image_embed_fn(crops_uint8 (N, S, S, 3)) -> (N, out_dim)`.

ImageBind's pairs are video frames with their soundtracks, where several things often sound at once. The miniature's
analogue (a deviation from single-sound pairs, measured in research/README.md): a `mixture_fraction` of pairs play
two shapes of one scene together and bind to the normalised sum of their two crop embeddings, so that the embedding
also carries a quiet second source (the hexagon's sparse bursts were inaudible under a louder sound before).
"""
from __future__ import annotations

import dataclasses
import json
from itertools import product
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..audio import AudioEncoder, waveform_to_clips
from ..config import MINI_IMAGE_SIZE, AudioConfig
from ..data import COLOURS, SHAPES, make_scene
from ..data.crops import object_crop
from ..data.sounds import mix, shape_sound, sound_for
from ..errors import AnyRefInputError
from ..weights import load_weights, read_config, save_ingredient
from .loop import run_loop, scene_rng

# SeedSequence streams; training sounds come from sounds.sound_for's stream 3.
TRAIN_SCENES, HELDOUT_SCENES, HELDOUT_SOUNDS = 31, 32, 4
SCENE_SIZE = MINI_IMAGE_SIZE
CROP_SIZE = 32
WARMUP_FRACTION = 0.1
EVAL_CHUNK = 30  # sounds per encoder call in evaluation
SECOND_SOURCE = 1 << 40  # index offset of a mixture's second sound, apart from every first sound's index


def _device(encoder: AudioEncoder) -> torch.device:
    """Where the encoder's weights live (clips and image embeddings are moved there)."""
    return next(encoder.parameters()).device


def binding_pair(*, seed: int, index: int, crop_size: int = CROP_SIZE,
                 mixture_fraction: float = 0.0) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Training pair `index`: (its object crops, each (S, S, 3) uint8; the sound (T,) float32; the shape names).

    One object and its shape's sound, or (with probability `mixture_fraction`, when the scene has two shapes) two
    objects of different shapes and their two sounds played together.
    """
    rng = scene_rng(TRAIN_SCENES, seed, index)
    scene = make_scene(rng, image_size=SCENE_SIZE)
    k = int(rng.integers(len(scene.objects)))
    shape = scene.objects[k].shape
    crops, sound, shapes = [object_crop(scene, k, size=crop_size)], sound_for(shape, seed=seed, index=index), [shape]
    others = [j for j, obj in enumerate(scene.objects) if obj.shape != shape]
    if others and rng.random() < mixture_fraction:
        j = others[int(rng.integers(len(others)))]
        shapes.append(scene.objects[j].shape)
        crops.append(object_crop(scene, j, size=crop_size))
        sound = mix(sound, sound_for(shapes[1], seed=seed, index=SECOND_SOURCE + index))
    return crops, sound, shapes


def image_embeddings(image_embed_fn, crops: np.ndarray, *, dim: int) -> torch.Tensor:
    """Frozen image side: crops (N, S, S, 3) uint8 -> unit vectors (N, dim), checked against the audio out_dim."""
    with torch.no_grad():
        embeddings = image_embed_fn(crops)  # (N, E)
    if not isinstance(embeddings, torch.Tensor) or tuple(embeddings.shape) != (len(crops), dim):
        shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
        raise AnyRefInputError(f"image_embed_fn must return a tensor of shape ({len(crops)}, {dim}) (dim = the audio "
                               f"config's out_dim), got {shape}")
    return F.normalize(embeddings.float(), dim=-1)  # (N, E)


def infonce(audio: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over a batch: audio (B, E) already x logit_scale, image (B, E) unit; pair i is positive."""
    logits = audio @ image.T  # (B, B)
    targets = torch.arange(len(logits), device=logits.device)  # (B,)
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))


def train_audio_binding(encoder: AudioEncoder, image_embed_fn, *, steps: int, batch_size: int, lr: float, seed: int,
                        crop_size: int = CROP_SIZE, mixture_fraction: float = 0.0, progress: bool = True,
                        callback=None, run_dir=None, resume: bool = False) -> dict:
    """Bind encoder's sound embeddings to frozen crop embeddings; returns {"losses", "steps", "wall_s"}.

    AdamW with warm-up + cosine (the shared pretraining loop); `callback(step, result)` runs after every step.
    Same seed and same initial weights give the same losses; `run_dir` / `resume` as in `run_loop`. A
    `mixture_fraction` of pairs are two-source mixtures bound to the normalised sum of their crops' embeddings.
    """
    if steps < 1 or batch_size < 2:
        raise AnyRefInputError(f"need steps >= 1 and batch_size >= 2 (InfoNCE needs negatives), "
                               f"got steps={steps}, batch_size={batch_size}")
    if not 0.0 <= mixture_fraction <= 1.0:
        raise AnyRefInputError(f"mixture_fraction is a probability in [0, 1], got {mixture_fraction!r}")
    config, device = encoder.config, _device(encoder)
    encoder.train()

    def loss_at(step: int) -> torch.Tensor:
        pairs = [binding_pair(seed=seed, index=step * batch_size + j, crop_size=crop_size,
                              mixture_fraction=mixture_fraction) for j in range(batch_size)]
        crops = np.stack([crop for crops, _, _ in pairs for crop in crops])  # (N, S, S, 3), N >= B crops
        owner = torch.tensor([b for b, (crops, _, _) in enumerate(pairs) for _ in crops])  # (N,) pair of each crop
        clips = torch.stack([waveform_to_clips(sound, config=config) for _, sound, _ in pairs])  # (B, 3, 1, mel, T)
        per_crop = image_embeddings(image_embed_fn, crops, dim=config.out_dim)  # (N, E)
        image = torch.zeros(len(pairs), config.out_dim).index_add_(0, owner, per_crop)  # (B, E) sum over sources
        return infonce(encoder.embed(clips.to(device)), F.normalize(image, dim=-1).to(device))

    result = run_loop(loss_at, encoder, steps=steps, lr=lr, seed=seed,
                      warmup_steps=max(1, int(WARMUP_FRACTION * steps)), progress=progress, desc="audio-mini",
                      callback=callback, run_dir=run_dir, resume=resume)
    encoder.eval()
    return dataclasses.asdict(result)


def shape_prototypes(image_embed_fn, *, dim: int, seed: int = 0, per_pair: int = 1,
                     crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Unit mean crop embedding per shape (SHAPES order) over held-out crops of every colour: (6, dim)."""
    crops = {pair: [] for pair in product(SHAPES, COLOURS)}
    index = 0
    while any(len(bucket) < per_pair for bucket in crops.values()):
        scene = make_scene(scene_rng(HELDOUT_SCENES, seed, index), image_size=SCENE_SIZE)
        index += 1
        for k, obj in enumerate(scene.objects):
            bucket = crops[(obj.shape, obj.colour)]
            if len(bucket) < per_pair:
                bucket.append(object_crop(scene, k, size=crop_size))
    means = [image_embeddings(image_embed_fn, np.stack([c for colour in COLOURS for c in crops[(shape, colour)]]),
                              dim=dim).mean(dim=0) for shape in SHAPES]  # 6 x (E,)
    return F.normalize(torch.stack(means), dim=-1)  # (6, E)


@torch.no_grad()
def prototype_scores(encoder: AudioEncoder, image_embed_fn, waves: list[np.ndarray], *, seed: int = 0,
                     crop_size: int = CROP_SIZE) -> torch.Tensor:
    """Cosine of each sound's embedding to every shape prototype: (len(waves), 6), in eval mode."""
    was_training = encoder.training
    encoder.eval()
    device = _device(encoder)
    prototypes = shape_prototypes(image_embed_fn, dim=encoder.config.out_dim, seed=seed, crop_size=crop_size)
    scores = []
    for start in range(0, len(waves), EVAL_CHUNK):
        clips = torch.stack([waveform_to_clips(wave, config=encoder.config)
                             for wave in waves[start:start + EVAL_CHUNK]])  # (n, 3, 1, mel, T)
        scores.append((encoder.embed(clips.to(device)) @ prototypes.to(device).T).cpu())  # (n, 6)
    encoder.train(was_training)
    return torch.cat(scores)


def audio_retrieval_top1(encoder: AudioEncoder, image_embed_fn, *, num: int = 60, seed: int = 0,
                         crop_size: int = CROP_SIZE) -> float:
    """Share of held-out sounds (shapes in turn) whose nearest shape prototype is their own shape."""
    if num < 1:
        raise AnyRefInputError(f"num must be a positive int, got {num!r}")
    labels = torch.arange(num) % len(SHAPES)  # (num,)
    waves = [shape_sound(SHAPES[int(label)], scene_rng(HELDOUT_SOUNDS, seed, i)) for i, label in enumerate(labels)]
    scores = prototype_scores(encoder, image_embed_fn, waves, seed=seed, crop_size=crop_size)  # (num, 6)
    return float((scores.argmax(dim=1) == labels).float().mean())


def mixture_top2(encoder: AudioEncoder, image_embed_fn, *, num: int = 60, seed: int = 0,
                 crop_size: int = CROP_SIZE) -> float:
    """Share of held-out two-shape mixtures whose two nearest shape prototypes are the two shapes that sound."""
    if num < 1:
        raise AnyRefInputError(f"num must be a positive int, got {num!r}")
    rng = scene_rng(HELDOUT_SOUNDS, seed, 1 << 20)  # apart from audio_retrieval_top1's single sounds
    sources = np.stack([rng.choice(len(SHAPES), size=2, replace=False) for _ in range(num)])  # (num, 2)
    waves = [mix(shape_sound(SHAPES[a], rng), shape_sound(SHAPES[b], rng)) for a, b in sources]
    top_two = prototype_scores(encoder, image_embed_fn, waves, seed=seed, crop_size=crop_size).topk(2, dim=1).indices
    return float(np.mean([set(pair.tolist()) == set(source.tolist()) for pair, source in zip(top_two, sources)]))


def save_audio_encoder(encoder: AudioEncoder, folder: str | Path, *, metrics: dict | None = None,
                       overwrite: bool = False) -> Path:
    """Write config.json + model.safetensors + metrics.json (refusing to replace a folder unless overwrite=True)."""
    config = dataclasses.replace(encoder.config, checkpoint=None)  # the weights are in the folder now
    folder = save_ingredient(encoder, dataclasses.asdict(config), folder, overwrite=overwrite)
    (folder / "metrics.json").write_text(json.dumps(metrics or {}, indent=2) + "\n")
    return folder


def load_audio_encoder(folder: str | Path) -> AudioEncoder:
    """An AudioEncoder rebuilt from a folder written by save_audio_encoder, in eval mode."""
    encoder = AudioEncoder(AudioConfig.from_dict(read_config(folder)))
    load_weights(encoder, folder)
    return encoder.eval()
