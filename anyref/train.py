"""AnyRef training on ShapeScenes: the batches of each step and the loss of one step, run by `anyref.engine`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .batching import collate, collate_tasks
from .config import MINI_IMAGE_SIZE
from .data import training_sample
from .engine import Recipe, RunResult, lr_factor, run, seed_everything

__all__ = ["TrainConfig", "TrainResult", "batch_at", "lr_factor", "seed_everything", "step_loss", "train"]
RUN_LENGTH_KEYS = ("steps", "checkpoint_every", "log_every", "time_budget_s", "stop_after")  # a resume may change these
LOSS_PARTS = ("ce", "bce", "dice")
TrainResult = RunResult  # per-step losses and their ce / bce / dice parts, steps run, wall time


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
    image_size: int = MINI_IMAGE_SIZE
    mix: tuple = (("attribute", 0.45), ("spatial", 0.35), ("class", 0.2))
    tasks: tuple | None = None  # a task mixture (anyref.data.tasks.DEFAULT_MIX); None trains text referring on `mix`
    checkpoint_every: int = 100
    log_every: int = 10
    time_budget_s: float | None = None  # stop early (and checkpoint) once this much wall time has passed
    stop_after: int | None = None  # stop early (and checkpoint) after this many steps of the `steps`-long schedule


def batch_at(step: int, model, config: TrainConfig):
    """The batch of a step, a pure function of (seed, step): resuming replays exactly the same data."""
    indices = range(step * config.batch_size, (step + 1) * config.batch_size)
    if config.tasks is not None:
        from .data.tasks import task_sample

        samples = [task_sample(i, seed=config.seed, image_size=config.image_size, mix=config.tasks) for i in indices]
        return collate_tasks(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)
    samples = [training_sample(i, seed=config.seed, image_size=config.image_size, mix=config.mix) for i in indices]
    return collate(samples, model.tokenizer, max_tokens=model.config.max_text_tokens)


def step_loss(model, batch) -> dict:
    """The loss of one training step on `batch` (Eq. 3) and its ce / bce / dice (/ locate) parts (scalar tensors)."""
    out = model(batch.to(model.device))
    return {key: out[key] for key in ("loss", *LOSS_PARTS, "locate") if key in out}


def train(model, config: TrainConfig, *, run_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, callback=None) -> TrainResult:
    """Train on ShapeScenes text referring; checkpoints to run_dir/checkpoint every `checkpoint_every` steps.

    `callback(steps_done, model, result)` runs after every step (e.g. periodic evaluation; it must restore train mode).
    """
    recipe = Recipe(**{f.name: getattr(config, f.name) for f in fields(Recipe)})
    model.train()
    result = run(lambda step: step_loss(model, batch_at(step, model, config)), model, recipe,
                 settings=asdict(config), may_change=RUN_LENGTH_KEYS,
                 folder=Path(run_dir) / "checkpoint" if run_dir else None, resume=resume, progress=progress,
                 callback=callback and (lambda steps, result: callback(steps, model, result)))
    model.eval()
    return result
