"""Real benchmark formats: ShapeScenes exported and read back unchanged, `anyref eval` on the exported copy scoring
exactly what the in-memory evaluation scores, readers on fixtures hand-written from each data set's published
layout, the restricted unpickler, and bad data answered by errors that name the file."""
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image

from anyref import AnyRefModel, preset
from anyref.cli import main
from anyref.data import make_scene, split_samples
from anyref.data.tasks import task_split
from anyref.evaluate import evaluate_referring, evaluate_reg, model_answerer, segment_everything
from anyref.errors import AnyRefInputError
from anyref.formats.avsbench import export_avsbench, read_avsbench, score_avsbench
from anyref.formats.common import AnyRefDataError
from anyref.formats.fewshot import (BENCHMARKS, export_fewshot, make_episodes, read_fold, scenes_fold,
                                    score_fewshot)
from anyref.formats.refer import export_refer, read_refer
from anyref.formats.regcaption import export_region_captions, read_region_captions, score_region_captions
from anyref.metrics import reg_scores
from anyref.paths import MIXTURE_MODEL_DIR
from anyref.predict import Prediction
from anyref.referring import Example, Region

SIZE = 64
RATE = 16000


def probe(sample) -> Prediction:
    """A deterministic stand-in for a model that reads everything a model is given: pixels, prompt, box, example
    crops and audio, so equal scores mean equal inputs."""
    image = sample.scene.image.astype(np.float32)  # (H, W, 3)
    text = sample.expression if hasattr(sample, "expression") else sample.question
    logits = (image[..., 0] - image[..., 2]) / 32.0 + len(text) % 5 - 2  # (H, W)
    for ref in getattr(sample, "references", ()):
        if isinstance(ref, Region):
            x1, y1, x2, y2 = (int(v) for v in ref.box)
            logits[y1:y2, x1:x2] += 4.0
        elif isinstance(ref, Example):
            logits += ref.image.astype(np.float32).mean() / 64 - 2
        else:
            logits += float(np.abs(np.asarray(ref.waveform)).mean()) * 8 - 1
    colour = ("red", "green", "blue")[int(image.mean(axis=(0, 1)).argmax())]
    return Prediction(f"the {colour} circle <obj>.", logits[None] > 0, logits[None].astype(np.float32))


def eval_cli(capsys, *argv) -> dict:
    """Run `anyref eval ARGV`; its stdout JSON ({split: scores}), checking that a table went to stderr."""
    assert main(["eval", *argv]) == 0
    out, err = capsys.readouterr()
    assert "Method" in err
    return json.loads(out)


# ---- REFER: RefCOCO / RefCOCO+ / RefCOCOg ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def refer_copy(tmp_path_factory):
    """ShapeScenes val / testA text samples exported as RefCOCO; (root, the samples)."""
    root = tmp_path_factory.mktemp("refer")
    samples = {split: split_samples(split, num=num, image_size=SIZE) for split, num in (("val", 4), ("testA", 3))}
    export_refer(root, samples)
    return root, samples


def test_refer_round_trip(refer_copy):
    root, samples = refer_copy
    assert (root / "refcoco" / "refs(unc).p").is_file() and (root / "refcoco" / "instances.json").is_file()
    for split, originals in samples.items():
        back = list(read_refer(root, "refcoco", split))
        assert len(back) == len(originals)
        for a, b in zip(originals, back):
            assert (b.expression, b.targets) == (a.expression, a.targets)
            assert np.array_equal(b.scene.image, a.scene.image)
            assert np.array_equal(b.scene.masks, a.scene.masks) and np.array_equal(b.mask, a.mask)
            assert np.array_equal(b.scene.boxes, a.scene.boxes)
            assert [o.shape for o in b.scene.objects] == [o.shape for o in a.scene.objects]


def test_refer_eval_scores_what_memory_scores(refer_copy, capsys, tmp_path):
    root, samples = refer_copy
    for split, originals in samples.items():
        assert evaluate_referring(probe, read_refer(root, "refcoco", split), progress=False) == \
            evaluate_referring(probe, originals, progress=False)
    out = tmp_path / "scores.json"
    scores = eval_cli(capsys, "--model", "floor", "--data", f"refcoco:{root}", "--split", "val", "testA",
                      "--out", str(out))
    assert scores == {split: evaluate_referring(segment_everything, originals, progress=False)
                      for split, originals in samples.items()}
    record = json.loads(out.read_text())
    assert record["format"] == "refcoco" and record["scores"] == scores and record["commit"]


