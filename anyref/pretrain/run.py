"""One command per ingredient: train it, measure what it learned, save it (`anyref pretrain clip|sam|llava|audio`)."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from ..config import SAMConfig
from ..errors import AnyRefConfigError
from ..paths import INGREDIENTS_DIR
from . import audio_mini, clip_mini, llava_mini, sam_mini
from ..weights import check_writable

INGREDIENTS = ("clip", "sam", "llava", "audio")
AUDIO_STEPS = 600
AUDIO_MIXTURE_FRACTION = 0.5  # two-source pairs in audio-mini binding (the miniature's deviation)
FOLDERS = {"clip": "clip-mini", "sam": "sam-mini", "llava": "llava-mini", "audio": "audio-mini"}


def folder_of(name: str) -> Path:
    """The shipped folder of an ingredient."""
    return INGREDIENTS_DIR / FOLDERS[name]


def crop_embedder(clip):
    """CLIP-mini's image side as a function uint8 crops (N, S, S, 3) -> unit embeddings (N, D)."""
    @torch.no_grad()
    def embed(crops):
        return clip_mini.encode_images(clip, crops)
    return embed


def pretrain(name: str, *, steps: int | None = None, out: str | Path | None = None, overwrite: bool = False,
             clip_folder: str | Path | None = None, progress: bool = True, run_dir: str | Path | None = None,
             resume: bool = False, device: str = "cpu", region_steps: int | None = None) -> dict:
    """Train ingredient `name` (fewer `steps` for a quick look), evaluate it, save it to `out`; returns its metrics.

    `run_dir` keeps checkpoints that `resume` continues; `device` ("cuda") applies to CLIP-mini, the slowest to learn;
    `region_steps` sets CLIP-mini's second stage (the region term; with `steps` and no `region_steps`, none).
    """
    if name not in INGREDIENTS:
        raise ValueError(f"unknown ingredient {name!r}; choose one of {INGREDIENTS}")
    if region_steps is not None and name != "clip":
        raise AnyRefConfigError(f"region_steps belongs to CLIP-mini's pretraining, not {name!r}")
    if device != "cpu" and name != "clip":
        raise AnyRefConfigError(f"only CLIP-mini pretraining runs on {device!r}; the other ingredients train on the CPU")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise AnyRefConfigError(f"device {device!r} asked for, but this machine has no CUDA GPU; use --device cpu")
    checkpoints = dict(run_dir=run_dir, resume=resume)
    out = Path(out) if out else folder_of(name)
    clip_folder = Path(clip_folder) if clip_folder else folder_of("clip")
    check_writable(out, overwrite=overwrite)  # refuse before training, not after
    if name == "clip":
        if region_steps is None and steps:
            region_steps = 0  # a quick look trains the pair stage only
        settings = clip_mini.CLIPPretrainConfig(**({"steps": steps} if steps else {}),
                                                **({} if region_steps is None else {"region_steps": region_steps}))
        clip, tokenizer, result = clip_mini.pretrain_clip(settings=settings, progress=progress, device=device,
                                                          **checkpoints)
        metrics = {"zero_shot_top1": clip_mini.zero_shot_accuracy(clip, tokenizer), "settings": asdict(settings),
                   "steps": result.steps, "wall_s": round(result.wall_s, 1)}
        clip_mini.save_clip_mini(clip, out, metrics=metrics, overwrite=overwrite)
    elif name == "sam":
        settings = sam_mini.SAMPretrainConfig(**({"steps": steps} if steps else {}))
        config = SAMConfig()
        sam, result = sam_mini.pretrain_sam(config, settings, progress=progress, **checkpoints)
        metrics = {"box_miou": sam_mini.evaluate_sam(sam), "point_miou": sam_mini.evaluate_sam(sam, prompt="point"),
                   "steps": result.steps, "wall_s": round(result.wall_s, 1)}
        sam_mini.save_sam_mini(sam, config, out, metrics=metrics, overwrite=overwrite)
    elif name == "llava":
        settings = llava_mini.LLaVAPretrainConfig()
        if steps:
            settings = replace(settings, lm_steps=steps, align_steps=steps, instruct_steps=steps)
        model, histories = llava_mini.pretrain_llava(str(clip_folder), settings, progress=progress, **checkpoints)
        metrics = llava_mini.pretraining_metrics(model, settings, histories)
        llava_mini.save_llava_mini(model, out, metrics=metrics, overwrite=overwrite)
    else:
        clip, _ = clip_mini.load_clip_mini(clip_folder)
        embed = crop_embedder(clip)
        encoder = audio_mini.AudioEncoder(audio_mini.AudioConfig(out_dim=clip.config.projection_dim))
        recipe = {"steps": steps or AUDIO_STEPS, "batch_size": 32, "lr": 2e-3,
                  "mixture_fraction": AUDIO_MIXTURE_FRACTION}
        history = audio_mini.train_audio_binding(encoder, embed, **recipe, seed=0, progress=progress, **checkpoints)
        metrics = {"retrieval_top1": audio_mini.audio_retrieval_top1(encoder, embed),
                   "mixture_top2": audio_mini.mixture_top2(encoder, embed), **recipe,
                   "wall_s": round(history["wall_s"], 1)}
        audio_mini.save_audio_encoder(encoder, out, metrics=metrics, overwrite=overwrite)
    return metrics
