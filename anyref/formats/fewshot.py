"""PASCAL-5i and COCO-20i few-shot folds (HSNet / PFENet conventions), read as seeded episodes, written, scored.

    ROOT/VOC2012/JPEGImages/<name>.jpg + ROOT/VOC2012/SegmentationClassAug/<name>.png      class ids 1..20
    ROOT/COCO2014/val2014/<file>.jpg + ROOT/COCO2014/annotations/val2014/<file>.png        class ids 1..80
    (label PNGs: 0 background, 255 ignored)
  and the fold's query list, HSNet's or PFENet's:
    ROOT/splits/pascal/val/fold{i}.txt        HSNet: "<name>__<class>" per line
    ROOT/splits/coco/val/fold{i}.pkl          HSNet: pickled {class - 1: ["val2014/<file>.jpg", ...]}
    ROOT/lists/pascal/val.txt, ROOT/lists/coco/val_data_list.txt
                                              PFENet: "<image> <label>" per line, relative to VOC2012 / COCO2014;
                                              an image queries every fold class covering >= min_pixels of it

Fold i tests PASCAL classes 5i+1..5i+5 and COCO classes i+1, i+5, ..., i+77 (the interleaved split of HSNet and
PFENet's use_split_coco). An episode is a (query image, class) pair and `shots` other images of the class, drawn
with a fixed seed. A support becomes an Example: a crop around its largest region of the class, or with
mask_crop that region alone on black (Table 3's dagger). Scores: per-class IoU (foreground, summed over the
class's episodes) averaged over classes (mIoU) and FB-IoU, with ignored pixels left out, as HSNet and PFENet do.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..data.crops import object_crop
from ..data.shapescenes import SHAPES, Scene
from ..data.tasks import EXAMPLE_SIZE, TaskSample
from ..evaluate import as_answerer, union_mask
from ..metrics import IoUMeter
from ..referring import Example, mask_crop
from ..tokens import EXAMPLE_QUESTION, segment_answer
from .common import (MIN_PIXELS, AnyRefDataError, LazySamples, check_choice, check_size, limited, read_image,
                     new_file, read_label, require_dir, require_file, scene_from_masks, write_png)
from .safe_pickle import load_plain_pickle

IGNORE = 255


@dataclass(frozen=True)
class Benchmark:
    """Where a few-shot benchmark keeps its files and how its folds split the classes."""

    folder: str
    classes: int
    interleaved: bool  # COCO-20i: fold i holds i+1, i+5, ...; PASCAL-5i: a run of consecutive ids
    hsnet: str  # HSNet's query list of a fold, under ROOT
    pfenet: str  # PFENet's list, under ROOT
    image: str  # where the exporter puts image {i}, under the data folder
    label: str
    folds: int = 4

    def fold_classes(self, fold: int) -> tuple[int, ...]:
        """The class ids (1-based) a fold tests."""
        if not isinstance(fold, int) or not 0 <= fold < self.folds:
            raise AnyRefDataError(f"fold {fold!r} is out of range; the folds are 0..{self.folds - 1}")
        per_fold = self.classes // self.folds
        if self.interleaved:
            return tuple(fold + 1 + self.folds * k for k in range(per_fold))
        return tuple(fold * per_fold + 1 + k for k in range(per_fold))


BENCHMARKS = {
    "pascal5i": Benchmark("VOC2012", 20, False, "splits/pascal/val/fold{fold}.txt", "lists/pascal/val.txt",
                          "JPEGImages/shapes_{i:06d}.png", "SegmentationClassAug/shapes_{i:06d}.png"),
    "coco20i": Benchmark("COCO2014", 80, True, "splits/coco/val/fold{fold}.pkl", "lists/coco/val_data_list.txt",
                         "val2014/COCO_val2014_{i:012d}.png", "annotations/val2014/COCO_val2014_{i:012d}.png"),
}


@dataclass
class FoldData:
    """One fold's queries: (name, class) pairs in list order, and name -> (image, label)."""

    pairs: list[tuple[str, int]]
    load: Callable[[str], tuple[np.ndarray, np.ndarray]]


def _scan(names: list[str], label_of: Callable, classes: tuple[int, ...], min_pixels: int) -> list[tuple[str, int]]:
    """PFENet's rule: an image queries each fold class that covers at least min_pixels of its label."""
    pairs = []
    for name in names:
        counts = np.bincount(label_of(name).ravel(), minlength=256)  # (256,)
        pairs += [(name, c) for c in classes if counts[c] >= max(min_pixels, 1)]
    return pairs


def _disk_loader(paths: dict[str, tuple[Path, Path]]) -> Callable:
    """name -> (image, label), checking that the label has its image's size."""
    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        image_path, label_path = paths[name]
        image, label = read_image(image_path), read_label(label_path, "class-label PNG")
        check_size(label.shape, image.shape[:2], label_path, "class-label PNG")
        return image, label
    return load