def test_refer_eval_takes_a_model_folder(refer_copy, capsys, tmp_path):
    root, samples = refer_copy
    model = AnyRefModel(preset("micro")).eval()
    model.save_pretrained(tmp_path / "micro")
    scores = eval_cli(capsys, "--model", str(tmp_path / "micro"), "--data", f"refcoco:{root}", "--split", "testA")
    assert scores["testA"] == evaluate_referring(model_answerer(model), samples["testA"], progress=False)


def _coco_image(path: Path, size=(48, 64)) -> np.ndarray:
    """A JPEG like COCO's train2014 files, written where REFER expects it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 255, size=(*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=95)
    return pixels


def write_published_refer(root: Path, refs=None) -> Path:
    """RefCOCOg as lichengunc/refer publishes it, written by hand: refs(umd).p a pickled list of plain dicts
    (sentences with sent / raw / tokens / sent_id), instances.json with COCO polygons and an uncompressed RLE, and
    COCO_train2014_<id:012d>.jpg images under images/mscoco/images/train2014."""
    _coco_image(root / "images/mscoco/images/train2014/COCO_train2014_000000000042.jpg")
    rle = {"size": [48, 64], "counts": [48 * 30 + 5, 10, 38, 10, 48 * 64 - 48 * 32 - 15 - 10]}  # columns 30, 31
    instances = {
        "images": [{"id": 42, "file_name": "COCO_train2014_000000000042.jpg", "height": 48, "width": 64}],
        "annotations": [
            {"id": 7, "image_id": 42, "category_id": 1, "iscrowd": 0, "area": 200.0, "bbox": [10.0, 10.0, 20.0, 10.0],
             "segmentation": [[10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]]},
            {"id": 8, "image_id": 42, "category_id": 2, "iscrowd": 0, "area": 20.0, "bbox": [30.0, 5.0, 2.0, 10.0],
             "segmentation": rle}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                       {"id": 2, "name": "kite", "supercategory": "outdoor"}]}
    data = root / "refcocog"
    data.mkdir(parents=True)
    (data / "instances.json").write_text(json.dumps(instances))
    sentence = lambda i, text: {"sent_id": i, "sent": text, "raw": text.capitalize() + ".", "tokens": text.split()}
    refs = refs or [
        {"ref_id": 0, "ann_id": 7, "image_id": 42, "category_id": 1, "split": "val",
         "file_name": "COCO_train2014_000000000042_7.jpg", "sent_ids": [0, 1],
         "sentences": [sentence(0, "man on the left"), sentence(1, "a person in a red shirt")]},
        {"ref_id": 1, "ann_id": 8, "image_id": 42, "category_id": 2, "split": "test",
         "file_name": "COCO_train2014_000000000042_8.jpg", "sent_ids": [2], "sentences": [sentence(2, "the kite")]}]
    with open(data / "refs(umd).p", "wb") as handle:
        pickle.dump(refs, handle, protocol=2)
    return data / "refs(umd).p"


def test_refer_reads_the_published_layout(tmp_path):
    write_published_refer(tmp_path)
    val = list(read_refer(tmp_path, "refcocog", "val"))
    assert [s.expression for s in val] == ["man on the left", "a person in a red shirt"]
    person = val[0].mask
    assert val[0].targets == (0,) and person.shape == (48, 64)
    ys, xs = np.nonzero(person)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 29, 10, 19) and person.sum() == 200  # the polygon
    assert [o.shape for o in val[0].scene.objects] == ["person", "kite"]
    kite = list(read_refer(tmp_path, "refcocog", "test"))[0]
    assert kite.targets == (1,) and np.array_equal(np.nonzero(kite.mask.any(0))[0], [30, 31])
    assert kite.mask.sum() == 20 and kite.mask[5:15, 30:32].all()  # the RLE, column-major as COCO writes it


def test_reg_reads_every_sentence_of_a_ref(tmp_path):
    write_published_refer(tmp_path)
    first = list(read_region_captions(tmp_path, "refcocog", "val"))[0]
    assert first.sentences == ("man on the left", "a person in a red shirt")
    assert first.references[0].box == (10.0, 10.0, 30.0, 20.0) and first.task == "reg"
    scores = reg_scores(["a person in a red shirt", "the kite"], [list(first.sentences), ["the kite"]], meteor=False)
    assert scores["exact_match"] == 1.0 and scores["cider"] > 0


def test_the_unpickler_reads_plain_data_and_runs_nothing(tmp_path):
    refs = write_published_refer(tmp_path)
    assert len(list(read_refer(tmp_path, "refcocog", "test"))) == 1  # the hand-written, genuine pickle loads
    marker = tmp_path / "it-ran"
    refs.write_bytes(pickle.dumps([{"ref_id": 0, "payload": Planted(marker)}], protocol=2))
    with pytest.raises(AnyRefDataError, match=r"refs\(umd\)\.p.*refused and nothing in it ran"):
        read_refer(tmp_path, "refcocog", "val")
    assert not marker.exists()
    pickle.loads(refs.read_bytes())  # the control: an ordinary unpickler does run it
    assert marker.exists()


class Planted:
    """Unpickling this opens (creates) a marker file: the proof that a payload ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


