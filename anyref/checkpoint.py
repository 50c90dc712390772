"""Training checkpoints that hold no pickle: tensors in safetensors, the rest in JSON, a manifest, an atomic switch.

A checkpoint folder holds `latest` (the name of the newest complete checkpoint) and `step-NNNNNN/` folders. Each is
written as `step-NNNNNN.partial/` (weights, trainer state, then manifest.json with every file's size and sha256 and
the step), renamed when complete, and only then named in `latest` (a temporary file moved over it). Resuming
verifies the manifest; a damaged checkpoint falls back to the previous complete one, with a warning on stderr.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from .errors import AnyRefCheckpointError

FORMAT = "anyref-checkpoint/1"
LATEST, MANIFEST = "latest", "manifest.json"
WEIGHTS, TENSORS, STATE = "trainable.safetensors", "trainer_state.safetensors", "trainer_state.json"
LEGACY_STATE = "trainer_state.pt"  # the pickled format of earlier versions, never loaded
KEEP = 2  # complete checkpoints kept
STEP_NAME = re.compile(r"step-(\d{6,})")
TORCH_RNG = "rng.torch"
STATE_KEYS = {"format", "step", "settings", "history", "schedule", "optimizer", "numpy_rng", "python_rng",
              "frozen_fingerprint"}


def step_name(step: int) -> str:
    """The folder name of the checkpoint after `step` steps."""
    return f"step-{step:06d}"


def frozen_fingerprint(module) -> float:
    """A checksum of the frozen weights, which checkpoints do not store (they come from init or pretrained files)."""
    with torch.no_grad():
        return float(sum(p.double().abs().sum() for p in module.parameters() if not p.requires_grad))


# ---- writing ---------------------------------------------------------------------------------------------------------
def _file_op(action, *args, **kwargs):
    """Every change the writer makes to the file system goes through here (tests inject kills between them)."""
    return action(*args, **kwargs)


def _write(path: Path, data: bytes) -> None:
    """Write `data` to `path` and flush it to disk."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _json_bytes(value) -> bytes:
    return (json.dumps(value, indent=1) + "\n").encode()


def _pack_optimizer(optimizer) -> tuple[dict, dict]:
    """An optimizer state dict as (tensors by name, JSON layout: param groups and each state value's tensor name)."""
    saved = optimizer.state_dict()
    tensors, layout = {}, {}
    for index, values in saved["state"].items():
        layout[str(index)] = {}
        for key, value in values.items():
            if torch.is_tensor(value):
                name = f"optimizer.{index}.{key}"
                tensors[name] = value.detach().cpu().contiguous()
                layout[str(index)][key] = {"tensor": name}
            else:
                layout[str(index)][key] = {"value": value}
    return tensors, {"param_groups": saved["param_groups"], "state": layout}


