"""AnyRef through DeepSpeed (Sec. 3.2.1: ZeRO stage 2 on 8 GPUs): `anyref train --deepspeed CONFIG`.

The model, the batches (`anyref.train.batch_at`), the loss (`anyref.train.step_loss`), the AdamW groups and the
warm-up + cosine schedule (`anyref.engine.make_optimizer`) are the plain loop's. DeepSpeed partitions the optimizer
states and gradients, averages gradients over processes, accumulates micro-batches, clips, steps and checkpoints.
One process runs without a launcher; `torchrun` or `deepspeed` start several (gloo on CPU, NCCL on GPUs).
`python -m anyref.deepspeed_engine export RUN_DIR OUT` turns a ZeRO checkpoint into a `from_pretrained` folder.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import random
import re
import shutil
import socket
import sys
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .checkpoints import load_checked
from .engine import Recipe, RunResult, make_optimizer, seed_everything
from .errors import AnyRefCheckpointError, AnyRefConfigError
from .train import LOSS_PARTS, RUN_LENGTH_KEYS, TrainConfig, batch_at, step_loss

CHECKPOINT_DIR = "deepspeed"  # inside the run folder: DeepSpeed's tags, `latest`, and the model description
MODEL_DIR = "anyref"  # inside CHECKPOINT_DIR: config.json and the tokenizer, to rebuild the model on export
RESULT_FILE = "result.json"  # inside CHECKPOINT_DIR: the losses of the run, written by rank 0 at the end
RNG_FILE = "anyref_rng_rank{rank}.json"  # inside each tag: one process's RNG states, for an exact resume
TAG = re.compile(r"global_step(\d+)")
KEEP = 2  # complete checkpoints kept
ADAMW_DEFAULTS = {"betas": [0.9, 0.999], "eps": 1e-8}  # what anyref.engine.make_optimizer's AdamW uses
SCHEDULE_SHAPE = {"warmup_type": "linear", "warmup_min_ratio": 0.0, "cos_min_ratio": 0.0}  # anyref.engine.lr_factor


def read_config(path: str | Path) -> dict:
    """A DeepSpeed JSON config, with the keys this trainer needs checked."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnyRefConfigError(f"DeepSpeed config {str(path)!r} cannot be read as JSON ({error}); see "
                                "configs/deepspeed/ for examples") from None
    needed = ["train_micro_batch_size_per_gpu", "optimizer", "scheduler", "zero_optimization"]
    missing = [key for key in needed if key not in config]
    if missing:
        raise AnyRefConfigError(f"DeepSpeed config {str(path)!r} lacks {missing}; start from "
                                "configs/deepspeed/cpu_zero2.json or paper_v100_zero2.json")
    if config["zero_optimization"].get("stage") not in (1, 2):
        raise AnyRefConfigError(f"DeepSpeed config {str(path)!r} asks for ZeRO stage "
                                f"{config['zero_optimization'].get('stage')}; this trainer runs stages 1 and 2 "
                                "(the paper: 2), where every process holds the whole model")
    return config


def _params(section: dict, kind: str, path: str | Path) -> dict:
    """The params of the optimizer / scheduler section, refusing a type this trainer does not run."""
    wanted = {"optimizer": "adamw", "scheduler": "warmupcosinelr"}[kind]
    if str(section.get("type", "")).lower() != wanted:
        raise AnyRefConfigError(f"DeepSpeed config {str(path)!r}: {kind} type {section.get('type')!r} is not "
                                f"supported; AnyRef runs its own AdamW and warm-up + cosine schedule, so use "
                                f"{'AdamW' if kind == 'optimizer' else 'WarmupCosineLR'} (configs/deepspeed/README.md)")
    return section.get("params", {})


def recipe(config: dict, train: TrainConfig, *, world: int, path: str | Path = "the DeepSpeed config") -> TrainConfig:
    """`train` with the batch, optimizer, schedule and clipping of a DeepSpeed config for `world` processes."""
    micro, accumulation = config["train_micro_batch_size_per_gpu"], config.get("gradient_accumulation_steps", 1)
    total = config.get("train_batch_size", micro * accumulation * world)
    if total != micro * accumulation * world:
        raise AnyRefConfigError(f"{str(path)!r}: train_batch_size {total} != micro-batch {micro} x accumulation "
                                f"{accumulation} x {world} processes; launch {total // (micro * accumulation)} "
                                "processes or delete train_batch_size")
    optimizer = _params(config["optimizer"], "optimizer", path)
    schedule = _params(config["scheduler"], "scheduler", path)
    fixed = [f"{key}={value}" for key, value in {**ADAMW_DEFAULTS, **SCHEDULE_SHAPE}.items()
             if key in {**optimizer, **schedule} and {**optimizer, **schedule}[key] != value]
    if fixed:
        raise AnyRefConfigError(f"{str(path)!r}: AnyRef's optimizer and schedule need {fixed} (or the key left out)")
    return replace(train, batch_size=micro * accumulation * world, lr=optimizer.get("lr", train.lr),
                   weight_decay=optimizer.get("weight_decay", train.weight_decay),
                   steps=schedule.get("total_num_steps", train.steps),
                   warmup_steps=schedule.get("warmup_num_steps", train.warmup_steps),
                   grad_clip=config.get("gradient_clipping", 0.0))