# ---- REG: region captions ------------------------------------------------------------------------------------

def test_reg_round_trip_and_scores(tmp_path, capsys):
    samples = task_split("reg", "val", num=6)  # what evaluate_reg scores in memory
    export_region_captions(tmp_path, {"val": samples})
    back = list(read_region_captions(tmp_path, "refcocog", "val"))
    for a, b in zip(samples, back, strict=True):
        assert b.references[0].box == a.references[0].box and b.sentences == (a.target_text,)
        assert (b.question, b.answer) == (a.question, a.answer) and np.array_equal(b.masks, a.masks)
    keys = ("cider", "exact_match", "mask_ciou", "n")
    disk = score_region_captions(probe, read_region_captions(tmp_path, "refcocog", "val"), meteor=False, progress=False)
    memory = evaluate_reg(probe, num=6, meteor=False, progress=False)
    assert {k: disk[k] for k in keys} == {k: memory[k] for k in keys} and disk["cider"] > 0
    scores = eval_cli(capsys, "--model", "floor", "--data", f"refcocog-reg:{tmp_path}", "--no-meteor")
    floor = evaluate_reg(segment_everything, num=6, meteor=False, progress=False)
    assert {k: scores["val"][k] for k in keys} == {k: floor[k] for k in keys}


def test_reg_exporter_refuses_a_jittered_box(tmp_path):
    jittered = task_split("reg", "val", num=1, image_size=SIZE, box_jitter=0.3)
    with pytest.raises(AnyRefInputError, match="box_jitter=0"):
        export_region_captions(tmp_path, {"val": jittered})


# ---- AVSBench S4 / MS3 -----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def avs_copy(tmp_path_factory):
    """ShapeScenes audio samples exported as AVSBench S4 (single source) and MS3 (two sources); (root, samples)."""
    root = tmp_path_factory.mktemp("avsbench")
    samples = {"s4": {"test": task_split("audio", "val", num=2), "train": task_split("audio", "testA", num=1)},
               "ms3": {"test": task_split("audio_multi", "val", num=2)}}
    for subset, splits in samples.items():
        export_avsbench(root, splits, subset=subset)
    return root, samples