def _hsnet_pairs(path: Path, classes: tuple[int, ...]) -> list[tuple[str, int]]:
    """(name, class) pairs of an HSNet fold file: PASCAL "name__cc" lines, or COCO's pickled class -> names."""
    if path.suffix == ".pkl":
        table = load_plain_pickle(path, "HSNet fold list")
        if not isinstance(table, dict) or not all(isinstance(v, list) for v in table.values()):
            raise AnyRefDataError(f"{str(path)!r} must hold a dict of class -> list of image names")
        pairs = [(str(name), int(key) + 1) for key in sorted(table) for name in table[key]]
    else:
        pairs = []
        for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            name, _, number = text.strip().rpartition("__")
            if not name or not number.isdigit():
                raise AnyRefDataError(f"{str(path)!r} line {line} is {text!r}; HSNet lines are '<name>__<class>'")
            pairs.append((name, int(number)))
    stray = sorted({c for _, c in pairs} - set(classes))
    if stray:
        raise AnyRefDataError(f"{str(path)!r} lists classes {stray}, which this fold does not test (its classes are "
                              f"{list(classes)}); is it another fold's file?")
    return pairs


def _hsnet_paths(data: Path, benchmark: Benchmark, name: str) -> tuple[Path, Path]:
    """HSNet's files for a name: PASCAL <name>.jpg / .png; COCO <name> and annotations/<name as .png>."""
    if benchmark.interleaved:
        return data / name, data / "annotations" / Path(name).with_suffix(".png")
    return data / "JPEGImages" / f"{name}.jpg", data / "SegmentationClassAug" / f"{name}.png"


def _pfenet_paths(path: Path, data: Path) -> dict[str, tuple[Path, Path]]:
    """PFENet list lines "<image> <label>" -> {image path as written: (image, label)}."""
    paths = {}
    for line, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        parts = text.split()
        if len(parts) != 2:
            raise AnyRefDataError(f"{str(path)!r} line {line} is {text!r}; PFENet lines are '<image> <label>'")
        paths[parts[0]] = (data / parts[0], data / parts[1])
    return paths


def read_fold(root, benchmark: str, fold: int, *, split: str = "val", min_pixels: int = MIN_PIXELS) -> FoldData:
    """A fold's queries from HSNet's split file if ROOT has one, else from PFENet's list; files checked to exist."""
    spec = BENCHMARKS[check_choice(benchmark, BENCHMARKS, "few-shot benchmark")]
    classes = spec.fold_classes(fold)
    check_choice(split, ("val",), "few-shot split (the folds are tested on val)")
    root = require_dir(root, "few-shot data root")
    data = require_dir(root / spec.folder, f"{benchmark} data folder")
    hsnet = root / spec.hsnet.format(fold=fold)
    if hsnet.is_file():
        pairs = _hsnet_pairs(hsnet, classes)
        paths = {name: _hsnet_paths(data, spec, name) for name, _ in pairs}
    else:
        paths = _pfenet_paths(require_file(root / spec.pfenet, f"query list (HSNet's {hsnet} or PFENet's)"), data)
    for image, label in paths.values():
        require_file(image, "image")
        require_file(label, "class-label PNG")
    if not hsnet.is_file():
        pairs = _scan(list(paths), lambda name: read_label(paths[name][1], "class-label PNG"), classes, min_pixels)
    return FoldData(pairs, _disk_loader(paths))


@dataclass(frozen=True, eq=False)
class FewShotSample(TaskSample):
    """An episode as a sample: the query, its class and the pixels the metric leaves out."""

    class_id: int = 0
    ignore: np.ndarray | None = None  # (H, W) bool


def _regions(label: np.ndarray, class_id: int) -> list[np.ndarray]:
    """The connected regions (8-neighbour) of a class in a label map, largest first: (H, W) bool each."""
    from scipy import ndimage

    regions, _ = ndimage.label(label == class_id, structure=np.ones((3, 3)))
    sizes = np.bincount(regions.ravel())[1:]  # (count,)
    return [regions == 1 + i for i in np.argsort(-sizes, kind="stable")]


def _support(name: str, image: np.ndarray, label: np.ndarray, class_id: int, masked: bool) -> Example:
    """A support image's largest region of the class as an Example: a padded square crop, or the region on black."""
    regions = _regions(label, class_id)
    if not regions:
        raise AnyRefDataError(f"support {name!r} is listed for class {class_id}, but its label has no pixel of it")
    region = regions[0]
    if masked:
        return Example(mask_crop(image, region))
    return Example(object_crop(scene_from_masks(image, [(f"class {class_id}", region, None)]), 0, size=EXAMPLE_SIZE))


@dataclass
class Episodes:
    """A fold's seeded episodes: (query, class, support names); `samples(mask_crop)` builds them lazily."""

    data: FoldData
    keys: list[tuple[str, int, tuple[str, ...]]]
    shots: int

    def __len__(self) -> int:
        return len(self.keys)

    def samples(self, *, mask_crop: bool) -> LazySamples:
        """The episodes as FewShotSample, with plain or mask-cropped supports."""
        def build(key) -> FewShotSample:
            query, class_id, supports = key
            image, label = self.data.load(query)
            present = [c for c in np.unique(label) if c not in (0, IGNORE)]
            scene = scene_from_masks(image, [(f"class {c}", region, None) for c in present
                                             for region in _regions(label, c)])
            examples = tuple(_support(name, *self.data.load(name), class_id, mask_crop) for name in supports)
            name = f"class {class_id}"
            return FewShotSample("image", scene, EXAMPLE_QUESTION, segment_answer(name), (label == class_id)[None],
                                 examples, name, class_id, label == IGNORE)
        return LazySamples(self.keys, build)