def save_checkpoint(folder: Path, module, optimizer, schedule, *, step: int, history: dict, settings: dict) -> Path:
    """Write the checkpoint after `step` steps (trainable weights, optimizer, schedule, RNGs, `history`, `settings`)."""
    from safetensors.torch import save

    folder = Path(folder)
    _file_op(Path.mkdir, folder, parents=True, exist_ok=True)
    optimizer_tensors, optimizer_layout = _pack_optimizer(optimizer)
    numpy_rng = np.random.get_state()
    state = {"format": FORMAT, "step": step, "settings": settings, "history": history,
             "schedule": schedule.state_dict(), "optimizer": optimizer_layout,
             "numpy_rng": [numpy_rng[0], numpy_rng[1].tolist(), *numpy_rng[2:]], "python_rng": random.getstate(),
             "frozen_fingerprint": frozen_fingerprint(module)}
    contents = {WEIGHTS: save({n: p.detach().cpu().contiguous() for n, p in module.named_parameters()
                               if p.requires_grad}),
                TENSORS: save({**optimizer_tensors, TORCH_RNG: torch.get_rng_state()}),
                STATE: _json_bytes(state)}
    manifest = {"format": FORMAT, "step": step,
                "files": {name: {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                          for name, data in contents.items()}}
    final = folder / step_name(step)
    partial = final.with_name(final.name + ".partial")
    if partial.exists():
        _file_op(shutil.rmtree, partial)
    _file_op(Path.mkdir, partial)
    for name, data in contents.items():
        _file_op(_write, partial / name, data)
    _file_op(_write, partial / MANIFEST, _json_bytes(manifest))  # last: a folder with a manifest is complete
    if final.exists():  # left by an interrupted or abandoned run; `latest` does not name it
        _file_op(shutil.rmtree, final)
    _file_op(os.replace, partial, final)
    _file_op(_write, folder / (LATEST + ".tmp"), (final.name + "\n").encode())
    _file_op(os.replace, folder / (LATEST + ".tmp"), folder / LATEST)  # the switch: one atomic rename
    _prune(folder, keep_from=step)
    return final


def _prune(folder: Path, *, keep_from: int) -> None:
    """Delete every step folder except the checkpoint at `keep_from` and the newest complete ones before it."""
    older = [path for path in _complete(folder) if _step_of(path) < keep_from][:KEEP - 1]
    keep = {folder / step_name(keep_from), *older}
    for path in sorted(folder.glob("step-*")):
        if path in keep or not path.is_dir():
            continue
        doomed = path
        if STEP_NAME.fullmatch(path.name):  # hide it first: a half-deleted folder must not look complete
            doomed = path.with_name(path.name + ".deleting")
            if doomed.exists():  # left by an earlier kill
                _file_op(shutil.rmtree, doomed)
            _file_op(os.replace, path, doomed)
        if doomed.exists():
            _file_op(shutil.rmtree, doomed)


# ---- reading ---------------------------------------------------------------------------------------------------------
def _step_of(path: Path) -> int:
    return int(STEP_NAME.fullmatch(path.name).group(1))


def _complete(folder: Path) -> list[Path]:
    """Step folders that hold a manifest, newest first."""
    found = [p for p in folder.glob("step-*") if STEP_NAME.fullmatch(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=_step_of, reverse=True)


def _damaged(path: Path, problem: str) -> AnyRefCheckpointError:
    return AnyRefCheckpointError(f"checkpoint file {str(path)!r} {problem}; the checkpoint is damaged or was "
                                 "changed after it was written")


def _read_json(path: Path, data: bytes | None = None):
    try:
        return json.loads(path.read_bytes() if data is None else data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _damaged(path, f"cannot be read as JSON ({error})") from None


def read_verified(checkpoint: Path) -> dict[str, bytes]:
    """The files of a checkpoint folder, after checking them against its manifest (sizes, sha256, step)."""
    manifest = _read_json(checkpoint / MANIFEST)
    step = _step_of(checkpoint)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("step") != step:
        raise _damaged(checkpoint / MANIFEST, f"is not a {FORMAT} manifest for step {step}")
    files = manifest.get("files")
    if (not isinstance(files, dict) or set(files) != {WEIGHTS, TENSORS, STATE}
            or not all(isinstance(entry, dict) for entry in files.values())):
        raise _damaged(checkpoint / MANIFEST, f"does not list exactly {[WEIGHTS, TENSORS, STATE]}")
    contents = {}
    for name, expected in files.items():
        path = checkpoint / name
        try:
            data = path.read_bytes()
        except OSError as error:
            raise _damaged(path, f"cannot be read ({error.strerror})") from None
        if len(data) != expected.get("bytes") or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise _damaged(path, f"has {len(data)} bytes and a sha256 other than manifest.json lists")
        contents[name] = data
    state = _read_json(checkpoint / STATE, contents[STATE])
    if not isinstance(state, dict) or state.get("step") != step or not STATE_KEYS <= set(state):
        raise _damaged(checkpoint / STATE, f"is not the trainer state of step {step}")
    return contents


def _pointed(folder: Path) -> Path:
    """The checkpoint folder that `latest` names."""
    try:
        name = (folder / LATEST).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise _damaged(folder / LATEST, f"cannot be read ({error})") from None
    if not STEP_NAME.fullmatch(name):
        raise _damaged(folder / LATEST, f"does not name a step folder ({name[:40]!r})")
    return folder / name


def newest_verified(folder: Path) -> tuple[Path, dict[str, bytes]]:
    """The checkpoint `latest` names, verified; if it is damaged, the newest older complete one (said on stderr)."""
    folder, pointed = Path(folder), None
    try:
        pointed = _pointed(folder)
        return pointed, read_verified(pointed)
    except AnyRefCheckpointError as error:
        first = error
    for candidate in _complete(folder):
        if pointed is not None and _step_of(candidate) >= _step_of(pointed):
            continue
        try:
            contents = read_verified(candidate)
        except AnyRefCheckpointError as error:
            print(f"warning: {error}; skipping it", file=sys.stderr)
            continue
        print(f"warning: {first}; resuming from the previous complete checkpoint {str(candidate)!r} instead",
              file=sys.stderr)
        return candidate, contents
    raise AnyRefCheckpointError(f"{first}; no earlier complete checkpoint in {str(folder)!r} to fall back to: "
                                "start a new run folder") from None


def _legacy_error(folder: Path) -> AnyRefCheckpointError:
    return AnyRefCheckpointError(f"{str(folder / LEGACY_STATE)!r} is a pickled checkpoint of an earlier version, "
                                 "which is never loaded (unpickling a file can run code); start a new run folder")


def check_resumable(folder: Path | None, *, resume: bool) -> bool:
    """Whether `folder` holds a checkpoint to continue; one that exists without `resume` is an error."""
    if folder is None:
        return False
    if (folder / LEGACY_STATE).exists():
        raise _legacy_error(folder)
    if not (folder / LATEST).exists():
        return False
    if not resume:
        raise AnyRefCheckpointError(f"{str(folder)!r} already holds a checkpoint; resume it (resume=True / "
                                    "--resume) or choose a new run folder")
    return True


def _restore(optimizer, schedule, state: dict, tensors: dict) -> None:
    """Load the optimizer, schedule and RNG states that `save_checkpoint` split into JSON `state` and `tensors`."""
    layout = state["optimizer"]
    optimizer_state = {int(index): {key: tensors[entry["tensor"]] if "tensor" in entry else entry["value"]
                                    for key, entry in values.items()} for index, values in layout["state"].items()}
    groups = [{key: tuple(value) if isinstance(current.get(key), tuple) else value for key, value in saved.items()}
              for saved, current in zip(layout["param_groups"], optimizer.param_groups)]
    optimizer.load_state_dict({"state": optimizer_state, "param_groups": groups})
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(tensors[TORCH_RNG])
    name, keys, *rest = state["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    version, internal, gauss = state["python_rng"]
    random.setstate((version, tuple(internal), gauss))


def _tensors(path: Path, data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file's bytes."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        return load(data)
    except SafetensorError as error:
        raise _damaged(path, f"is not a safetensors file ({error})") from None


def load_checkpoint(folder: Path, module, optimizer, schedule, settings: dict, *, may_change=()) -> tuple[int, dict]:
    """Restore the newest verified checkpoint made with the same `settings` (but `may_change`); (step, history)."""
    checkpoint, contents = newest_verified(folder)
    state = json.loads(contents[STATE])
    saved = {k: v for k, v in state["settings"].items() if k not in may_change}
    current = {k: v for k, v in settings.items() if k in saved}
    if json.dumps(saved, default=list) != json.dumps(current, default=list):
        raise AnyRefCheckpointError(f"checkpoint in {str(checkpoint)!r} was made with other settings {saved}; "
                                    f"resume with the same settings or start a new run folder")
    expected, actual = state["frozen_fingerprint"], frozen_fingerprint(module)
    if abs(expected - actual) > 1e-6 * max(1.0, abs(expected)):
        raise AnyRefCheckpointError(f"the model's frozen weights differ from those the checkpoint in "
                                    f"{str(checkpoint)!r} was trained with; build the model with the same seed / "
                                    "pretrained files")
    weights = _tensors(checkpoint / WEIGHTS, contents[WEIGHTS])
    tensors = _tensors(checkpoint / TENSORS, contents[TENSORS])
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if set(weights) != set(params) or any(weights[n].shape != p.shape for n, p in params.items() if n in weights):
        odd = sorted(set(weights) ^ set(params)) or [n for n in params if weights[n].shape != params[n].shape]
        raise AnyRefCheckpointError(f"weights in {str(checkpoint / WEIGHTS)!r} do not match this model's trainable "
                                    f"parameters (e.g. {odd[:3]}); resume with the same model or start a new run folder")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    try:
        _restore(optimizer, schedule, state, tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise AnyRefCheckpointError(f"the trainer state in {str(checkpoint)!r} does not fit this run ({error!r}); "
                                    "resume with the same model or start a new run folder") from None
    return state["step"], state["history"]
