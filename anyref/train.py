"""A plain PyTorch training loop: AdamW, warm-up + cosine, progress bar, periodic checkpoints and exact resume."""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from .batching import collate, collate_tasks
from .checkpoint import check_resumable, load_checkpoint, save_checkpoint
from .data import training_sample

RUN_LENGTH_KEYS = ("steps", "checkpoint_every", "log_every", "time_budget_s", "stop_after")  # a resume may change these
# On CPU, PyTorch's flash-attention backward is several times slower than the plain maths for our short sequences.
TRAIN_ATTENTION = [SDPBackend.MATH] if not torch.cuda.is_available() else [SDPBackend.FLASH_ATTENTION,
                                                                           SDPBackend.EFFICIENT_ATTENTION,
                                                                           SDPBackend.MATH]


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (the paper: AdamW lr 5e-5, wd 0.01, cosine, 200 warm-up steps, 10k steps)."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    grad_clip: float = 1.0
    seed: int = 0
    image_size: int = 128
    mix: tuple = (("attribute", 0.45), ("spatial", 0.35), ("class", 0.2))
    tasks: tuple | None = None  # a task mixture (anyref.data.tasks.DEFAULT_MIX); None trains text referring on `mix`
    checkpoint_every: int = 100
    log_every: int = 10
    time_budget_s: float | None = None  # stop early (and checkpoint) once this much wall time has passed
    stop_after: int | None = None  # stop early (and checkpoint) after this many steps of the `steps`-long schedule


@dataclass
class TrainResult:
    """What a run did: the per-step losses, how many steps ran, wall time."""

    losses: list[float] = field(default_factory=list)
    parts: list[dict] = field(default_factory=list)
    steps: int = 0
    wall_s: float = 0.0


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


def make_optimizer(model, config: TrainConfig):
    """AdamW over trainable parameters (no decay on biases and norms) and its warm-up/cosine schedule."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, warmup=config.warmup_steps, total=config.steps))
    return optimizer, schedule


def batch_at(step: int, model, config: TrainConfig):
    """The batch of a step, a pure function of (seed, step): resuming replays exactly the same data."""
    indices = range(step * config.batch_size, (step + 1) * config.batch_size)
    if config.tasks is not None:
        from .data.tasks import task_sample

        samples = [task_sample(i, seed=config.seed, image_size=config.image_size, mix=config.tasks) for i in indices]
        return collate_tasks(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)
    samples = [training_sample(i, seed=config.seed, image_size=config.image_size, mix=config.mix) for i in indices]
    return collate(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)


def train(model, config: TrainConfig, *, run_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, callback=None) -> TrainResult:
    """Train on ShapeScenes text referring; checkpoints to run_dir/checkpoint every `checkpoint_every` steps.

    `callback(steps_done, model, result)` runs after every step (e.g. periodic evaluation; it must restore train mode).
    """
    folder = Path(run_dir) / "checkpoint" if run_dir else None
    optimizer, schedule = make_optimizer(model, config)
    start, result = 0, TrainResult()
    if check_resumable(folder, resume=resume):
        start, history = load_checkpoint(folder, model, optimizer, schedule, asdict(config), may_change=RUN_LENGTH_KEYS)
        result = TrainResult(**history, steps=start)
    else:
        seed_everything(config.seed)
    model.train()
    began = time.perf_counter() - result.wall_s
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress, desc="train")
    for step in bar:
        with sdpa_kernel(TRAIN_ATTENTION):
            out = model(batch_at(step, model, config).to(model.device))
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
        optimizer.step()
        schedule.step()
        result.losses.append(float(out["loss"].detach()))
        result.parts.append({k: round(float(out[k].detach()), 5) for k in ("ce", "bce", "dice")})
        result.steps, result.wall_s = step + 1, time.perf_counter() - began
        if step % config.log_every == 0:
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}", ce=f"{result.parts[-1]['ce']:.3f}",
                            dice=f"{result.parts[-1]['dice']:.3f}")
        out_of_time = ((config.time_budget_s is not None and result.wall_s >= config.time_budget_s)
                       or (config.stop_after is not None and step + 1 >= config.stop_after))
        if folder is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps or out_of_time):
            save_checkpoint(folder, model, optimizer, schedule, step=step + 1, settings=asdict(config),
                            history={"losses": result.losses, "parts": result.parts, "wall_s": result.wall_s})
        if callback is not None:
            callback(step + 1, model, result)
        if out_of_time:
            break
    model.eval()
    return result
