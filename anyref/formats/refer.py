"""RefCOCO, RefCOCO+ and RefCOCOg in the REFER layout (lichengunc/refer), read into samples and written from them.

    ROOT/
      images/mscoco/images/train2014/<file_name>   COCO train2014 images; file_name comes from instances.json
      refcoco/   refs(unc).p   instances.json     splits train / val / testA / testB
      refcoco+/  refs(unc).p   instances.json     splits train / val / testA / testB
      refcocog/  refs(umd).p   instances.json     splits train / val / test   (refs(google).p: train / val)

`refs(*).p` is a pickled list of refs {ref_id, ann_id, image_id, category_id, split, file_name, sent_ids,
sentences: [{sent_id, sent, raw, tokens}]}, read with the restricted unpickler. `instances.json` is COCO's images,
annotations (polygons or RLE; masks through pycocotools) and categories. Every sentence of every ref in the split
is one text-referring sample, the usual protocol (the official AnyRef code scores only each ref's last sentence).
"""
from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.shapescenes import ReferringSample, Scene
from ..errors import AnyRefInputError
from .common import (AnyRefDataError, LazySamples, check_choice, limited, new_file, read_image, read_json,
                     require_dir, scene_from_masks, write_png)
from .safe_pickle import load_plain_pickle

SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}  # the recommended split of each data set
IMAGE_DIR = Path("images", "mscoco", "images", "train2014")
EXPORT_KIND = "refer"  # ReferringSample.kind of samples read from REFER files (the files carry no kind)


def refs_path(root, dataset: str, split_by: str | None = None) -> Path:
    """Where a data set's refs pickle lives: ROOT/<dataset>/refs(<split_by>).p."""
    check_choice(dataset, SPLIT_BY, "REFER data set")
    return Path(root, dataset, f"refs({split_by or SPLIT_BY[dataset]}).p")


def _require_keys(item, keys: tuple[str, ...], path: Path, what: str) -> None:
    """An error naming the file unless item is a dict holding every key."""
    if not isinstance(item, dict) or not set(keys) <= set(item):
        found = sorted(item) if isinstance(item, dict) else type(item).__name__
        raise AnyRefDataError(f"{str(path)!r}: a {what} must be a dict with keys {list(keys)}, found {found}; "
                              "the file is not in the REFER / COCO layout")


def _in_split(ref_split: str, split: str) -> bool:
    """REFER's split rule: testA/B/C match every test split holding that letter, test every test split."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def coco_box(annotation: dict) -> tuple[float, float, float, float]:
    """COCO's [x, y, w, h] as (x1, y1, x2, y2)."""
    x, y, w, h = (float(v) for v in annotation["bbox"])
    return x, y, x + w, y + h


