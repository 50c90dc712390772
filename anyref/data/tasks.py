"""ShapeScenes samples for every task of the paper's Section 4, with the supplement's (6.2) question templates.

general = class prompts, text = referring expressions (RefCOCO), reg = region description (RefCOCOg REG),
image = example-image referring (COCO-20i one/few-shot), audio = one sounding shape (AVSBench S4),
audio_multi = two shapes sounding together (AVSBench MS3).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import referring
from ..config import MINI_IMAGE_SIZE
from ..errors import AnyRefInputError
from ..referring import MIN_BOX_PX, Audio, Example, Region, check_box
from ..tokens import AUDIO_QUESTION, EXAMPLE_QUESTION, REGION_QUESTION, segment_answer, segment_question
from . import sounds
from .crops import object_crop
from .shapescenes import SPLIT_ID, ReferringSample, Scene, class_prompts, make_sample, make_scene, split_samples

TASKS = ("general", "text", "reg", "image", "audio", "audio_multi")
DEFAULT_MIX = (("general", 0.15), ("text", 0.35), ("reg", 0.15), ("image", 0.15), ("audio", 0.12),
               ("audio_multi", 0.08))
TRAIN_STREAM, SPLIT_STREAM = 50, 51  # SeedSequence streams: [50, seed, index], [51, task, split, index]
TEXT_KINDS = ("attribute", "spatial")
MAX_JITTER = 0.5  # box_jitter above this could move a side past the opposite one
EXAMPLE_SIZE = 32  # side of an (unmasked) example crop, as audio-mini's crops
SOUND_SEEDS = 2**31  # sound seeds are drawn from [0, SOUND_SEEDS)
# Options each task's builder takes, and what evaluation splits fix them to unless told otherwise.
OPTIONS = {"general": (), "text": ("kind",), "reg": ("box_jitter",), "image": ("mask_crop", "shots"), "audio": (),
           "audio_multi": ()}
EVAL_OPTIONS = {"reg": {"box_jitter": 0.0}, "image": {"mask_crop": False}}


@dataclass(frozen=True, eq=False)
class TaskSample:
    """A query scene, a question quoting its references, the answer and one mask per `<obj>` in it."""

    task: str
    scene: Scene  # the query scene; its image is uint8 (H, W, 3)
    question: str  # one "<img.ref></img.ref>" / "<aud.ref></aud.ref>" span per reference (few-shot: one span)
    answer: str  # e.g. "the large red circle <obj>."
    masks: np.ndarray | None  # (N, H, W) bool, one per <obj> in the answer
    references: tuple  # Region / Example / Audio, in the order of the spans in `question`
    target_text: str  # the words before <obj>: REG ground truth, class name(s) or expression


def _check_count(name: str, value) -> None:
    """Raise AnyRefInputError unless value is a non-negative int (SeedSequence entries must be)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 0:
        raise AnyRefInputError(f"{name} must be a non-negative int, got {value!r}")


def _check_task(task: str) -> None:
    """Raise AnyRefInputError unless task is one of TASKS."""
    if task not in TASKS:
        raise AnyRefInputError(f"unknown task {task!r}; tasks are {TASKS}")


def _check_mix(mix) -> tuple[list[str], np.ndarray]:
    """Task names and normalised weights (K,) of a mix of (task, weight) pairs."""
    try:
        names, weights = [name for name, _ in mix], np.array([weight for _, weight in mix], dtype=float)  # (K,)
    except (TypeError, ValueError):
        raise AnyRefInputError(f"mix is a sequence of (task, weight) pairs, got {mix!r}") from None
    unknown = sorted({name for name in names if name not in TASKS})
    if unknown:
        raise AnyRefInputError(f"unknown task(s) {unknown} in mix; tasks are {TASKS}")
    if not names or not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
        raise AnyRefInputError(f"mix needs non-negative weights with a positive sum, got {mix!r}")
    return names, weights / weights.sum()


def parse_mix(items: list[str], *, flag: str = "--tasks") -> tuple:
    """Command-line `task=weight` strings -> a mix of (task, weight) pairs; no strings -> DEFAULT_MIX."""
    if not items:
        return DEFAULT_MIX
    mix = []
    for item in items:
        name, _, weight = item.partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = math.nan
        if name not in TASKS or not math.isfinite(value) or value < 0:
            raise AnyRefInputError(f"{flag} takes task=weight pairs (a weight >= 0) with tasks from {TASKS}, "
                                   f"got {item!r}")
        mix.append((name, value))
    _check_mix(mix)
    return tuple(mix)