@pytest.mark.parametrize("subset", ["s4", "ms3"])
@pytest.mark.parametrize("window", ["clip", "second"])
def test_avsbench_round_trip(avs_copy, subset, window):
    root, samples = avs_copy
    for split, originals in samples[subset].items():
        frames = read_avsbench(root, subset, split, audio_window=window)
        per_video = 1 if (subset, split) == ("s4", "train") else 5  # S4's train split annotates frame 1 only
        assert frames.frames_per_video == per_video and len(frames) == per_video * len(originals)
        for i, frame in enumerate(frames):
            original, k = originals[i // per_video], i % per_video
            wave = np.asarray(original.references[0].waveform)  # (80000,): 5 s at 16 kHz
            heard = wave if window == "clip" else wave[k * RATE:(k + 1) * RATE]
            assert np.array_equal(frame.references[0].waveform, heard)
            assert np.array_equal(frame.scene.image, original.scene.image)
            assert np.array_equal(frame.masks, original.masks) and frame.question == original.question
            assert frame.target_text == (original.target_text if subset == "s4" else "the sounding objects")


def test_avsbench_scores_what_memory_scores(avs_copy):
    root, samples = avs_copy
    for subset, task in (("s4", "audio"), ("ms3", "audio_multi")):
        still_videos = [s for s in samples[subset]["test"] for _ in range(5)]  # a still scene is a 5-frame video
        disk = score_avsbench(probe, read_avsbench(root, subset, "test"), frames_per_video=5, progress=False)
        assert disk == score_avsbench(probe, still_videos, frames_per_video=5, progress=False)
        memory = score_avsbench(probe, samples[subset]["test"], frames_per_video=1, progress=False)
        assert disk["miou"] == pytest.approx(memory["miou"], abs=1e-12) and 0 < disk["miou"] < 1
        assert disk["fscore"] == pytest.approx(memory["fscore"], abs=1e-12)


@pytest.mark.skipif(not (MIXTURE_MODEL_DIR / "model.safetensors").is_file(), reason="the shipped anyref-mini")
def test_avsbench_eval_with_the_shipped_model(avs_copy, capsys, tmp_path):
    root, samples = avs_copy
    out = tmp_path / "s4.json"
    scores = eval_cli(capsys, "--model", str(MIXTURE_MODEL_DIR), "--data", f"avsbench-s4:{root}", "--limit", "1",
                      "--out", str(out))
    answer = model_answerer(AnyRefModel.from_pretrained(MIXTURE_MODEL_DIR))
    memory = score_avsbench(answer, [samples["s4"]["test"][0]] * 5, frames_per_video=5, progress=False)
    assert scores["test"] == json.loads(json.dumps(memory)) and scores["test"]["videos"] == 1
    assert json.loads(out.read_text())["options"] == {"limit": 1, "audio_window": "clip"}


def test_avsbench_has_no_floor(avs_copy, capsys):
    root, _ = avs_copy
    assert main(["eval", "--model", "floor", "--data", f"avsbench-ms3:{root}"]) == 2
    assert "annotates only what sounds" in capsys.readouterr().err


def test_avsbench_reads_the_published_layout(tmp_path):
    """S4 and MS3 written by hand as the release lays them out: 224 px frames, 16-bit stereo wavs at 44.1 kHz,
    S4 masks as 0/255 grey PNGs, MS3 masks as palette PNGs whose nonzero indices are sounding objects."""
    s4, ms3 = tmp_path / "Single-source", tmp_path / "Multi-sources"
    (s4).mkdir()
    (s4 / "s4_meta_data.csv").write_text("name,start_time,category,split\n-0aBcD_1000,1,dog_barking,test\n"
                                         "zz9,0,lions_roaring,train\n")
    ms3.mkdir()
    (ms3 / "ms3_meta_data.csv").write_text("name,split\nAbC-xyz_2,val\n")
    t = np.arange(5 * 44100) / 44100
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    frame = np.full((224, 224, 3), 90, np.uint8)
    mask = np.zeros((224, 224), np.uint8)
    mask[50:100, 60:120] = 255
    palette = np.zeros((224, 224), np.uint8)
    palette[10:20, 10:20], palette[100:150, 100:150] = 1, 2  # two sounding objects
    for folder, name, split, category in ((s4 / "s4_data", "-0aBcD_1000", "test", "dog_barking"),
                                          (ms3 / "ms3_data", "AbC-xyz_2", "val", "")):
        wav = folder / "audio_wav" / split / category / f"{name}.wav"
        wav.parent.mkdir(parents=True)
        soundfile.write(wav, np.stack([tone, tone], 1), 44100, subtype="PCM_16")
        for k in range(1, 6):
            frames = folder / "visual_frames" / (Path(split, category, name) if category else Path(name))
            frames.mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame).save(frames / (f"{name}_{k}.png" if category else f"{name}.mp4_{k}.png"))
            masks = folder / "gt_masks" / split / category / name
            masks.mkdir(parents=True, exist_ok=True)
            picture = Image.fromarray(mask if category else palette)
            if not category:
                picture.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
            picture.save(masks / f"{name}_{k}.png")
    dog = list(read_avsbench(tmp_path, "s4", "test", audio_window="second"))
    assert len(dog) == 5 and dog[0].target_text == "dog barking" and dog[0].task == "audio"
    assert dog[0].masks[0].sum() == 50 * 60 and dog[0].scene.image.shape == (224, 224, 3)
    second = dog[2].references[0].waveform
    assert second.shape == (RATE,) and abs(float(np.abs(second).max()) - 0.5) < 0.01  # mono, resampled to 16 kHz
    both = list(read_avsbench(ms3, "ms3", "val"))
    assert both[4].masks[0].sum() == 100 + 2500 and both[4].task == "audio_multi"
    assert both[0].references[0].waveform.shape == (5 * RATE,)