@dataclass
class ReferData:
    """The refs of one split with the annotations, images and categories they point to."""

    refs: list[dict]
    annotations: dict
    images: dict
    categories: dict
    image_annotations: dict
    instances_file: Path
    image_dir: Path
    _last: tuple = field(default=(None, None), repr=False)  # (image id, Scene): sentences of one image run together

    def mask(self, annotation: dict) -> np.ndarray:
        """An annotation's (H, W) bool mask from its polygons or RLE; an error when its size is not the image's."""
        from pycocotools import mask as coco_mask

        info = self.images[annotation["image_id"]]
        height, width = int(info["height"]), int(info["width"])
        segmentation = annotation["segmentation"]
        if isinstance(segmentation, dict) and list(segmentation.get("size", ())) != [height, width]:
            raise AnyRefDataError(f"{str(self.instances_file)!r}: annotation {annotation['id']} has an RLE mask of "
                                  f"size {segmentation.get('size')} but image {info['id']} is {height}x{width} "
                                  "(height x width); masks must have their image's size")
        compressed = isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes))
        try:
            rles = segmentation if compressed else coco_mask.frPyObjects(segmentation, height, width)
            with warnings.catch_warnings():  # pycocotools' Cython asks numpy 2 for copy=False: harmless, but noisy
                warnings.simplefilter("ignore", DeprecationWarning)
                decoded = coco_mask.decode(rles)  # (H, W) or (H, W, parts)
        except (TypeError, ValueError, IndexError, KeyError) as error:
            raise AnyRefDataError(f"{str(self.instances_file)!r}: annotation {annotation['id']} has a segmentation "
                                  f"pycocotools cannot read ({error}); expected COCO polygons or RLE") from None
        return (decoded.reshape(height, width, -1) > 0).any(axis=2)  # parts summed, as REFER's getMask does

    def scene(self, image_id) -> Scene:
        """The image and every object annotated in it, in the order of instances.json."""
        if self._last[0] == image_id:
            return self._last[1]
        info = self.images[image_id]
        path = self.image_dir / info["file_name"]
        image = read_image(path)
        if image.shape[:2] != (int(info["height"]), int(info["width"])):
            raise AnyRefDataError(f"image {str(path)!r} is {image.shape[1]}x{image.shape[0]} but "
                                  f"{str(self.instances_file)!r} says {info['width']}x{info['height']}; its masks "
                                  "would not fit it (a wrong or resized image)")
        objects = [(self.categories.get(ann["category_id"], str(ann["category_id"])), self.mask(ann), coco_box(ann))
                   for ann in (self.annotations[a] for a in self.image_annotations[image_id])]
        self._last = (image_id, scene_from_masks(image, objects))
        return self._last[1]

    def target(self, ref: dict) -> int:
        """Index of the ref's object among its image's objects."""
        return self.image_annotations[ref["image_id"]].index(ref["ann_id"])


def _index(instances, path: Path) -> tuple[dict, dict, dict, dict]:
    """images, annotations, categories and image -> annotation ids of a COCO instances file, checked."""
    _require_keys(instances, ("images", "annotations", "categories"), path, "COCO instances file")
    images, annotations, image_annotations = {}, {}, {}
    for info in instances["images"]:
        _require_keys(info, ("id", "file_name", "height", "width"), path, "COCO image")
        images[info["id"]] = info
    for ann in instances["annotations"]:
        _require_keys(ann, ("id", "image_id", "category_id", "segmentation", "bbox"), path, "COCO annotation")
        annotations[ann["id"]] = ann
        image_annotations.setdefault(ann["image_id"], []).append(ann["id"])
    categories = {}
    for category in instances["categories"]:
        _require_keys(category, ("id", "name"), path, "COCO category")
        categories[category["id"]] = category["name"]
    return images, annotations, categories, image_annotations


def load_refer(root, dataset: str, split: str, *, split_by: str | None = None) -> ReferData:
    """One split of a REFER data set, checked: every ref's annotation, image record and image file must exist."""
    root = require_dir(root, "REFER data root")
    refs_file = refs_path(root, dataset, split_by)
    require_dir(refs_file.parent, f"{dataset} folder")
    refs = load_plain_pickle(refs_file, "REFER refs file")
    if not isinstance(refs, list):
        raise AnyRefDataError(f"{str(refs_file)!r} holds a {type(refs).__name__}; a REFER refs file is a list of refs")
    for ref in refs:
        _require_keys(ref, ("ref_id", "ann_id", "image_id", "split", "sentences"), refs_file, "ref")
    instances_file = refs_file.parent / "instances.json"
    images, annotations, categories, image_annotations = _index(read_json(instances_file, "COCO instances file"),
                                                                instances_file)
    chosen = [ref for ref in refs if _in_split(str(ref["split"]), split)]
    if not chosen:
        raise AnyRefDataError(f"{str(refs_file)!r} has no refs in split {split!r}; its splits are "
                              f"{sorted({str(ref['split']) for ref in refs})}")
    image_dir = require_dir(root / IMAGE_DIR, "COCO train2014 image folder")
    for ref in chosen:
        if ref["ann_id"] not in annotations or ref["image_id"] not in images:
            raise AnyRefDataError(f"ref {ref['ref_id']} in {str(refs_file)!r} points to annotation {ref['ann_id']} "
                                  f"of image {ref['image_id']}, which {str(instances_file)!r} does not have")
        image_file = image_dir / images[ref["image_id"]]["file_name"]
        if not image_file.is_file():
            raise AnyRefDataError(f"ref {ref['ref_id']} in {str(refs_file)!r} points to image {str(image_file)!r}, "
                                  "which does not exist; put COCO train2014 there")
        for sentence in ref["sentences"]:
            _require_keys(sentence, ("sent",), refs_file, "sentence")
    return ReferData(chosen, annotations, images, categories, image_annotations, instances_file, image_dir)


