"""Region captions for REG (Sec. 4.2): REFER refs as a box and its sentences, read, written and scored.

The paper's Table 5 scores RefCOCO testA / testB, RefCOCO+ testA / testB and RefCOCOg val with METEOR and CIDEr.
One sample per ref: the annotation's box is the region reference, every sentence of the ref is a reference
caption, and the annotation's mask is what the answer's `<obj>` should ground. Files: the REFER layout
(`refer.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.tasks import TaskSample
from ..errors import AnyRefInputError
from ..evaluate import score_reg
from ..referring import Region, check_box
from ..tokens import REGION_QUESTION, segment_answer
from .common import AnyRefDataError, LazySamples, limited
from .refer import coco_box, load_refer, write_refer


@dataclass(frozen=True, eq=False)
class RegionCaption(TaskSample):
    """A REG sample that keeps every reference sentence of its ref (target_text is the first)."""

    sentences: tuple[str, ...] = ()


def read_region_captions(root, dataset: str, split: str, *, split_by: str | None = None,
                         limit: int | None = None) -> LazySamples:
    """REG samples (RegionCaption), one per ref of a REFER split; built as they are iterated."""
    data = load_refer(root, dataset, split, split_by=split_by)

    def build(ref: dict) -> RegionCaption:
        scene, annotation = data.scene(ref["image_id"]), data.annotations[ref["ann_id"]]
        height, width = scene.image.shape[:2]
        sentences = tuple(sentence["sent"] for sentence in ref["sentences"])
        x1, y1, x2, y2 = coco_box(annotation)
        try:
            box = check_box((max(x1, 0.0), max(y1, 0.0), min(x2, width), min(y2, height)), height=height, width=width)
        except AnyRefInputError as error:
            raise AnyRefDataError(f"{str(data.instances_file)!r}: annotation {annotation['id']} cannot be a region "
                                  f"reference: {error}") from None
        if not sentences:
            raise AnyRefDataError(f"ref {ref['ref_id']} of {data.instances_file.parent} has no sentences to score "
                                  "a description against")
        mask = scene.objects[data.target(ref)].mask[None]  # (1, H, W)
        return RegionCaption("reg", scene, REGION_QUESTION, segment_answer(sentences[0]), mask, (Region(box),),
                             sentences[0], sentences)
    return LazySamples(limited(data.refs, limit), build)


def _object_index(sample: TaskSample) -> int:
    """Which object of a REG sample's scene its mask is, checking that its box is that object's own box."""
    matches = [i for i, obj in enumerate(sample.scene.objects) if np.array_equal(obj.mask, sample.masks[0])]
    box = sample.references[0].box
    if len(matches) != 1 or not np.allclose(sample.scene.objects[matches[0]].box, box):
        raise AnyRefInputError(f"REG files hold an annotation's own box, but the box {box} is not the box of the "
                               "sample's object; export samples made with box_jitter=0 (task_split's default)")
    return matches[0]


def export_region_captions(root, samples: dict, *, dataset: str = "refcocog", split_by: str | None = None):
    """Write ShapeScenes REG samples {split: [TaskSample of task "reg"]} as a REFER data set under root."""
    entries = {split: [(s.scene, _object_index(s), [s.target_text]) for s in items] for split, items in samples.items()}
    return write_refer(root, dataset, entries, split_by=split_by)


def score_region_captions(answer, samples, *, meteor: bool = True, progress: bool = True, desc: str = "reg") -> dict:
    """METEOR and CIDEr of the words before `<obj>` against every sentence of each ref, and the grounded mask's cIoU."""
    return score_reg(answer, samples, meteor=meteor, progress=progress, desc=desc,
                     references=lambda sample: list(sample.sentences))
