"""A small shared loop for the ingredient pretraining runs: AdamW, warm-up + cosine, progress bar, seeds."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from torch.nn.attention import sdpa_kernel

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


def run_loop(loss_at, parameters, *, steps: int, lr: float, seed: int, warmup_steps: int = 50,
             weight_decay: float = 0.01, grad_clip: float = 1.0, progress: bool = True, desc: str = "pretrain",
             time_budget_s: float | None = None, callback=None) -> LoopResult:
    """Minimise `loss_at(step)` (a scalar tensor) over `parameters`; `callback(step, result)` after each step."""
    seed_everything(seed)
    parameters = [p for p in parameters if p.requires_grad]
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, warmup=warmup_steps, total=steps))
    result, began = LoopResult(), time.perf_counter()
    bar = tqdm(range(steps), disable=not progress, desc=desc)
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
        if callback is not None:
            callback(step + 1, result)
        if time_budget_s is not None and result.wall_s >= time_budget_s:
            break
    return result
