"""A small shared loop for the ingredient pretraining runs: AdamW, warm-up + cosine, progress bar, seeds,
periodic checkpoints and exact resume (the same checkpoint format as `anyref.train`)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from torch.nn.attention import sdpa_kernel

from ..checkpoint import check_resumable, load_checkpoint, save_checkpoint
from ..train import TRAIN_ATTENTION, lr_factor, seed_everything


@dataclass
class LoopResult:
    """Per-step losses and wall time of a pretraining run."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    wall_s: float = 0.0


def scene_rng(stream: int, *keys: int) -> np.random.Generator:
    """A generator fixed by (stream, keys); streams keep each ingredient's training and held-out data apart."""
    return np.random.default_rng(np.random.SeedSequence([stream, *keys]))


def run_loop(loss_at, module: torch.nn.Module, *, steps: int, lr: float, seed: int, warmup_steps: int = 50,
             weight_decay: float = 0.01, grad_clip: float = 1.0, progress: bool = True, desc: str = "pretrain",
             time_budget_s: float | None = None, callback=None, run_dir: str | Path | None = None,
             resume: bool = False, checkpoint_every: int = 100) -> LoopResult:
    """Minimise `loss_at(step)` (a scalar tensor) over the trainable parameters of `module`.

    With `run_dir`, checkpoints go there every `checkpoint_every` steps and at the end; `resume` continues one with
    identical losses (`loss_at` must depend on the step only). `callback(step, result)` runs after each step.
    """
    folder = Path(run_dir) if run_dir else None
    parameters = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup=warmup_steps, total=steps))
    settings = {"steps": steps, "lr": lr, "seed": seed, "warmup_steps": warmup_steps, "weight_decay": weight_decay,
                "grad_clip": grad_clip, "desc": desc}
    start, result = 0, LoopResult()
    if check_resumable(folder, resume=resume):
        start, history = load_checkpoint(folder, module, optimizer, schedule, settings)
        result = LoopResult(losses=history["losses"], steps=start, wall_s=history["wall_s"])
    else:
        seed_everything(seed)
    began = time.perf_counter() - result.wall_s
    bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress, desc=desc)
    for step in bar:
        with sdpa_kernel(TRAIN_ATTENTION):
            loss = loss_at(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()
        schedule.step()
        result.losses.append(float(loss.detach()))
        result.steps, result.wall_s = step + 1, time.perf_counter() - began
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(result.losses[-10:]):.4f}")
        out_of_time = time_budget_s is not None and result.wall_s >= time_budget_s
        if folder is not None and ((step + 1) % checkpoint_every == 0 or step + 1 == steps or out_of_time):
            save_checkpoint(folder, module, optimizer, schedule, step=step + 1, settings=settings,
                            history={"losses": result.losses, "wall_s": result.wall_s})
        if callback is not None:
            callback(step + 1, result)
        if out_of_time:
            break
    return result