def make_episodes(data: FoldData, *, shots: int, seed: int = 0, episodes: int | None = None,
                  limit: int | None = None) -> Episodes:
    """Episodes over the fold's (query, class) pairs in order (cycled up to `episodes`, HSNet tests 1000), each with
    `shots` distinct supports of the class other than the query, drawn by a generator seeded with `seed`."""
    if not data.pairs:
        raise AnyRefDataError("the fold has no queries: no listed image holds a fold class (lower min_pixels?)")
    for name, value, minimum in (("shots", shots, 1), ("seed", seed, 0), ("episodes", episodes or 1, 1)):
        if not isinstance(value, int) or value < minimum:
            raise AnyRefDataError(f"{name} must be an int >= {minimum}, got {value!r}")
    rng, keys, holders = np.random.default_rng(seed), [], defaultdict(list)  # holders: class -> names, in order
    for name, class_id in data.pairs:
        holders[class_id].append(name)
    for i in range(len(data.pairs) if episodes is None else episodes):
        query, class_id = data.pairs[i % len(data.pairs)]
        others = [name for name in holders[class_id] if name != query]
        if len(others) < shots:
            raise AnyRefDataError(f"class {class_id} has {len(others)} images besides query {query!r}; {shots}-shot "
                                  "episodes need more (use fewer shots)")
        keys.append((query, class_id, tuple(others[j] for j in rng.choice(len(others), size=shots, replace=False))))
    return Episodes(data, limited(keys, limit), shots)


def score_fewshot(answer, episodes: Episodes, *, progress: bool = True) -> dict:
    """One-shot (first support) and few-shot (all, masks averaged by `predict`) mIoU and FB-IoU, plain and
    mask-cropped supports; keys one_shot, few_shot, one_shot_mask_crop, few_shot_mask_crop."""
    answer = as_answerer(answer)
    scores = {}
    settings = (("one_shot", 1),) + ((("few_shot", episodes.shots),) if episodes.shots > 1 else ())
    for cropped in (False, True):
        samples = episodes.samples(mask_crop=cropped)
        for name, count in settings:
            per_class, foreground, background = defaultdict(IoUMeter), IoUMeter(), IoUMeter()
            key = f"{name}{'_mask_crop' if cropped else ''}"
            for sample in tqdm(samples, disable=not progress, desc=key):
                pred = answer(replace(sample, references=sample.references[:count]))
                keep = ~sample.ignore
                predicted, target = union_mask(pred.masks, sample.ignore.shape) & keep, sample.masks[0]
                per_class[sample.class_id].update(predicted, target)
                foreground.update(predicted, target)
                background.update(~predicted & keep, ~target & keep)
            scores[key] = {"miou": float(np.mean([m.ciou for m in per_class.values()])),
                           "fb_iou": 0.5 * (foreground.ciou + background.ciou),
                           "class_iou": {str(c): m.ciou for c, m in sorted(per_class.items())}, "n": len(samples)}
    return scores


def label_map(scene: Scene) -> np.ndarray:
    """A ShapeScenes scene as a class-label map (H, W) uint8: shape k of SHAPES is class k + 1, 0 background."""
    label = np.zeros(scene.image.shape[:2], np.uint8)
    for obj in scene.objects:
        label[obj.mask] = SHAPES.index(obj.shape) + 1
    return label


def scenes_fold(scenes: list[Scene], benchmark: str, fold: int, *, min_pixels: int = MIN_PIXELS) -> FoldData:
    """The fold `export_fewshot` would write for these scenes, in memory: the same names, labels and queries."""
    spec = BENCHMARKS[check_choice(benchmark, BENCHMARKS, "few-shot benchmark")]
    by_name = {spec.image.format(i=i): scene for i, scene in enumerate(scenes)}
    pairs = _scan(list(by_name), lambda name: label_map(by_name[name]), spec.fold_classes(fold), min_pixels)
    return FoldData(pairs, lambda name: (by_name[name].image, label_map(by_name[name])))


def export_fewshot(root, scenes: list[Scene], *, benchmark: str = "pascal5i") -> Path:
    """Write ShapeScenes scenes as a few-shot val set (lossless PNG images, class-label PNGs, PFENet's list)."""
    spec = BENCHMARKS[check_choice(benchmark, BENCHMARKS, "few-shot benchmark")]
    data, lines = Path(root) / spec.folder, []
    listed = new_file(Path(root) / spec.pfenet)  # refuse before writing anything: an existing copy stays as it is
    for i, scene in enumerate(scenes):
        image, label = spec.image.format(i=i), spec.label.format(i=i)
        write_png(data / image, scene.image)
        write_png(data / label, label_map(scene))
        lines.append(f"{image} {label}")
    listed.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listed