def _union(scene: Scene, indices) -> np.ndarray:
    """One mask, the union of the given objects: (1, H, W) bool."""
    return scene.masks[list(indices)].any(axis=0)[None]  # (1, H, W)


def _segment(task: str, scene: Scene, question: str, target: str, indices, references: tuple = ()) -> TaskSample:
    """A sample whose answer is "{target} <obj>." with the union of `indices` as its mask."""
    return TaskSample(task, scene, question, segment_answer(target), _union(scene, indices), references, target)


def _pick_class(rng: np.random.Generator, scene: Scene) -> tuple[str, tuple[int, ...]]:
    """A shape class present in the scene, uniformly, with the indices of its instances."""
    prompts = class_prompts(scene)
    return prompts[rng.integers(len(prompts))]


def _from_referring(sample: ReferringSample) -> TaskSample:
    """A text-referring TaskSample from a ShapeScenes ReferringSample."""
    expression = sample.expression
    return _segment("text", sample.scene, segment_question(expression), expression, sample.targets)


def _general(rng: np.random.Generator, image_size: int) -> TaskSample:
    """A class prompt: every instance of one shape present."""
    scene = make_scene(rng, image_size=image_size)
    shape, indices = _pick_class(rng, scene)
    return _segment("general", scene, segment_question(shape), shape, indices)


def _text(rng: np.random.Generator, image_size: int, *, kind: str | None = None) -> TaskSample:
    """An attribute or spatial referring expression (kind None: either, equally likely)."""
    if kind is None:
        kind = TEXT_KINDS[rng.integers(len(TEXT_KINDS))]
    if kind not in TEXT_KINDS:
        raise AnyRefInputError(f"text samples are of kind {TEXT_KINDS}, got {kind!r} (class prompts are 'general')")
    return _from_referring(make_sample(rng, kind=kind, image_size=image_size))


def _jitter_box(rng: np.random.Generator, box, jitter: float, image_size: int) -> tuple[float, float, float, float]:
    """Each side moved by up to jitter x the box's size, clipped to the image; a too-thin axis keeps its sides."""
    box = np.array(box, dtype=float)  # (4,) x1, y1, x2, y2
    size = np.tile(box[2:] - box[:2], 2)  # (4,) w, h, w, h
    moved = np.clip(box + jitter * size * rng.uniform(-1.0, 1.0, size=4), 0.0, image_size)  # (4,)
    thin = np.tile(moved[2:] - moved[:2] < MIN_BOX_PX, 2)  # (4,) bool
    return check_box(np.where(thin, box, moved), height=image_size, width=image_size)


def _reg(rng: np.random.Generator, image_size: int, *, box_jitter: float = 0.1) -> TaskSample:
    """Region description: a (jittered) box around one object -> "the {size} {colour} {shape} <obj>."."""
    if not 0.0 <= box_jitter <= MAX_JITTER:
        raise AnyRefInputError(f"box_jitter must be in [0, {MAX_JITTER}] (a fraction of the box size), "
                               f"got {box_jitter!r}")
    scene = make_scene(rng, image_size=image_size)
    obj = scene.objects[rng.integers(len(scene.objects))]
    region = Region(_jitter_box(rng, obj.box, box_jitter, image_size))
    description = f"the {obj.size} {obj.colour} {obj.shape}"
    return TaskSample("reg", scene, REGION_QUESTION, segment_answer(description), obj.mask[None], (region,), description)


def _example(rng: np.random.Generator, shape: str, image_size: int, masked: bool) -> np.ndarray:
    """An example of `shape` from a fresh scene: a padded 32 px square crop, or its mask crop (black outside)."""
    while True:
        scene = make_scene(rng, image_size=image_size)
        instances = [i for i, obj in enumerate(scene.objects) if obj.shape == shape]
        if instances:
            break
    index = instances[rng.integers(len(instances))]
    if masked:
        return referring.mask_crop(scene.image, scene.objects[index].mask)  # (h, w, 3) uint8
    return object_crop(scene, index, size=EXAMPLE_SIZE)  # (32, 32, 3) uint8


def _image(rng: np.random.Generator, image_size: int, *, mask_crop: bool | None = None, shots: int = 1) -> TaskSample:
    """Example-image referring: `shots` examples of a class, each from its own scene (mask_crop None: a coin flip)."""
    if not isinstance(shots, (int, np.integer)) or isinstance(shots, bool) or shots < 1:
        raise AnyRefInputError(f"shots must be a positive int, got {shots!r}")
    if mask_crop is not None and not isinstance(mask_crop, (bool, np.bool_)):
        raise AnyRefInputError(f"mask_crop must be True, False or None (random), got {mask_crop!r}")
    scene = make_scene(rng, image_size=image_size)
    shape, indices = _pick_class(rng, scene)
    masked = bool(rng.random() < 0.5) if mask_crop is None else bool(mask_crop)
    examples = tuple(Example(_example(rng, shape, image_size, masked)) for _ in range(shots))
    return _segment("image", scene, EXAMPLE_QUESTION, shape, indices, examples)


