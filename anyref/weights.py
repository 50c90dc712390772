"""Shipped ingredient weights: a folder with config.json (+ any metrics) and model.safetensors (no pickle)."""
from __future__ import annotations

import json
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
