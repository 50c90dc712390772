"""The ingredient pretraining runs' entry to the one training loop (`anyref.engine`), and their data streams."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..engine import Recipe, RunResult, run

LoopResult = RunResult  # per-step losses, steps run, wall time


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
    recipe = Recipe(steps=steps, lr=lr, seed=seed, warmup_steps=warmup_steps, weight_decay=weight_decay,
                    grad_clip=grad_clip, checkpoint_every=checkpoint_every, time_budget_s=time_budget_s)
    settings = {"steps": steps, "lr": lr, "seed": seed, "warmup_steps": warmup_steps, "weight_decay": weight_decay,
                "grad_clip": grad_clip, "desc": desc}
    return run(lambda step: {"loss": loss_at(step)}, module, recipe, settings=settings, folder=run_dir,
               resume=resume, progress=progress, desc=desc, callback=callback)
