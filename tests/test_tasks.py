"""Tests for the ShapeScenes samples of every AnyRef task (general, text, REG, image, audio, multi-audio)."""
import re

import numpy as np
import pytest

from anyref.data import SHAPES, object_crop, split_samples
from anyref.data.tasks import DEFAULT_MIX, TASKS, image_split, make_task, parse_mix, task_sample, task_split
from anyref.data.words import build_word_tokenizer
from anyref.errors import AnyRefInputError
from anyref.referring import Audio, Example, Region, check_box, check_example, check_references
from anyref.tokens import OBJ_TOKEN, encode

SIZE = 64  # small scenes keep the tests fast
SPAN = re.compile(r"<img\.ref></img\.ref>|<aud\.ref></aud\.ref>")


def only(task):
    """A mix that always draws `task`."""
    return ((task, 1.0),)


def instances(scene, shapes):
    """Union (H, W) of every object of the given shapes."""
    return np.any([obj.mask for obj in scene.objects if obj.shape in shapes], axis=0)


def payload(ref):
    """The box, image or waveform a reference carries, as an array."""
    return np.asarray(ref.box if isinstance(ref, Region) else ref.image if isinstance(ref, Example) else ref.waveform)


def same(a, b):
    """Two TaskSamples carry identical content."""
    texts = (a.task, a.question, a.answer, a.target_text) == (b.task, b.question, b.answer, b.target_text)
    kinds = [type(r) for r in a.references] == [type(r) for r in b.references]
    return (texts and kinds and np.array_equal(a.scene.image, b.scene.image) and np.array_equal(a.masks, b.masks)
            and all(np.array_equal(payload(x), payload(y)) for x, y in zip(a.references, b.references)))


@pytest.fixture(scope="module")
def tokenizer():
    """The ShapeScenes word tokenizer."""
    return build_word_tokenizer()


@pytest.fixture(scope="module")
def by_task():
    """Three training samples of every task."""
    return {task: [task_sample(i, seed=7, image_size=SIZE, mix=only(task)) for i in range(3)] for task in TASKS}


def test_task_sample_is_a_pure_function_of_seed_and_index(by_task):
    for task, samples in by_task.items():
        again = task_sample(1, seed=7, image_size=SIZE, mix=only(task))
        assert again.task == task and same(samples[1], again)
        assert not np.array_equal(samples[0].scene.image, samples[1].scene.image)
        assert not same(samples[1], task_sample(1, seed=8, image_size=SIZE, mix=only(task)))
    mixed = [task_sample(i, seed=0, image_size=SIZE) for i in range(12)]
    assert all(same(s, task_sample(i, seed=0, image_size=SIZE)) for i, s in enumerate(mixed))
    assert len({s.task for s in mixed}) >= 3


def test_questions_and_answers_use_known_words_and_spans_match_references(by_task, tokenizer):
    for task, samples in by_task.items():
        for sample in samples:
            ids, _ = encode(tokenizer, sample.question, sample.answer, max_tokens=96)
            spans = ["image" if span.startswith("<img") else "audio" for span in SPAN.findall(sample.question)]
            kinds = ["audio" if isinstance(r, Audio) else "image" for r in sample.references]
            assert spans == kinds, (task, sample.question)
            check_references(ids, list(sample.references))  # encode filled the spans with placeholders
            assert sample.masks.dtype == bool and sample.masks.shape == (sample.answer.count(OBJ_TOKEN), SIZE, SIZE)
            assert sample.masks.any(axis=(1, 2)).all()
            assert sample.answer == f"{sample.target_text} {OBJ_TOKEN}."
    assert [type(s.references[0]) for s in by_task["reg"]] == [Region] * 3
    assert [type(s.references[0]) for s in by_task["image"]] == [Example] * 3
    assert not by_task["general"][0].references and not by_task["text"][0].references


def test_class_and_audio_masks_cover_every_instance(by_task):
    for task in ("general", "image", "audio"):
        for sample in by_task[task]:
            assert sample.target_text in SHAPES
            assert np.array_equal(sample.masks[0], instances(sample.scene, {sample.target_text}))
    for sample in by_task["audio"]:
        wave = sample.references[0].waveform
        assert wave.dtype == np.float32 and wave.shape == (80000,) and np.abs(wave).max() <= 1.0


def test_audio_multi_mask_is_the_union_of_two_shapes(by_task):
    for sample in by_task["audio_multi"]:
        first, word, second = sample.target_text.split()
        assert word == "and" and SHAPES.index(first) < SHAPES.index(second)
        assert {first, second} <= {obj.shape for obj in sample.scene.objects}
        assert np.array_equal(sample.masks[0], instances(sample.scene, {first, second}))
        assert (sample.masks[0] & ~instances(sample.scene, {first})).any()


