"""What every format shares: one error type, file checks that name the file, image/label files, lazy samples."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..data.shapescenes import Scene, SceneObject
from ..errors import AnyRefError


MIN_PIXELS = 2 * 32 * 32  # few-shot (Shaban's filter, kept by PFENet): a class must cover this much of a query


class AnyRefDataError(AnyRefError):
    """A data set folder or one of its files is missing or malformed; the message names the file."""


def require_dir(path, what: str) -> Path:
    """`path` as a Path if it is a folder, else an error naming it."""
    path = Path(path)
    if not path.is_dir():
        raise AnyRefDataError(f"{what} {str(path)!r} is not a folder; check the path (nothing is downloaded: "
                              "the data set must already be on disk in its release layout)")
    return path


def require_file(path, what: str) -> Path:
    """`path` as a Path if it is a file, else an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise AnyRefDataError(f"{what} {str(path)!r} does not exist; the data set's layout expects it there")
    return path


def read_json(path, what: str):
    """A JSON file's content, or an error naming the file."""
    path = require_file(path, what)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnyRefDataError(f"{what} {str(path)!r} is not valid JSON ({error}); re-download or re-export "
                              "it") from None


def _open_image(path, what: str):
    """A PIL image, fully loaded, or an error naming the file."""
    from PIL import Image, UnidentifiedImageError

    path = require_file(path, what)
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise AnyRefDataError(f"{what} {str(path)!r} cannot be decoded ({error}); the file is corrupt or not an "
                              "image") from None


def read_image(path, what: str = "image") -> np.ndarray:
    """An image file as uint8 RGB (H, W, 3)."""
    return np.array(_open_image(path, what).convert("RGB"))  # writable: torch.from_numpy warns on read-only arrays


def read_label(path, what: str = "label") -> np.ndarray:
    """A mask or class-label PNG as uint8 (H, W): palette indices for 'P' files, grey values otherwise."""
    image = _open_image(path, what)
    if image.mode not in ("P", "L"):
        image = image.convert("L")
    return np.array(image, dtype=np.uint8)


def new_file(path) -> Path:
    """`path` as a Path, its folder made, or an error if a file is already there (exporters never overwrite)."""
    path = Path(path)
    if path.exists():
        raise AnyRefDataError(f"{str(path)!r} already exists; exporters never overwrite files: export each data set "
                              "into a new or empty folder (or delete the old copy first)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_png(path, array: np.ndarray, *, palette: bool = False) -> None:
    """Write uint8 (H, W, 3) RGB or (H, W) grey (or palette indices with palette=True) as a new PNG file."""
    from PIL import Image

    path = new_file(path)
    image = Image.fromarray(np.ascontiguousarray(array))
    if palette:
        image.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)  # grey values become indices: 0 black, 1 white
    image.save(path)


def check_size(shape: tuple[int, ...], expected: tuple[int, int], path, what: str) -> None:
    """An error naming the file unless its (H, W) is the expected one."""
    if tuple(shape[:2]) != tuple(expected):
        raise AnyRefDataError(f"{what} {str(path)!r} is {shape[1]}x{shape[0]} pixels but its image is "
                              f"{expected[1]}x{expected[0]}; masks must have their image's size")


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """Tight (x1, y1, x2, y2) box of an (H, W) bool mask, x2/y2 exclusive; (0, 0, 0, 0) when it is empty."""
    cols, rows = np.flatnonzero(mask.any(0)), np.flatnonzero(mask.any(1))
    if not len(cols):
        return 0.0, 0.0, 0.0, 0.0
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def scene_from_masks(image: np.ndarray, objects: list[tuple[str, np.ndarray, tuple]]) -> Scene:
    """A Scene of a real image: (class name, (H, W) bool mask, box or None) per annotated object.

    Real data carry no ShapeScenes colour or size, so those stay empty; a missing box is the mask's tight box.
    """
    made = []
    for name, mask, box in objects:
        x1, y1, x2, y2 = mask_box(mask) if box is None else box
        made.append(SceneObject(name, "", "", (0.5 * (x1 + x2), 0.5 * (y1 + y2)), (x1, y1, x2, y2), mask))
    return Scene(image, made)


def check_choice(value: str, choices, what: str) -> str:
    """`value` if it is one of `choices`, else an error listing them."""
    if value not in choices:
        raise AnyRefDataError(f"unknown {what} {value!r}; choose one of {tuple(choices)}")
    return value


class LazySamples(Sequence):
    """A split's samples, each built from its key when asked for, so a whole split never sits in memory."""

    def __init__(self, keys: Sequence, build: Callable):
        self.keys, self.build = list(keys), build

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, index: int):
        return self.build(self.keys[index])

    def __iter__(self):
        return (self.build(key) for key in self.keys)  # not Sequence's: an IndexError while building must surface


def limited(keys: list, limit: int | None) -> list:
    """The first `limit` keys (all when None); a limit below 1 is an error."""
    if limit is None:
        return keys
    if not isinstance(limit, int) or limit < 1:
        raise AnyRefDataError(f"limit must be a positive int, got {limit!r}")
    return keys[:limit]