def read_refer(root, dataset: str, split: str, *, split_by: str | None = None,
               limit: int | None = None) -> LazySamples:
    """Text-referring samples (ReferringSample), one per sentence, of a REFER split; built as they are iterated."""
    data = load_refer(root, dataset, split, split_by=split_by)
    keys = limited([(ref, sentence["sent"]) for ref in data.refs for sentence in ref["sentences"]], limit)

    def build(key) -> ReferringSample:
        ref, sentence = key
        return ReferringSample(data.scene(ref["image_id"]), sentence, (data.target(ref),), EXPORT_KIND)
    return LazySamples(keys, build)


def write_refer(root, dataset: str, entries: dict, *, split_by: str | None = None) -> Path:
    """Write REFER files from {split: [(scene, target object index, sentences)]}: one image and ref per entry.

    Images are PNG (lossless, so a model sees the same pixels as in memory) under COCO-style names; masks are COCO
    RLE, exact to the pixel; categories are the objects' class names. Returns the refs file.
    """
    from pycocotools import mask as coco_mask

    root = Path(root)
    refs_file = refs_path(root, dataset, split_by)
    instances_file = new_file(refs_file.parent / "instances.json")  # refuse before writing anything
    new_file(refs_file)
    images, annotations, refs, categories = [], [], [], {}
    for split, items in entries.items():
        for scene, target, sentences in items:
            image_id = len(images) + 1
            height, width = scene.image.shape[:2]
            images.append({"id": image_id, "file_name": f"COCO_train2014_{image_id:012d}.png", "height": height,
                           "width": width})
            write_png(root / IMAGE_DIR / images[-1]["file_name"], scene.image)
            first = len(annotations) + 1
            for obj in scene.objects:
                rle = coco_mask.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
                x1, y1, x2, y2 = obj.box
                annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                    "category_id": categories.setdefault(obj.shape, len(categories) + 1),
                                    "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                                    "area": float(obj.mask.sum()), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})
            ann = annotations[first - 1 + target]
            sent_ids = [sum(len(r["sentences"]) for r in refs) + i for i in range(len(sentences))]
            refs.append({"ref_id": len(refs), "ann_id": ann["id"], "image_id": image_id,
                         "category_id": ann["category_id"], "split": split,
                         "file_name": f"COCO_train2014_{image_id:012d}_{ann['id']}.jpg", "sent_ids": sent_ids,
                         "sentences": [{"sent_id": i, "sent": s, "raw": s, "tokens": s.split()}
                                       for i, s in zip(sent_ids, sentences)]})
    with open(refs_file, "wb") as handle:
        pickle.dump(refs, handle, protocol=2)  # the protocol of the Python 2 originals
    instances = {"images": images, "annotations": annotations,
                 "categories": [{"id": i, "name": name, "supercategory": "object"} for name, i in categories.items()]}
    instances_file.write_text(json.dumps(instances))
    return refs_file


def export_refer(root, samples: dict, *, dataset: str = "refcoco", split_by: str | None = None) -> Path:
    """Write ShapeScenes text-referring samples {split: [ReferringSample]} as a REFER data set under root."""
    entries = {}
    for split, items in samples.items():
        for sample in items:
            if len(sample.targets) != 1:
                raise AnyRefInputError(f"a REFER ref points to one object; a sample refers to {len(sample.targets)} "
                                       f"({sample.expression!r}); export attribute or spatial samples")
        entries[split] = [(sample.scene, sample.targets[0], [sample.expression]) for sample in items]
    return write_refer(root, dataset, entries, split_by=split_by)
