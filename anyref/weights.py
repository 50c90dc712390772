"""Weight files read without running code: ingredient folders (config.json, model.safetensors), .safetensors and
.pth state dicts, transformers folders; a damaged or hostile file is an AnyRefCheckpointError that names it."""
from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

from .errors import AnyRefCheckpointError
from .paths import INGREDIENTS_DIR

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


def ingredient_dir(name: str) -> Path:
    """Where the shipped weights of an ingredient ("clip-mini", "sam-mini", ...) live."""
    return INGREDIENTS_DIR / name


def check_writable(folder: str | Path, *, overwrite: bool) -> None:
    """Refuse a folder that already holds files unless overwriting was asked for."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise AnyRefCheckpointError(f"{str(folder)!r} already holds weights; pass overwrite=True "
                                    "(--overwrite) to replace them, or choose another folder")


def fresh_folder(folder: str | Path, *, overwrite: bool) -> Path:
    """An empty folder to save into: created, or emptied when overwriting was asked for."""
    folder = Path(folder)
    check_writable(folder, overwrite=overwrite)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def save_ingredient(module, config: dict, folder: str | Path, *, overwrite: bool = False) -> Path:
    """Write config.json and model.safetensors, refusing to replace an existing folder unless asked."""
    from safetensors.torch import save_model

    folder = fresh_folder(folder, overwrite=overwrite)
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    save_model(module, str(folder / WEIGHTS_FILE))
    return folder


def read_config(folder: str | Path) -> dict:
    """config.json of an ingredient folder, with a clear error when the folder is not one."""
    folder = Path(folder)
    missing = [name for name in (CONFIG_FILE, WEIGHTS_FILE) if not (folder / name).is_file()]
    if missing:
        raise AnyRefCheckpointError(f"{str(folder)!r} is not an ingredient folder (missing {missing}); "
                                    "train one with `anyref pretrain ...` or restore data/ingredients from git")
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AnyRefCheckpointError(f"{str(folder / CONFIG_FILE)!r} is not a JSON file ({error}); restore the "
                                    "ingredient folder from git or train it again with `anyref pretrain ...`") from None
    if not isinstance(config, dict):
        raise AnyRefCheckpointError(f"{str(folder / CONFIG_FILE)!r} holds no JSON object; restore the ingredient "
                                    "folder from git or train it again with `anyref pretrain ...`")
    return config


def load_weights(module, folder: str | Path) -> None:
    """Load model.safetensors into a module of the matching configuration."""
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    read_config(folder)
    path = Path(folder) / WEIGHTS_FILE
    try:
        load_model(module, str(path), strict=True)
    except SafetensorError as error:
        raise AnyRefCheckpointError(f"{str(path)!r} is not a safetensors file ({error}); restore the ingredient "
                                    "folder from git or train it again with `anyref pretrain ...`") from None
    except RuntimeError as error:
        raise AnyRefCheckpointError(f"weights in {str(folder)!r} do not match the module: {error}") from None


def read_safetensors(path: str | Path, what: str) -> dict:
    """The tensors of a .safetensors file (`what` names it in errors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise AnyRefCheckpointError(f"{what} {str(path)!r} is not a readable safetensors file ({error}); it is "
                                    "damaged or of another format: replace it with the original file") from None


def read_state_dict(path: str | Path, what: str) -> dict:
    """A plain state dict from a .pth file, loaded with torch.load(weights_only=True): a pickle cannot run code."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise AnyRefCheckpointError(f"{what} {str(path)!r} is not a plain state dict ({first[:200]}); it was "
                                    "refused and nothing in it ran: replace it with the original file") from None
    if not isinstance(state, dict):
        raise AnyRefCheckpointError(f"{what} {str(path)!r} holds a {type(state).__name__}, not a state dict")
    return state


def from_pretrained_folder(load, folder: Path, what: str):
    """`load()` a transformers model from `folder`, naming the folder's weights file when it cannot be read."""
    from safetensors import SafetensorError

    try:
        return load()
    except (SafetensorError, OSError, pickle.UnpicklingError, EOFError) as error:
        files = [name for name in ("model.safetensors", "pytorch_model.bin") if (folder / name).exists()]
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise AnyRefCheckpointError(f"{what} {str(folder)!r} cannot be loaded from {files or 'its files'} "
                                    f"({first[:200]}); nothing in it ran: restore the folder or train it again"
                                    ) from None