# ---- few-shot: PASCAL-5i / COCO-20i ----------------------------------------------------------------------------

SCENES = [make_scene(np.random.default_rng(i), image_size=SIZE) for i in range(14)]


@pytest.mark.parametrize("benchmark", ["pascal5i", "coco20i"])
def test_fewshot_round_trip_and_scores(benchmark, tmp_path, capsys):
    export_fewshot(tmp_path, SCENES, benchmark=benchmark)
    for fold in range(4):
        disk, memory = read_fold(tmp_path, benchmark, fold, min_pixels=0), scenes_fold(SCENES, benchmark, fold,
                                                                                        min_pixels=0)
        assert disk.pairs == memory.pairs
        for name, _ in disk.pairs[:3]:
            assert all(np.array_equal(a, b) for a, b in zip(disk.load(name), memory.load(name)))
    disk = make_episodes(read_fold(tmp_path, benchmark, 0, min_pixels=0), shots=2, seed=3)
    memory = make_episodes(scenes_fold(SCENES, benchmark, 0, min_pixels=0), shots=2, seed=3)
    assert disk.keys == memory.keys and len(disk) > 5
    assert all(s in BENCHMARKS[benchmark].fold_classes(0) for _, s, _ in disk.keys)
    scores = score_fewshot(probe, disk, progress=False)
    assert scores == score_fewshot(probe, memory, progress=False)
    assert set(scores) == {"one_shot", "few_shot", "one_shot_mask_crop", "few_shot_mask_crop"}
    assert scores["one_shot"]["miou"] != scores["one_shot_mask_crop"]["miou"]  # the crops differ, and count
    cli = eval_cli(capsys, "--model", "floor", "--data", f"{benchmark}:{tmp_path}", "--min-pixels", "0",
                   "--shots", "2", "--seed", "3")
    assert cli["val"] == json.loads(json.dumps(score_fewshot(segment_everything, memory, progress=False)))


def test_fold_classes_follow_hsnet_and_pfenet():
    assert BENCHMARKS["pascal5i"].fold_classes(1) == (6, 7, 8, 9, 10)
    coco = BENCHMARKS["coco20i"].fold_classes(2)
    assert coco[:3] == (3, 7, 11) and coco[-1] == 79 and len(coco) == 20
    assert sorted(c for f in range(4) for c in BENCHMARKS["coco20i"].fold_classes(f)) == list(range(1, 81))


def write_hsnet_pascal(root: Path, names=("2007_000033", "2007_000042", "2008_000123")) -> Path:
    """PASCAL-5i as HSNet reads it, by hand: VOC2012/JPEGImages/*.jpg, SegmentationClassAug/*.png (class ids, 255
    on object boundaries) and splits/pascal/val/fold0.txt of '<name>__<class>' lines."""
    for i, name in enumerate(names):
        _coco_image(root / "VOC2012/JPEGImages" / f"{name}.jpg", size=(40, 50))
        label = np.zeros((40, 50), np.uint8)
        label[10:20, 10 + i:25 + i] = 1 if i < 2 else 3  # aeroplane, or bird
        label[9, 10:25], label[20:22, 30:40] = 255, 2  # a boundary band; a bicycle
        (root / "VOC2012/SegmentationClassAug").mkdir(parents=True, exist_ok=True)
        Image.fromarray(label).save(root / "VOC2012/SegmentationClassAug" / f"{name}.png")
    split = root / "splits/pascal/val/fold0.txt"
    split.parent.mkdir(parents=True)
    split.write_text("2007_000033__01\n2007_000042__01\n2007_000042__02\n2008_000123__02\n")  # bird not listed
    return split