def test_reg_box_is_valid_and_around_its_object(by_task):
    for sample in by_task["reg"]:
        (box,) = [ref.box for ref in sample.references]
        assert check_box(box, height=SIZE, width=SIZE) == box
        obj = next(o for o in sample.scene.objects if np.array_equal(o.mask, sample.masks[0]))
        assert sample.target_text == f"the {obj.size} {obj.colour} {obj.shape}"
        x1, y1, x2, y2 = box
        assert x1 <= obj.centre[0] <= x2 and y1 <= obj.centre[1] <= y2
        ox1, oy1, ox2, oy2 = obj.box
        inter = max(0.0, min(x2, ox2) - max(x1, ox1)) * max(0.0, min(y2, oy2) - max(y1, oy1))
        assert inter / ((ox2 - ox1) * (oy2 - oy1)) > 0.6
    for sample in task_split("reg", "val", num=3, image_size=SIZE):
        obj = next(o for o in sample.scene.objects if np.array_equal(o.mask, sample.masks[0]))
        assert sample.references[0].box == obj.box  # evaluation boxes are not jittered
    huge = make_task(np.random.default_rng(0), "reg", image_size=48, box_jitter=0.5)
    assert check_box(huge.references[0].box, height=48, width=48)


def test_image_examples_come_from_other_scenes():
    for mask_crop in (False, True):
        for sample in image_split("val", num=3, shots=1, mask_crop=mask_crop, image_size=SIZE):
            example = check_example(sample.references[0].image)
            black = (example == 0).all(axis=-1)
            assert black.any() == mask_crop  # a mask crop is black outside its object, a plain crop nowhere
            query_crops = [object_crop(sample.scene, k) for k, obj in enumerate(sample.scene.objects)
                           if obj.shape == sample.target_text]
            assert not any(crop.shape == example.shape and np.array_equal(crop, example) for crop in query_crops)


def test_few_shot_examples_extend_the_one_shot_split():
    one = image_split("testA", num=2, shots=1, mask_crop=False, image_size=SIZE)
    three = image_split("testA", num=2, shots=3, mask_crop=False, image_size=SIZE)
    assert same(one[0], task_split("image", "testA", num=1, image_size=SIZE)[0])
    for a, b in zip(one, three):
        assert b.question.count("<img.ref>") == 1 and len(b.references) == 3
        assert np.array_equal(a.scene.image, b.scene.image) and a.answer == b.answer
        assert np.array_equal(a.references[0].image, b.references[0].image)
        assert not np.array_equal(b.references[1].image, b.references[2].image)


def test_splits_are_fixed_and_apart_from_training():
    for task in TASKS:
        first = task_split(task, "val", num=2, image_size=SIZE)
        assert all(same(a, b) for a, b in zip(first, task_split(task, "val", num=2, image_size=SIZE)))
        assert not same(first[0], task_split(task, "testB", num=1, image_size=SIZE)[0])
        assert not np.array_equal(first[0].scene.image, task_sample(0, seed=0, image_size=SIZE,
                                                                    mix=only(task)).scene.image)
    text = task_split("text", "testB", num=2, image_size=SIZE)
    assert [s.target_text for s in text] == [s.expression for s in split_samples("testB", num=2, image_size=SIZE)]


@pytest.mark.parametrize("mix, match", [
    ((("text", 1.0), ("caption", 1.0)), "unknown task"),
    ((("text", -1.0), ("reg", 2.0)), "non-negative"),
    ((("text", 0.0),), "positive sum"),
    ((), "positive sum"),
    (("text",), "pairs"),
])
def test_bad_mix_is_refused(mix, match):
    with pytest.raises(AnyRefInputError, match=match):
        task_sample(0, seed=0, mix=mix)


def test_bad_arguments_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(AnyRefInputError, match="unknown task"):
        make_task(rng, "caption")
    with pytest.raises(AnyRefInputError, match="takes no option"):
        make_task(rng, "audio", mask_crop=True)
    with pytest.raises(AnyRefInputError, match="box_jitter"):
        make_task(rng, "reg", box_jitter=0.7)
    with pytest.raises(AnyRefInputError, match="kind"):
        make_task(rng, "text", kind="class")
    with pytest.raises(AnyRefInputError, match="shots"):
        image_split("val", num=1, shots=0, mask_crop=False)
    with pytest.raises(AnyRefInputError, match="unknown split"):
        task_split("reg", "train")
    with pytest.raises(AnyRefInputError, match="no options"):
        task_split("text", "val", kind="spatial")
    with pytest.raises(AnyRefInputError, match="non-negative int"):
        task_sample(-1, seed=0)


def test_parse_mix_reads_task_weight_pairs_and_names_bad_ones():
    assert parse_mix([]) == DEFAULT_MIX
    assert parse_mix(["text=0.5", "audio_multi=1"]) == (("text", 0.5), ("audio_multi", 1.0))
    with pytest.raises(AnyRefInputError, match="--mix takes task=weight"):
        parse_mix(["audio-multi=1"], flag="--mix")
    with pytest.raises(AnyRefInputError, match="positive sum"):
        parse_mix(["text=0", "reg=0"])
