"""A plain PyTorch training loop: AdamW, warm-up + cosine, progress bar, periodic checkpoints and exact resume."""
from __future__ import annotations

import json
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
from .data import training_sample
from .errors import AnyRefCheckpointError

STATE_FILE, TRAINABLE_FILE = "trainer_state.pt", "trainable.safetensors"
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


def frozen_fingerprint(model) -> float:
    """A checksum of the frozen weights, which checkpoints do not store (they come from init or pretrained files)."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in model.parameters() if not p.requires_grad))


def save_checkpoint(folder: Path, model, optimizer, schedule, step: int, result, settings: dict):
    """Trainable weights (safetensors) + optimizer, schedule, RNG states, history and `settings` (torch.save)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    trainable = {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trainable, str(folder / (TRAINABLE_FILE + ".tmp")))
    state = {"step": step, "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
             "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(), "python_rng": random.getstate(),
             "losses": result.losses, "parts": getattr(result, "parts", []), "wall_s": result.wall_s,
             "config": settings, "frozen_fingerprint": frozen_fingerprint(model)}
    torch.save(state, folder / (STATE_FILE + ".tmp"))
    (folder / (TRAINABLE_FILE + ".tmp")).replace(folder / TRAINABLE_FILE)  # rename last: never a half checkpoint
    (folder / (STATE_FILE + ".tmp")).replace(folder / STATE_FILE)


def load_checkpoint(folder: Path, model, optimizer, schedule, settings: dict, *, may_change=()) -> tuple[int, dict]:
    """Restore a `save_checkpoint` folder made with the same `settings` (but `may_change`); returns (step, state)."""
    from safetensors.torch import load_file

    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=False)
    saved = {k: v for k, v in state["config"].items() if k not in may_change}
    current = {k: v for k, v in settings.items() if k in saved}
    if json.dumps(saved, default=list) != json.dumps(current, default=list):
        raise AnyRefCheckpointError(f"checkpoint in {str(folder)!r} was made with other settings {saved}; "
                                    f"resume with the same settings or start a new run folder")
    expected, actual = state["frozen_fingerprint"], frozen_fingerprint(model)
    if abs(expected - actual) > 1e-6 * max(1.0, abs(expected)):
        raise AnyRefCheckpointError(f"the model's frozen weights differ from those the checkpoint in {str(folder)!r} "
                                    "was trained with; build the model with the same seed / pretrained files")
    weights = load_file(str(folder / TRAINABLE_FILE))
    params = dict(model.named_parameters())
    unknown = set(weights) - {n for n, p in params.items() if p.requires_grad}
    if unknown:
        raise AnyRefCheckpointError(f"checkpoint weights {sorted(unknown)[:3]}... are not trainable in this model")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return state["step"], state


def check_resumable(folder: Path | None, *, resume: bool) -> bool:
    """Whether `folder` holds a checkpoint to continue; one that exists without `resume` is an error."""
    if folder is None or not (folder / STATE_FILE).exists():
        return False
    if not resume:
        raise AnyRefCheckpointError(f"{str(folder)!r} already holds a checkpoint; resume it (resume=True / "
                                    "--resume) or choose a new run folder")
    return True


def train(model, config: TrainConfig, *, run_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, callback=None) -> TrainResult:
    """Train on ShapeScenes text referring; checkpoints to run_dir/checkpoint every `checkpoint_every` steps.

    `callback(steps_done, model, result)` runs after every step (e.g. periodic evaluation; it must restore train mode).
    """
    folder = Path(run_dir) / "checkpoint" if run_dir else None
    optimizer, schedule = make_optimizer(model, config)
    start, result = 0, TrainResult()
    if check_resumable(folder, resume=resume):
        start, state = load_checkpoint(folder, model, optimizer, schedule, asdict(config), may_change=RUN_LENGTH_KEYS)
        result = TrainResult(losses=state["losses"], parts=state["parts"], steps=start, wall_s=state["wall_s"])
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
            save_checkpoint(folder, model, optimizer, schedule, step + 1, result, asdict(config))
        if callback is not None:
            callback(step + 1, model, result)
        if out_of_time:
            break
    model.eval()
    return result