def test_fewshot_reads_hsnet_pascal(tmp_path):
    write_hsnet_pascal(tmp_path)
    fold = read_fold(tmp_path, "pascal5i", 0)
    assert fold.pairs[0] == ("2007_000033", 1) and len(fold.pairs) == 4
    episodes = make_episodes(fold, shots=1, seed=0)
    assert episodes.keys[0] == ("2007_000033", 1, ("2007_000042",))
    first = episodes.samples(mask_crop=True)[0]
    assert first.ignore.sum() == 15 and first.masks[0].sum() == 150 and first.class_id == 1
    assert first.references[0].image.shape[-1] == 3
    everything = segment_everything(first).masks[0]
    assert everything.sum() == 150 + 20 and not (everything & first.ignore).any()  # 255 is no object
    with pytest.raises(AnyRefDataError, match="class 1 has 1 images besides query '2007_000033'"):
        make_episodes(fold, shots=2)


def test_fewshot_reads_hsnet_coco_pickle(tmp_path):
    names = [f"val2014/COCO_val2014_{i:012d}.jpg" for i in (139, 285)]
    for name in names:
        _coco_image(tmp_path / "COCO2014" / name, size=(30, 30))
        label = np.zeros((30, 30), np.uint8)
        label[5:15, 5:15] = 5  # COCO class 5 (airplane) is in fold 0
        (tmp_path / "COCO2014/annotations/val2014").mkdir(parents=True, exist_ok=True)
        Image.fromarray(label).save(tmp_path / "COCO2014/annotations" / name.replace(".jpg", ".png"))
    split = tmp_path / "splits/coco/val/fold0.pkl"
    split.parent.mkdir(parents=True)
    split.write_bytes(pickle.dumps({4: names}))  # HSNet keys classes from 0
    fold = read_fold(tmp_path, "coco20i", 0)
    assert fold.pairs == [(names[0], 5), (names[1], 5)]
    sample = make_episodes(fold, shots=1).samples(mask_crop=False)[1]
    assert sample.masks[0].sum() == 100 and sample.references[0].image.shape == (32, 32, 3)


# ---- bad data: one clear error that names the file -------------------------------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """One small exported copy of each format, copied and damaged by each bad-data case."""
    root = tmp_path_factory.mktemp("pristine")
    export_refer(root / "refer", {"val": split_samples("val", num=2, image_size=SIZE)})
    export_avsbench(root / "avs", {"test": [AVS_SAMPLE]}, subset="s4")
    export_fewshot(root / "fewshot", SCENES[:8])
    return root


AVS_SAMPLE = task_split("audio", "val", num=1, image_size=SIZE)[0]
C = AVS_SAMPLE.target_text  # its S4 category folder
REFS, INSTANCES = "refer/refcoco/refs(unc).p", "refer/refcoco/instances.json"
IMAGE = "refer/images/mscoco/images/train2014/COCO_train2014_000000000001.png"
CSV, WAV = "avs/Single-source/s4_meta_data.csv", f"avs/Single-source/s4_data/audio_wav/test/{C}/shapes_00000.wav"
FRAME = f"avs/Single-source/s4_data/visual_frames/test/{C}/shapes_00000/shapes_00000_3.png"
MASK = f"avs/Single-source/s4_data/gt_masks/test/{C}/shapes_00000/shapes_00000_2.png"
LIST, LABEL = "fewshot/lists/pascal/val.txt", "fewshot/VOC2012/SegmentationClassAug/shapes_000003.png"


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _refs(root):
    return list(read_refer(root / "refer", "refcoco", "val"))