def _skip_inference_comm_kernel() -> None:
    """Do not build DeepSpeed's shared-memory all-reduce kernel on CPU: a C++ JIT compile (6 min cold on 2 busy
    cores here) that only its inference all-reduce uses; training reduces through torch.distributed (gloo)."""
    importlib.import_module("deepspeed.comm.torch").build_shm_op = lambda: None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def init_distributed() -> tuple[int, int]:
    """Join (or, without a launcher, create) the process group: NCCL on GPUs, gloo on CPU. Returns (rank, world)."""
    on_gpu = torch.cuda.is_available()
    if not on_gpu:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    single = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in single.items():  # a launcher sets these; a plain `python` run is one process
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    import deepspeed

    if not on_gpu:
        _skip_inference_comm_kernel()
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if on_gpu else "gloo")
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def micro_batch(step: int, model, config: TrainConfig, *, micro: int, index: int):
    """Micro-batch `index` of optimizer step `step`: samples step*B + index*micro ... of the global batch B."""
    return batch_at(step * (config.batch_size // micro) + index, model, replace(config, batch_size=micro))


def averaged_step_loss(model, config: TrainConfig, step: int, *, micro: int) -> dict:
    """The plain loop's step that DeepSpeed's data parallelism computes: the mean of the micro-batch losses of the
    global batch (a token-mean over the whole batch weighs samples a little differently)."""
    outs = [step_loss(model, micro_batch(step, model, config, micro=micro, index=k))
            for k in range(config.batch_size // micro)]
    return {key: torch.stack([out[key] for out in outs]).mean() for key in outs[0]}


def _rng_state() -> dict:
    version, internal, gauss = random.getstate()
    name, keys, *rest = np.random.get_state()
    return {"torch": torch.get_rng_state().tolist(), "numpy": [name, keys.tolist(), *rest],
            "python": [version, list(internal), gauss]}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _deepspeed_globals() -> list:
    """The classes DeepSpeed pickles into its checkpoints besides tensors and plain containers."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [fragment_address, ZeroStageEnum, LossScaler, DynamicLossScaler]


def latest_tag(folder: Path) -> str | None:
    """The tag DeepSpeed's `latest` file names, checked to be one of ours (global_stepN) and present."""
    pointer = folder / "latest"
    if not pointer.is_file():
        return None
    tag = pointer.read_text().strip()
    if not TAG.fullmatch(tag) or not (folder / tag).is_dir():
        raise AnyRefCheckpointError(f"{str(pointer)!r} names {tag!r}, which is not a checkpoint in that folder; "
                                    "restore the run folder or start a new one")
    return tag


def verify_checkpoint(folder: Path, tag: str, *, world: int | None = None) -> None:
    """Refuse a DeepSpeed checkpoint unless every file loads with weights_only=True (DeepSpeed itself unpickles them
    fully) and, when `world` is given, each process's RNG file is there."""
    from torch.serialization import safe_globals

    files = sorted((folder / tag).glob("*.pt"))
    if not files:
        raise AnyRefCheckpointError(f"DeepSpeed checkpoint {str(folder / tag)!r} holds no .pt files")
    with safe_globals(_deepspeed_globals()):
        for path in files:
            try:
                torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as error:  # any failure: the file is damaged or holds code; DeepSpeed must not read it
                first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
                raise AnyRefCheckpointError(f"DeepSpeed checkpoint file {str(path)!r} was refused ({first[:200]}); "
                                            "nothing in it ran: resume from another run folder") from None
    absent = [RNG_FILE.format(rank=r) for r in range(world or 0) if not (folder / tag / RNG_FILE.format(rank=r)).is_file()]
    if absent:
        raise AnyRefCheckpointError(f"DeepSpeed checkpoint {str(folder / tag)!r} lacks {absent}; it was not made "
                                    "by anyref's DeepSpeed trainer with this many processes")


def _save(engine, folder: Path, *, step: int, rank: int, result: RunResult, settings: dict) -> None:
    """RNG states (each process) first, then DeepSpeed's checkpoint, whose `latest` is written last; old ones pruned."""
    tag = f"global_step{step}"
    (folder / tag).mkdir(parents=True, exist_ok=True)
    (folder / tag / RNG_FILE.format(rank=rank)).write_text(json.dumps(_rng_state()))
    history = {"losses": result.losses, "parts": result.parts, "wall_s": result.wall_s}
    engine.save_checkpoint(str(folder), tag=tag, client_state={"step": step, "settings": json.dumps(settings),
                                                               "history": history})
    if rank == 0:
        tags = sorted((p for p in folder.iterdir() if TAG.fullmatch(p.name)), key=lambda p: int(p.name[11:]))
        for old in tags[:-KEEP]:
            shutil.rmtree(old)


def _resume(engine, folder: Path, *, rank: int, world: int, settings: dict) -> tuple[int, RunResult]:
    """Load the newest checkpoint made with the same settings (but the run length) and this process's RNG states."""
    tag = latest_tag(folder)
    verify_checkpoint(folder, tag, world=world)
    _, client = engine.load_checkpoint(str(folder), tag=tag)
    saved = {k: v for k, v in json.loads(client["settings"]).items() if k not in RUN_LENGTH_KEYS}
    current = {k: v for k, v in json.loads(json.dumps(settings)).items() if k not in RUN_LENGTH_KEYS}
    if saved != current:
        changed = sorted(k for k in saved.keys() | current.keys() if saved.get(k) != current.get(k))
        raise AnyRefCheckpointError(f"the DeepSpeed checkpoint in {str(folder)!r} was made with other {changed}; "
                                    "resume with the same settings and number of processes, or a new run folder")
    _set_rng_state(json.loads((folder / tag / RNG_FILE.format(rank=rank)).read_text()))
    return client["step"], RunResult(**client["history"], steps=client["step"])


def _describe(model, folder: Path) -> None:
    """config.json and the tokenizer beside the checkpoints, so that `export` can rebuild the model."""
    from .model import CONFIG_FILE, TOKENIZER_DIR

    (folder / MODEL_DIR).mkdir(parents=True, exist_ok=True)
    model.config.save(folder / MODEL_DIR / CONFIG_FILE)
    model.tokenizer.save_pretrained(str(folder / MODEL_DIR / TOKENIZER_DIR))


def _half_inputs(config: dict, device: torch.device):
    """With DeepSpeed's fp16 / bf16 the weights are cast to 16 bits, while the model feeds its layers float32 pixels,
    waveforms and features: autocast makes each op take its inputs in the weights' precision (norms stay fp32)."""
    dtype = next((d for key, d in (("fp16", torch.float16), ("bf16", torch.bfloat16))
                  if config.get(key, {}).get("enabled")), None)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def _process_mean(values: torch.Tensor, world: int) -> torch.Tensor:
    """The mean of a tensor over all processes."""
    values = values.clone()
    torch.distributed.all_reduce(values)
    return values / world


def train_deepspeed(model, config_path: str | Path, train: TrainConfig, *, run_dir: str | Path,
                    resume: bool = False, progress: bool = True, callback=None) -> RunResult:
    """Train `model` as `anyref.train.train` does, through `deepspeed.initialize` with the JSON at `config_path`.

    The global batch of step s is the plain loop's (samples s*B ...), split into micro-batches over processes and
    accumulation steps. Checkpoints go to run_dir/deepspeed every `train.checkpoint_every` steps; `resume` continues
    the newest exactly. `callback(steps_done, result)` runs after every step on every process.
    """
    import deepspeed

    rank, world = init_distributed()
    ds = read_config(config_path)
    train = recipe(ds, train, world=world, path=config_path)
    micro, accumulation = ds["train_micro_batch_size_per_gpu"], ds.get("gradient_accumulation_steps", 1)
    folder = Path(run_dir) / CHECKPOINT_DIR
    settings = {**asdict(train), "deepspeed": ds, "world_size": world}
    if latest_tag(folder) and not resume:
        raise AnyRefCheckpointError(f"{str(folder)!r} already holds a DeepSpeed checkpoint; resume it (--resume) "
                                    "or choose a new run folder")
    model.train()
    optimizer, schedule = make_optimizer(model, Recipe(**{f.name: getattr(train, f.name) for f in fields(Recipe)}))
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=schedule,
                                      config={k: v for k, v in ds.items() if k not in ("optimizer", "scheduler")})
    start, result = 0, RunResult()
    if resume and latest_tag(folder):
        start, result = _resume(engine, folder, rank=rank, world=world, settings=settings)
    else:
        seed_everything(train.seed)
        if rank == 0:
            _describe(model, folder)
    began = time.perf_counter() - result.wall_s
    bar = tqdm(range(start, train.steps), initial=start, total=train.steps, desc="train (deepspeed)",
               disable=not progress or rank != 0)
    for step in bar:
        values = []
        for k in range(accumulation):  # DeepSpeed scales each backward by 1/accumulation and steps on the last
            with _half_inputs(ds, engine.device):
                out = step_loss(engine, micro_batch(step, model, train, micro=micro, index=rank * accumulation + k))
            engine.backward(out["loss"])
            engine.step()
            values.append(torch.stack([out[key].detach().float() for key in ("loss", *LOSS_PARTS)]))
        mean = _process_mean(torch.stack(values).mean(0), world).tolist()
        result.losses.append(mean[0])
        result.parts.append({key: round(value, 5) for key, value in zip(LOSS_PARTS, mean[1:])})
        result.steps, result.wall_s = step + 1, time.perf_counter() - began
        bar.set_postfix(loss=f"{mean[0]:.4f}")
        late = train.time_budget_s is not None and result.wall_s >= train.time_budget_s
        stop = (bool(_process_mean(torch.tensor([float(late)]), world) > 0)
                or (train.stop_after is not None and step + 1 >= train.stop_after))
        if (step + 1) % train.checkpoint_every == 0 or step + 1 == train.steps or stop:
            _save(engine, folder, step=step + 1, rank=rank, result=result, settings=settings)
        if callback is not None:
            callback(step + 1, result)
        if stop:
            break
    with torch.no_grad():  # ZeRO left the weights as views of its flat buffers; give each its own storage again
        for param in model.parameters():
            param.data = param.data.clone()
    model.eval()
    if rank == 0:
        (folder / RESULT_FILE).write_text(json.dumps({**asdict(result), "world_size": world}) + "\n")
    return result


def train_and_save(model, config_path: str | Path, train: TrainConfig, *, run_dir: Path, resume: bool, out: Path,
                   overwrite: bool) -> None:
    """`anyref train --deepspeed`: train, then the first process saves the model to `out`."""
    result = train_deepspeed(model, config_path, train, run_dir=run_dir, resume=resume)
    if torch.distributed.get_rank() == 0:
        model.save_pretrained(out, overwrite=overwrite)
        print(f"trained {result.steps} steps in {result.wall_s:.0f} s through DeepSpeed on "
              f"{torch.distributed.get_world_size()} process(es); final loss {result.losses[-1]:.3f}; saved to {out}")


def export(run_dir: str | Path, out: str | Path, *, tag: str | None = None, overwrite: bool = False) -> Path:
    """The ZeRO checkpoint of a run, consolidated by DeepSpeed's zero_to_fp32, as an AnyRefModel.from_pretrained
    folder (config.json, tokenizer, model.safetensors)."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import AutoTokenizer

    from .config import AnyRefConfig
    from .model import CONFIG_FILE, TOKENIZER_DIR, AnyRefModel

    folder = Path(run_dir) / CHECKPOINT_DIR
    tag = tag or latest_tag(folder)
    if tag is None or not (folder / MODEL_DIR / CONFIG_FILE).is_file():
        raise AnyRefCheckpointError(f"{str(run_dir)!r} holds no DeepSpeed checkpoint of anyref "
                                    f"({CHECKPOINT_DIR}/latest and {CHECKPOINT_DIR}/{MODEL_DIR}/{CONFIG_FILE}); "
                                    "give the --run-dir of `anyref train --deepspeed`")
    verify_checkpoint(folder, tag)
    state = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag=tag)
    model = AnyRefModel(AnyRefConfig.load(folder / MODEL_DIR / CONFIG_FILE),
                        tokenizer=AutoTokenizer.from_pretrained(str(folder / MODEL_DIR / TOKENIZER_DIR)))
    load_checked(model, state, what="DeepSpeed checkpoint", source=folder / tag)
    return model.save_pretrained(out, overwrite=overwrite)


def main(argv: list[str] | None = None) -> int:
    """`python -m anyref.deepspeed_engine export RUN_DIR OUT [--tag global_stepN] [--overwrite]`."""
    parser = argparse.ArgumentParser(prog="python -m anyref.deepspeed_engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("export", help="ZeRO checkpoint -> AnyRefModel.from_pretrained folder (zero_to_fp32)")
    cmd.add_argument("run_dir", help="the --run-dir of `anyref train --deepspeed`")
    cmd.add_argument("out", help="the folder to write")
    cmd.add_argument("--tag", default=None, help="a checkpoint tag (global_stepN); default: the latest")
    cmd.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = export(args.run_dir, args.out, tag=args.tag, overwrite=args.overwrite)
    except (AnyRefCheckpointError, AnyRefConfigError) as error:
        print(f"export: error: {error}", file=sys.stderr)
        return 2
    print(f"exported to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