def _audio(rng: np.random.Generator, image_size: int) -> TaskSample:
    """Single-source audio referring: the sound of one shape class present."""
    scene = make_scene(rng, image_size=image_size)
    shape, indices = _pick_class(rng, scene)
    wave = sounds.sound_for(shape, seed=int(rng.integers(SOUND_SEEDS)), index=0)  # (T,)
    return _segment("audio", scene, AUDIO_QUESTION, shape, indices, (Audio(wave),))


def _audio_multi(rng: np.random.Generator, image_size: int) -> TaskSample:
    """Multi-source audio referring: two shape classes sounding together, one mask over both."""
    while True:
        scene = make_scene(rng, image_size=image_size)
        prompts = class_prompts(scene)
        if len(prompts) >= 2:
            break
    first, second = sorted(rng.choice(len(prompts), size=2, replace=False))
    (shape_a, indices_a), (shape_b, indices_b) = prompts[first], prompts[second]  # in SHAPES order
    seed = int(rng.integers(SOUND_SEEDS))
    wave = sounds.mix(sounds.sound_for(shape_a, seed=seed, index=0), sounds.sound_for(shape_b, seed=seed, index=1))
    return _segment("audio_multi", scene, AUDIO_QUESTION, f"{shape_a} and {shape_b}", indices_a + indices_b,
                    (Audio(wave),))


BUILDERS = {"general": _general, "text": _text, "reg": _reg, "image": _image, "audio": _audio,
            "audio_multi": _audio_multi}


def make_task(rng: np.random.Generator, task: str, *, image_size: int = MINI_IMAGE_SIZE, **options) -> TaskSample:
    """One sample of a task; options: text `kind`, reg `box_jitter` (0.1), image `mask_crop` (None) and `shots` (1)."""
    _check_task(task)
    unknown = sorted(set(options) - set(OPTIONS[task]))
    if unknown:
        raise AnyRefInputError(f"task {task!r} takes no option(s) {unknown}; its options are {OPTIONS[task]}")
    return BUILDERS[task](rng, image_size, **options)


def task_sample(index: int, *, seed: int, image_size: int = MINI_IMAGE_SIZE, mix=DEFAULT_MIX) -> TaskSample:
    """Training sample fully determined by (seed, index); its task is drawn from mix."""
    _check_count("index", index)
    _check_count("seed", seed)
    names, weights = _check_mix(mix)
    rng = np.random.default_rng(np.random.SeedSequence([TRAIN_STREAM, seed, index]))
    return make_task(rng, names[rng.choice(len(names), p=weights)], image_size=image_size)


def task_split(task: str, split: str, *, num: int = 50, image_size: int = MINI_IMAGE_SIZE,
               **options) -> list[TaskSample]:
    """Fixed evaluation samples of a task and split ("val", "testA", "testB"), identical on every call.

    text wraps `split_samples` (val alternates attribute/spatial, testA attribute, testB spatial); the other tasks
    draw from their own stream. Evaluation defaults: reg box_jitter=0, image mask_crop=False and one shot.
    """
    _check_task(task)
    if split not in SPLIT_ID:
        raise AnyRefInputError(f"unknown split {split!r}; valid splits are {tuple(SPLIT_ID)}")
    _check_count("num", num)
    if task == "text":
        if options:
            raise AnyRefInputError(f"text splits take no options (the split fixes the kind), got {sorted(options)}")
        return [_from_referring(sample) for sample in split_samples(split, num=num, image_size=image_size)]
    options = {**EVAL_OPTIONS.get(task, {}), **options}
    keys = (SPLIT_STREAM, TASKS.index(task), SPLIT_ID[split])
    return [make_task(np.random.default_rng(np.random.SeedSequence([*keys, i])), task, image_size=image_size,
                      **options) for i in range(num)]


def image_split(split: str, *, num: int, shots: int, mask_crop: bool,
                image_size: int = MINI_IMAGE_SIZE) -> list[TaskSample]:
    """Few-shot example-image evaluation: `shots` Examples per sample, one span in the question.

    The evaluator runs the model once per example and averages the masks (the paper's few-shot protocol). The query
    scenes do not depend on `shots`, and a k-shot sample's examples start with the (k-1)-shot sample's.
    """
    return task_split("image", split, num=num, image_size=image_size, mask_crop=mask_crop, shots=shots)
