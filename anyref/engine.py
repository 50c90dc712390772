"""The one training loop: AnyRef training (`anyref.train`) and every ingredient's pretraining (`anyref.pretrain.loop`).

Seeds, AdamW with decay on matrices only, linear warm-up + cosine, gradient clipping, a progress bar, a time budget,
periodic verified checkpoints (`anyref.checkpoint`) and a resume that replays exactly the uninterrupted run.
Attention keeps SDPA's default backend: faster in training than MATH (data/results/attention_backends.json).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoint import check_resumable, load_checkpoint, save_checkpoint


@dataclass
class RunResult:
    """What a run did: per-step losses (and named loss parts, where the step reports any), steps run, wall time."""

    losses: list[float] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)
    steps: int = 0
    wall_s: float = 0.0


@dataclass(frozen=True)
class Recipe:
    """How a run optimises and when it checkpoints, reports progress and stops early."""

    steps: int
    lr: float
    seed: int
    warmup_steps: int
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 10
    time_budget_s: float | None = None  # stop (and checkpoint) once this much wall time has passed
    stop_after: int | None = None  # stop (and checkpoint) after this many steps of the `steps`-long schedule


def seed_everything(seed: int) -> None:
    """Fix Python, numpy and torch RNGs (data, initialisation and training are then reproducible on CPU)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(module: torch.nn.Module, recipe: Recipe):
    """AdamW over the trainable parameters (no decay on biases and norms) and its warm-up + cosine schedule."""
    trainable = [p for p in module.parameters() if p.requires_grad]
    decay, no_decay = [p for p in trainable if p.ndim >= 2], [p for p in trainable if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=recipe.warmup_steps, total=recipe.steps))
    return optimizer, schedule


def _postfix(result: RunResult, log_every: int) -> dict[str, str]:
    """The progress bar's figures: the mean loss of the last `log_every` steps and the last step's parts."""
    last = result.parts[-1] if result.parts else {}
    return {"loss": f"{np.mean(result.losses[-log_every:]):.4f}", **{k: f"{v:.3f}" for k, v in last.items()}}


def run(step_loss, module: torch.nn.Module, recipe: Recipe, *, settings: dict, may_change=(),
        folder: str | Path | None = None, resume: bool = False, progress: bool = True, desc: str = "train",
        callback=None) -> RunResult:
    """Minimise `step_loss(step)["loss"]` over the trainable parameters of `module`; its other entries are parts.

    With `folder`, checkpoints go there every `recipe.checkpoint_every` steps, at the end and when stopping early;
    `resume` continues the newest one exactly (`step_loss` must depend on the step only) when it was made with the
    same `settings` (but those in `may_change`). `callback(steps_done, result)` runs after every step.
    """
    folder = Path(folder) if folder else None
    optimizer, schedule = make_optimizer(module, recipe)
    trainable = [p for p in module.parameters() if p.requires_grad]
    start, result = 0, RunResult()
    if check_resumable(folder, resume=resume):
        start, history = load_checkpoint(folder, module, optimizer, schedule, settings, may_change=may_change)
        result = RunResult(**history, steps=start)
    else:
        seed_everything(recipe.seed)
    began = time.perf_counter() - result.wall_s
    bar = tqdm(range(start, recipe.steps), initial=start, total=recipe.steps, disable=not progress, desc=desc)
    for step in bar:
        out = step_loss(step)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(trainable, recipe.grad_clip)
        optimizer.step()
        schedule.step()
        result.losses.append(float(out["loss"].detach()))
        if len(out) > 1:
            result.parts.append({k: round(float(v.detach()), 5) for k, v in out.items() if k != "loss"})
        result.steps, result.wall_s = step + 1, time.perf_counter() - began
        if step % recipe.log_every == 0:
            bar.set_postfix(_postfix(result, recipe.log_every))
        stop = ((recipe.time_budget_s is not None and result.wall_s >= recipe.time_budget_s)
                or (recipe.stop_after is not None and step + 1 >= recipe.stop_after))
        if folder is not None and ((step + 1) % recipe.checkpoint_every == 0 or step + 1 == recipe.steps or stop):
            save_checkpoint(folder, module, optimizer, schedule, step=step + 1, settings=settings,
                            history={"losses": result.losses, "parts": result.parts, "wall_s": result.wall_s})
        if callback is not None:
            callback(step + 1, result)
        if stop:
            break
    return result