def _avs(root, **options):
    return list(read_avsbench(root / "avs", "s4", "test", **options))


def _fewshot(root, fold=0, shots=1):
    return list(make_episodes(read_fold(root / "fewshot", "pascal5i", fold, min_pixels=0), shots=shots)
                .samples(mask_crop=False))


def _hsnet_list_naming_an_absent_class(root: Path) -> None:
    """An HSNet fold file listing class 1 for two images, only one of which has it."""
    voc = root / "fewshot/VOC2012"
    for i, fill in ((0, 1), (1, 0)):
        shutil.copy(voc / f"JPEGImages/shapes_{i:06d}.png", voc / f"JPEGImages/shapes_{i:06d}.jpg")
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[5:15, 5:15] = fill
        Image.fromarray(label).save(voc / f"SegmentationClassAug/shapes_{i:06d}.png")
    (root / "fewshot/splits/pascal/val").mkdir(parents=True)
    (root / "fewshot/splits/pascal/val/fold0.txt").write_text("shapes_000000__01\nshapes_000001__01\n")


BAD = {  # name: (damage(root), read(root), the file the message must name (None: no file at fault), a phrase)
    "missing-root": (lambda r: shutil.rmtree(r / "refer"), _refs, "refer", "is not a folder"),
    "missing-refs": (lambda r: (r / REFS).unlink(), _refs, REFS, "does not exist"),
    "missing-instances": (lambda r: (r / INSTANCES).unlink(), _refs, INSTANCES, "does not exist"),
    "truncated-refs": (lambda r: (r / REFS).write_bytes((r / REFS).read_bytes()[:40]), _refs, REFS,
                       "truncated or corrupt"),
    "refs-not-a-list": (lambda r: (r / REFS).write_bytes(pickle.dumps({"refs": []})), _refs, REFS,
                        "a list of refs"),
    "ref-missing-key": (lambda r: (r / REFS).write_bytes(pickle.dumps([{"ref_id": 0}])), _refs, REFS,
                        "must be a dict with keys"),
    "instances-not-json": (lambda r: (r / INSTANCES).write_text("{images: "), _refs, INSTANCES, "not valid JSON"),
    "image-missing": (lambda r: (r / IMAGE).unlink(), _refs, IMAGE, "does not exist"),
    "annotation-missing": (lambda r: _edit_json(r / INSTANCES, lambda d: d["annotations"].clear()), _refs,
                           INSTANCES, "does not have"),
    "rle-of-another-size": (lambda r: _edit_json(r / INSTANCES, lambda d: d["annotations"][0]["segmentation"]
                                                 .update(size=[32, 32])), _refs, INSTANCES, "masks must have"),
    "image-resized": (lambda r: Image.new("RGB", (30, 20)).save(r / IMAGE), _refs, IMAGE, "would not fit"),
    "image-corrupt": (lambda r: (r / IMAGE).write_bytes(b"\x89PNG not really"), _refs, IMAGE, "cannot be decoded"),
    "unknown-split": (lambda r: None, lambda r: read_refer(r / "refer", "refcoco", "testC"), REFS,
                      r"no refs in split 'testC'; its splits are \['val'\]"),
    "csv-missing": (lambda r: (r / CSV).unlink(), _avs, CSV, "does not exist"),
    "csv-without-split": (lambda r: (r / CSV).write_text("name,category\nshapes_00000,circle\n"), _avs, CSV,
                          r"no column\(s\) \['split'\]"),
    "csv-ragged-row": (lambda r: (r / CSV).write_text("name,start_time,category,split\nshapes_00000,0\n"), _avs,
                       CSV, "line 2 has 2 fields"),
    "frame-missing": (lambda r: (r / FRAME).unlink(), _avs, FRAME, "does not exist"),
    "mask-of-another-size": (lambda r: Image.new("L", (10, 10)).save(r / MASK), _avs, MASK, "masks must have"),
    "wav-undecodable": (lambda r: (r / WAV).write_bytes(b"RIFF....WAVEfmt garbage"), _avs, WAV, "cannot be decoded"),
    "wav-silent-second": (lambda r: soundfile.write(r / WAV, np.r_[np.zeros(RATE), 0.5 * np.ones(4 * RATE)], RATE),
                          lambda r: _avs(r, audio_window="second"), WAV, "silent in second 1"),
    "fold-out-of-range": (lambda r: None, lambda r: _fewshot(r, fold=4), None, "fold 4 is out of range"),
    "list-missing": (lambda r: (r / LIST).unlink(), _fewshot, LIST, "does not exist"),
    "list-malformed": (lambda r: (r / LIST).write_text("JPEGImages/a.png\n"), _fewshot, LIST, "line 1"),
    "label-of-another-size": (lambda r: Image.new("L", (16, 16), 1).save(r / LABEL), _fewshot, LABEL,
                              "masks must have"),
    "too-few-supports": (lambda r: None, lambda r: _fewshot(r, shots=50), None, "50-shot episodes need more"),
    "hsnet-split-of-another-fold": (
        lambda r: (r / "fewshot/splits/pascal/val").mkdir(parents=True) or
        (r / "fewshot/splits/pascal/val/fold0.txt").write_text("shapes_000001__07\n"),
        _fewshot, "fewshot/splits/pascal/val/fold0.txt", r"lists classes \[7\], which this fold does not test"),
    "support-without-its-class": (_hsnet_list_naming_an_absent_class, _fewshot, None,
                                  "support 'shapes_000001' is listed for class 1, but its label has no pixel of it"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_data_gets_one_clear_error_naming_the_file(name, pristine, tmp_path):
    damage, read, named, phrase = BAD[name]
    root = Path(shutil.copytree(pristine, tmp_path / "copy"))
    damage(root)
    with pytest.raises(AnyRefDataError, match=phrase) as caught:
        read(root)
    assert named is None or str(root / named) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_hsnet_coco_pickle_with_a_payload_is_refused(tmp_path):
    marker = tmp_path / "it-ran"
    split = tmp_path / "splits/coco/val/fold0.pkl"
    split.parent.mkdir(parents=True)
    split.write_bytes(pickle.dumps({0: [Planted(marker)]}))
    (tmp_path / "COCO2014").mkdir()
    with pytest.raises(AnyRefDataError, match="fold0.pkl.*refused and nothing in it ran"):
        read_fold(tmp_path, "coco20i", 0)
    assert not marker.exists()


@pytest.mark.parametrize("argv, phrase", [
    (["--data", "refclef:/data"], "unknown data format 'refclef'"),
    (["--data", "refcoco"], "name the folder"),
    (["--data", "shapescenes:/data"], "made in memory"),
    (["--data", "refcoco:/no/such/folder"], "'/no/such/folder' is not a folder"),
    (["--data", "pascal5i:/data", "--fold", "-1"], "--fold: must be a non-negative integer"),
    (["--out", "/no/such/folder/scores.json"], "must be a file in an existing folder"),
])
def test_eval_cli_refuses_bad_arguments_in_one_line(argv, phrase, capsys):
    assert main(["eval", "--model", "floor", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("anyref eval: error:") and phrase in err and err.count("\n") == 1


EXPORTS = {  # name: export(root) of a small copy
    "refcoco": lambda root: export_refer(root, {"val": split_samples("val", num=2, image_size=SIZE)}),
    "refcocog-reg": lambda root: export_region_captions(root, {"val": task_split("reg", "val", num=2)}),
    "avsbench-s4": lambda root: export_avsbench(root, {"test": [AVS_SAMPLE]}, subset="s4"),
    "pascal5i": lambda root: export_fewshot(root, SCENES[:3]),
}


@pytest.mark.parametrize("second", sorted(EXPORTS))
@pytest.mark.parametrize("first", ["refcoco", "avsbench-s4", "pascal5i"])
def test_exporters_never_overwrite(first, second, tmp_path):
    EXPORTS[first](tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    collides = first == second or {first, second} == {"refcoco", "refcocog-reg"}  # REFER shares one image folder
    if collides:
        with pytest.raises(AnyRefDataError, match="already exists; exporters never overwrite"):
            EXPORTS[second](tmp_path)
    else:
        EXPORTS[second](tmp_path)  # the formats' own folders do not meet
    assert all(path.read_bytes() == data for path, data in before.items())
